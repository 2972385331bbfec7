"""Build a configuration dataclass from a YAML mapping, checked against the field annotations.

``build_section(OptimConfig, data.get("optim"), "optim", path, ConfigError)`` returns an
``OptimConfig`` or raises one readable error naming the key (``optim.lr``, ``model.fields[1]``) and
the problem. It checks that:

* the section is a mapping (``None`` gives the defaults) with only known keys and every required one;
* each value has its annotated type: ``int``, ``float`` (an integer is taken, stored as a float),
  ``bool``, ``str``, ``list[T]``, ``tuple[T, ...]``, ``dict[str, T]``, ``Literal[...]``, ``Any``,
  ``X | None`` and unions of these. ``true`` is not a number, ``1`` is not a boolean and ``10.0`` is
  not an integer. A string where a number belongs is explained (YAML reads ``1e-3`` as text: write
  ``1.0e-3``), and so is a single value where a list belongs (write ``[velocity]``);
* a field declared with ``field(metadata={"check": checker})`` passes ``checker(value)``, which
  returns ``None`` or the problem as text ("must be > 0, got 0"). Ready-made checkers:
  :func:`positive`, :func:`non_negative`, :func:`at_least`, :func:`in_range` and :func:`check_device`.
"""

from __future__ import annotations

import dataclasses
import re
import types
from collections.abc import Callable, Mapping
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

import yaml

from sim.errors import SimError

class _Bad(Exception):
    """A value does not fit its annotation; the argument is the whole message."""


def build_section(cls: type, data: Any, section: str, source: Any = None, error: type = SimError) -> Any:
    """Instantiate dataclass ``cls`` from mapping ``data`` (``None``: the defaults), the config section
    ``section`` (e.g. ``"optim"``), checking each value; problems raise ``error(message, source)``."""
    data = {} if data is None else data
    if not isinstance(data, Mapping):
        raise error(f"'{section}' must be a mapping of keys, got {_show(data)}", source)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(str(k) for k in data if k not in fields)
    if unknown:
        raise error(f"unknown key{'s' * (len(unknown) > 1)} {', '.join(map(repr, unknown))} in '{section}' "
                    f"(known: {', '.join(sorted(fields))})", source)
    missing = [n for n, f in fields.items() if n not in data and f.default is f.default_factory is dataclasses.MISSING]
    if missing:
        raise error(f"'{section}' needs the key{'s' * (len(missing) > 1)} {', '.join(missing)}", source)
    hints, values = get_type_hints(cls), {}
    for name, value in data.items():
        try:
            value = _convert(value, hints[name], f"{section}.{name}")
        except _Bad as bad:
            raise error(str(bad), source) from None
        problem = fields[name].metadata.get("check", lambda _: None)(value)
        if problem:
            raise error(f"{section}.{name} {problem}", source)
        values[name] = value
    return cls(**values)


def _convert(value: Any, tp: Any, path: str) -> Any:
    """``value`` checked against annotation ``tp`` (ints become floats for ``float``); raises _Bad."""
    if tp is Any:
        return value
    origin, args, hint = get_origin(tp) or tp, get_args(tp), ""
    if origin in (Union, types.UnionType):
        return _union(value, args, path)
    if origin is Literal:
        if any(value == a and type(value) is type(a) for a in args):
            return value
    elif tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            hint = f" (write {int(value)})"
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        hint = _number_hint(value)
    elif tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (bool, int, float)):
            hint = " (put it in quotes)"
    elif origin in (list, tuple):
        if isinstance(value, (list, tuple)):
            items = [_convert(v, args[0] if args else Any, f"{path}[{i}]") for i, v in enumerate(value)]
            return tuple(items) if origin is tuple else items
        if value is not None and not isinstance(value, Mapping):
            hint = f" (write [{str(value).lower() if isinstance(value, bool) else value}])"
    elif origin is dict:
        if isinstance(value, Mapping):
            key_t, value_t = args or (Any, Any)
            return {_convert(k, key_t, f"a key of {path}"): _convert(v, value_t, f"{path}.{k}")
                    for k, v in value.items()}
    else:
        raise TypeError(f"build_section cannot check the annotation {tp!r} of {path}")
    raise _Bad(f"{path} must be {_describe(tp)}, got {_show(value)}{hint}")


