"""The plugin registry: graph-learning components by kind, looked up by name.

Every plugin is an entry with a ``name``, a ``kind`` (:data:`KINDS`), the ``paper`` it comes
from, a one-line ``summary`` and a ``factory`` (a class or function). Configurations refer to
plugins by name with parameters, either ``"virgo"`` or ``{"name": "sheaf_diffusion",
"stalk_dim": 4}``; :func:`parse_spec` turns both into ``(name, params)``.

Built-in plugins register themselves with :func:`register_plugin` when ``sim.plugins`` is
imported. Other packages add theirs through the entry-point group ``sim.plugins``::

    [project.entry-points."sim.plugins"]
    my_layer = "my_pkg.layers:MY_LAYER"

where the object is a :class:`PluginSpec` (or anything whose import registers the name
with :func:`register_plugin`). Entry points are read lazily, the first time a name is not
found or the list is asked for.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any

from sim.errors import SimError

KINDS = ("layer", "feature", "conditioning", "init", "diagnostic", "pruning", "selection", "generator",
         "training")
ENTRY_POINT_GROUP = "sim.plugins"


class PluginError(SimError):
    """A plugin name, kind or parameter is wrong."""


@dataclass(frozen=True)
class PluginSpec:
    """One registered plugin.

    Args:
        name: the name configurations use.
        kind: one of :data:`KINDS`.
        paper: the source (authors, year, title).
        summary: what it does, in one line.
        factory: the class or function that builds / runs it.
        defaults: default parameters a host applies before the user's (e.g. a layer's
            placement ``at``); not passed to ``factory`` unless the host does so.
    """

    name: str
    kind: str
    paper: str
    summary: str
    factory: Callable[..., Any]
    defaults: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise PluginError(f"plugin {self.name!r} has unknown kind {self.kind!r} (kinds: {', '.join(KINDS)})")
        if not self.name or not self.name.replace("_", "").isalnum():
            raise PluginError(f"plugin name {self.name!r} must be a non-empty identifier")
        if "\n" in self.summary:
            raise PluginError(f"plugin {self.name!r}: the summary must be one line")


_PLUGINS: dict[str, PluginSpec] = {}
_entry_points_loaded = False


def register(spec: PluginSpec) -> PluginSpec:
    """Add ``spec``; the same name twice is an error unless it is the same factory again."""
    old = _PLUGINS.get(spec.name)
    if old is not None and old.factory is not spec.factory:
        raise PluginError(f"plugin name {spec.name!r} is registered twice "
                          f"({getattr(old.factory, '__module__', '?')} and {getattr(spec.factory, '__module__', '?')})")
    _PLUGINS[spec.name] = spec
    return spec


def register_plugin(name: str, kind: str, paper: str, summary: str, **defaults: Any
                    ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Class or function decorator: ``@register_plugin("dagnn", "layer", paper=..., summary=...)``."""

    def deco(obj: Callable[..., Any]) -> Callable[..., Any]:
        register(PluginSpec(name, kind, paper, summary, obj, dict(defaults)))
        obj.plugin_name = name
        return obj

    return deco


def _load_entry_points() -> None:
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in _PLUGINS:
            continue
        try:
            obj = ep.load()
        except Exception as exc:  # a broken third-party package must not break `sim`
            raise PluginError(f"the entry point {ep.name!r} = {ep.value!r} of group {ENTRY_POINT_GROUP!r} "
                              f"failed to load ({type(exc).__name__}: {exc})") from None
        if isinstance(obj, PluginSpec):
            if obj.name != ep.name:
                raise PluginError(f"entry point {ep.name!r} points to the plugin spec named {obj.name!r}")
            register(obj)
        elif ep.name not in _PLUGINS:
            raise PluginError(f"entry point {ep.name!r} = {ep.value!r} is neither a sim.plugins.PluginSpec nor "
                              f"registers a plugin of that name when imported")


def reload_entry_points() -> None:
    """Read the entry-point group again (after installing a package in a running process)."""
    global _entry_points_loaded
    _entry_points_loaded = False
    _load_entry_points()


def available_plugins(kind: str | None = None) -> list[PluginSpec]:
    """Registered plugins (of one kind), sorted by kind then name."""
    if kind is not None and kind not in KINDS:
        raise PluginError(f"unknown plugin kind {kind!r} (kinds: {', '.join(KINDS)})")
    _load_entry_points()
    specs = [s for s in _PLUGINS.values() if kind is None or s.kind == kind]
    return sorted(specs, key=lambda s: (KINDS.index(s.kind), s.name))


def get_plugin(name: str, kind: str | None = None) -> PluginSpec:
    """The plugin registered as ``name``; an unknown name (or a wrong kind) lists the known ones."""
    if name not in _PLUGINS:
        _load_entry_points()
    spec = _PLUGINS.get(name)
    if spec is None or (kind is not None and spec.kind != kind):
        known = ", ".join(s.name for s in available_plugins(kind)) or "none"
        what = f"{kind} plugin" if kind else "plugin"
        got = f" (it is a {spec.kind} plugin)" if spec is not None else ""
        raise PluginError(f"unknown {what} {name!r}{got}; known {what}s: {known}")
    return spec


def parse_spec(entry: str | Mapping[str, Any], what: str = "plugin") -> tuple[str, dict[str, Any]]:
    """``"name"`` or ``{"name": ..., **params}`` -> ``(name, params)``."""
    if isinstance(entry, str):
        return entry, {}
    if isinstance(entry, Mapping):
        params = dict(entry)
        name = params.pop("name", None)
        if not isinstance(name, str):
            raise PluginError(f"a {what} entry needs a 'name' (got {dict(entry)!r})")
        return name, params
    raise PluginError(f"a {what} entry is a name or a mapping with a 'name', not {entry!r}")


def build_plugin(entry: str | Mapping[str, Any], kind: str, **extra: Any) -> Any:
    """Call the factory of the plugin named in ``entry`` with its parameters (and ``extra``).

    Parameter errors (a misspelt keyword) become one :class:`PluginError` naming the plugin.
    """
    name, params = parse_spec(entry, kind)
    spec = get_plugin(name, kind)
    try:
        inspect.signature(spec.factory).bind(**extra, **params)
    except TypeError as exc:
        raise PluginError(f"{kind} plugin {name!r}: {exc}") from None
    return spec.factory(**extra, **params)
