"""Models register by name so checkpoints can rebuild them from (name, constructor arguments).

Third-party packages add models through the entry-point group ``sim.models``
(``[project.entry-points."sim.models"] mymodel = "pkg.module:MyModel"``).
"""

from __future__ import annotations

import inspect
from importlib.metadata import entry_points
from typing import Any, Callable

from torch import nn

from sim.errors import SimError

_MODELS: dict[str, type[nn.Module]] = {}


def register_model(name: str) -> Callable[[type[nn.Module]], type[nn.Module]]:
    def deco(cls: type[nn.Module]) -> type[nn.Module]:
        if name in _MODELS and _MODELS[name] is not cls:
            raise SimError(f"model name {name!r} is registered twice ({_MODELS[name].__module__} and {cls.__module__})")
        _MODELS[name] = cls
        cls.registered_name = name
        return cls

    return deco


def _load_entry_points() -> None:
    for ep in entry_points(group="sim.models"):
        if ep.name not in _MODELS:
            register_model(ep.name)(ep.load())


def available_models() -> list[str]:
    _load_entry_points()
    return sorted(_MODELS)


def model_class(name: str) -> type[nn.Module]:
    if name not in _MODELS:
        _load_entry_points()
    if name not in _MODELS:
        raise SimError(f"unknown model {name!r} (available: {', '.join(available_models()) or 'none'})")
    return _MODELS[name]


def preset_args(name: str, preset: str) -> dict[str, Any]:
    """Constructor arguments of a named size preset of model ``name`` (its class attribute ``presets``)."""
    presets: dict[str, dict[str, Any]] = getattr(model_class(name), "presets", {})
    if preset not in presets:
        raise SimError(f"model {name!r} has no preset {preset!r} (presets: {', '.join(presets) or 'none'})")
    return dict(presets[preset])


def build_model(name: str, **kwargs: Any) -> nn.Module:
    """Instantiate the model registered as ``name``; an unknown name lists the known ones, and an
    argument its constructor does not take (a misspelt ``network_args`` key) lists the ones it
    takes, instead of a TypeError from deep inside the build."""
    cls = model_class(name)
    params = inspect.signature(cls.__init__).parameters
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        known = [k for k, p in params.items() if k != "self" and p.kind in (
            inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)]
        unknown = sorted(set(kwargs) - set(known))
        if unknown:
            raise SimError(f"model {name!r} has no argument(s) {unknown} (it takes: {', '.join(known)})")
    return cls(**kwargs)