def _union(value: Any, args: tuple, path: str) -> Any:
    if value is None and types.NoneType in args:
        return None
    alts, problems = [a for a in args if a is not types.NoneType], []
    for alt in alts:
        try:
            return _convert(value, alt, path)
        except _Bad as bad:
            problems.append(bad)
    # the only candidate, or the only one of the value's own kind (a list for a list), says most
    kinds = {list: list, tuple: list, dict: dict}
    kind = list if isinstance(value, (list, tuple)) else dict if isinstance(value, Mapping) else None
    same = [bad for alt, bad in zip(alts, problems) if kind and kinds.get(get_origin(alt) or alt) is kind]
    if len(problems) == 1 or len(same) == 1:
        raise (same or problems)[0]
    hint = _number_hint(value) if {int, float} & set(alts) else ""
    raise _Bad(f"{path} must be {_describe(Union[args])}, got {_show(value)}{hint}")


def _describe(tp: Any) -> str:
    """What an annotation asks for, in words: "an integer", "a number or a list"."""
    origin, args = get_origin(tp) or tp, get_args(tp)
    if origin is Literal:
        return "one of " + ", ".join(map(repr, args))
    if origin in (Union, types.UnionType):
        words = [_describe(a) for a in args]
        return ", ".join(words[:-1]) + " or " + words[-1]
    names = {int: "an integer", float: "a number", bool: "true or false", str: "a string", list: "a list",
             tuple: "a list", dict: "a mapping", types.NoneType: "null"}
    return names.get(origin, repr(tp))


def _show(value: Any) -> str:
    """A value as YAML shows it: "the string '1e-3'", "the boolean true", "null", "a list", "10.0"."""
    if isinstance(value, str):
        return f"the string {value!r}"
    if isinstance(value, bool) or value is None:
        return "null" if value is None else f"the boolean {str(value).lower()}"
    return "a mapping" if isinstance(value, Mapping) else "a list" if isinstance(value, (list, tuple)) else repr(value)


def _number_hint(value: Any) -> str:
    """Why YAML read a number as text, and how to write it, when the string ``value`` is a number."""
    if not isinstance(value, str):
        return ""
    try:
        number = float(value)
    except ValueError:
        return ""
    if isinstance(yaml.safe_load(value), (int, float)):
        return " (quoted, so it is text: remove the quotes)"
    m = re.fullmatch(r"([-+]?)(\d*)\.?(\d*)[eE]([-+]?)(\d+)", value.strip())
    if m is None:  # inf, nan
        return f" (YAML reads {value} as text: write {yaml.safe_dump(number).splitlines()[0]})"
    sign, whole, frac, exp_sign, exp = m.groups()
    missing = [w for w, ok in (("a decimal point", "." in value), ("a sign in the exponent", exp_sign)) if not ok]
    why = f" without {' and '.join(missing)}" if missing else ""
    return f" (YAML reads {value}{why} as text: write {sign}{whole or 0}.{frac or 0}e{exp_sign or '+'}{exp})"


def _bound(ok: Callable[[Any], bool], text: str) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        many = isinstance(value, (list, tuple))
        for i, item in enumerate(value if many else [value]):
            if item is not None and not ok(item):
                return f"must be {text}, got {item!r}" + (f" at index {i}" if many else "")
        return None
    return check


positive = _bound(lambda v: v > 0, "> 0")
non_negative = _bound(lambda v: v >= 0, ">= 0")


def at_least(n: float) -> Callable[[Any], str | None]:
    """A checker: the value must be >= ``n``."""
    return _bound(lambda v: v >= n, f">= {n}")


def in_range(lo: float, hi: float) -> Callable[[Any], str | None]:
    """A checker: the value must lie in the closed interval [``lo``, ``hi``]."""
    return _bound(lambda v: lo <= v <= hi, f"between {lo} and {hi}")


def check_device(name: str) -> str | None:
    """None for "auto" or a device string torch understands ("cpu", "cuda:1"; it need not exist)."""
    import torch

    try:
        if name is None or name == "auto" or (isinstance(name, str) and torch.device(name)):
            return None
    except (RuntimeError, TypeError, ValueError):
        pass
    return f"must be auto, cpu, cuda or cuda:N, got {name!r}"
