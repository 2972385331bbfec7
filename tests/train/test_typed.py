"""sim.train.typed: config sections built from YAML mappings, checked against their annotations,
with one readable message per problem."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Optional

import pytest
import yaml

from sim.errors import SimError
from sim.train.typed import at_least, build_section, check_device, in_range, non_negative, positive


@dataclass
class Optim:
    name: Literal["adam", "adamw"] = "adam"
    lr: float = field(default=1e-4, metadata={"check": positive})
    grad_clip: float | None = 1.0
    warmup: Optional[int] = None
    betas: tuple[float, ...] = (0.9, 0.999)


@dataclass
class Model:
    fields: list[str] = field(default_factory=lambda: ["velocity"])
    noise_std: float | list[float] = field(default=0.0, metadata={"check": non_negative})
    types: list[int] | None = None
    args: dict[str, Any] = field(default_factory=dict)
    widths: dict[str, int] = field(default_factory=dict)
    extra: Any = None
    mode: int | str = 0


@dataclass
class Train:
    steps: int = field(default=100, metadata={"check": at_least(1)})
    amp: bool = False
    out: str = "runs/run"
    device: str = field(default="auto", metadata={"check": check_device})
    ratio: float | None = field(default=None, metadata={"check": in_range(0, 1)})


@dataclass
class Needs:
    path: str
    count: int = 1


class MyError(SimError):
    pass


def build(cls, text, section):
    return build_section(cls, yaml.safe_load(text), section, "cfg.yaml", MyError)


def message(cls, text, section):
    with pytest.raises(MyError) as info:
        build(cls, text, section)
    assert info.value.path == "cfg.yaml"
    return info.value.message


def test_valid_section_is_built_with_converted_values():
    optim = build(Optim, "{name: adamw, lr: 1.0e-3, grad_clip: 2, warmup: 5, betas: [1, 0.5]}", "optim")
    assert optim == Optim("adamw", 1e-3, 2.0, 5, (1.0, 0.5))
    assert type(optim.grad_clip) is float and type(optim.betas) is tuple and type(optim.betas[0]) is float
    model = build(Model, "{fields: [a, b], noise_std: [0, 0.1], args: {k: [1, x]}, widths: {a: 3}, extra: {z: 1}}",
                  "model")
    assert model.fields == ["a", "b"] and model.noise_std == [0.0, 0.1] and type(model.noise_std[0]) is float
    assert model.args == {"k": [1, "x"]} and model.widths == {"a": 3} and model.extra == {"z": 1}
    assert build(Model, "{noise_std: 3, mode: fast}", "model").noise_std == 3.0
    assert build(Model, "{mode: fast}", "model").mode == "fast"


def test_none_gives_defaults_and_none_is_allowed_where_optional():
    assert build_section(Optim, None, "optim") == Optim()
    optim = build(Optim, "{grad_clip: null, warmup: null}", "optim")
    assert optim.grad_clip is None and optim.warmup is None
    assert build(Model, "{types: null}", "model").types is None
    assert message(Optim, "{lr: null}", "optim") == "optim.lr must be a number, got null"


def test_error_class_and_source_are_used_and_default_is_sim_error():
    with pytest.raises(SimError) as info:
        build_section(Train, {"steps": "x"}, "train", "a.yaml")
    assert type(info.value) is SimError and str(info.value).startswith("a.yaml: train.steps must be an integer")


def test_section_must_be_a_mapping():
    assert message(Optim, "[1, 2]", "optim") == "'optim' must be a mapping of keys, got a list"
    assert message(Optim, "adam", "optim") == "'optim' must be a mapping of keys, got the string 'adam'"


def test_unknown_keys_are_named_with_the_known_keys_sorted():
    assert message(Optim, "{lrr: 1.0, lr: 1.0}", "optim") == (
        "unknown key 'lrr' in 'optim' (known: betas, grad_clip, lr, name, warmup)")
    assert message(Train, "{b: 1, a: 2}", "train").startswith("unknown keys 'a', 'b' in 'train' (known: amp, ")


def test_required_keys_must_be_given():
    assert message(Needs, "{count: 2}", "needs") == "'needs' needs the key path"
    assert build(Needs, "{path: x}", "needs") == Needs("x")


def test_string_for_a_float_explains_yaml_number_syntax():
    assert message(Optim, "{lr: 1e-3}", "optim") == (
        "optim.lr must be a number, got the string '1e-3' (YAML reads 1e-3 without a decimal point as text: "
        "write 1.0e-3)")
    assert message(Optim, "{lr: 1.0e3}", "optim") == (
        "optim.lr must be a number, got the string '1.0e3' (YAML reads 1.0e3 without a sign in the exponent "
        "as text: write 1.0e+3)")
    assert message(Optim, "{grad_clip: 5e3}", "optim").endswith(
        "(YAML reads 5e3 without a decimal point and a sign in the exponent as text: write 5.0e+3)")
    assert message(Optim, "{lr: inf}", "optim").endswith("(YAML reads inf as text: write .inf)")
    assert message(Optim, "{lr: '0.5'}", "optim").endswith("(quoted, so it is text: remove the quotes)")
    # the hint only for strings that are numbers
    assert message(Optim, "{lr: fast}", "optim") == "optim.lr must be a number, got the string 'fast'"
    assert yaml.safe_load("lr: 1.0e-3")["lr"] == build(Optim, "{lr: 1.0e-3}", "optim").lr


def test_string_for_an_int_has_no_hint():
    assert message(Train, '{steps: "100"}', "train") == "train.steps must be an integer, got the string '100'"


def test_booleans_are_not_numbers_and_numbers_not_booleans():
    assert message(Train, "{steps: true}", "train") == "train.steps must be an integer, got the boolean true"
    assert message(Optim, "{lr: false}", "optim") == "optim.lr must be a number, got the boolean false"
    assert message(Train, "{amp: 1}", "train") == "train.amp must be true or false, got 1"
    assert build(Train, "{amp: true}", "train").amp is True


def test_float_for_an_int_is_an_error():
    assert message(Train, "{steps: 10.0}", "train") == "train.steps must be an integer, got 10.0 (write 10)"
    assert message(Train, "{steps: 10.5}", "train") == "train.steps must be an integer, got 10.5"


def test_str_field_rejects_other_scalars():
    assert message(Train, "{out: 12}", "train") == "train.out must be a string, got 12 (put it in quotes)"


def test_scalar_where_a_list_belongs():
    assert message(Model, "{fields: velocity}", "model") == (
        "model.fields must be a list, got the string 'velocity' (write [velocity])")
    assert message(Model, "{types: 3}", "model") == "model.types must be a list, got 3 (write [3])"
    assert message(Model, "{fields: {a: 1}}", "model") == "model.fields must be a list, got a mapping"


@pytest.mark.parametrize("cls, text, section, expected", [
    ("Model", "{fields: [a, 1]}", "model", "model.fields[1] must be a string, got 1 (put it in quotes)"),
    ("Model", "{types: [1, 2.5]}", "model", "model.types[1] must be an integer, got 2.5"),
    ("Optim", "{betas: [0.9, x]}", "optim", "optim.betas[1] must be a number, got the string 'x'"),
    ("Model", "{widths: {a: x}}", "model", "model.widths.a must be an integer, got the string 'x'"),
    ("Model", "{args: {1: x}}", "model", "a key of model.args must be a string, got 1 (put it in quotes)"),
    ("Model", "{args: [1]}", "model", "model.args must be a mapping, got a list"),
    # field checks run after the type checks
    ("Optim", "{lr: 0}", "optim", "optim.lr must be > 0, got 0.0"),
    ("Optim", "{lr: x}", "optim", "optim.lr must be a number, got the string 'x'"),
    ("Train", "{steps: 0}", "train", "train.steps must be >= 1, got 0"),
    ("Train", "{ratio: 1.5}", "train", "train.ratio must be between 0 and 1, got 1.5"),
    ("Model", "{noise_std: [0.1, -0.2]}", "model", "model.noise_std must be >= 0, got -0.2 at index 1"),
])
def test_items_are_checked_with_their_path_then_field_checks_run(cls, text, section, expected):
    assert message(globals()[cls], text, section) == expected


def test_unions():
    # a list for float | list[float]: the item's own message
    assert message(Model, "{noise_std: [0.1, x]}", "model") == (
        "model.noise_std[1] must be a number, got the string 'x'")
    assert message(Model, "{noise_std: fast}", "model") == (
        "model.noise_std must be a number or a list, got the string 'fast'")
    assert message(Model, "{noise_std: 1e-2}", "model") == (
        "model.noise_std must be a number or a list, got the string '1e-2' (YAML reads 1e-2 without a decimal "
        "point as text: write 1.0e-2)")
    assert message(Model, "{mode: [1]}", "model") == "model.mode must be an integer or a string, got a list"


def test_literal_lists_the_allowed_values():
    assert message(Optim, "{name: sgd}", "optim") == "optim.name must be one of 'adam', 'adamw', got the string 'sgd'"


def test_field_checks_skip_none_and_take_converted_values():
    assert build(Train, "{ratio: null, steps: 1}", "train").ratio is None
    assert build(Train, "{ratio: 1}", "train").ratio == 1.0


def test_checkers():
    assert positive(1e-9) is None and positive(None) is None
    assert positive(0) == "must be > 0, got 0" and positive(-1.5) == "must be > 0, got -1.5"
    assert non_negative(0) is None and non_negative(-1) == "must be >= 0, got -1"
    assert at_least(2)(2) is None and at_least(2)(1) == "must be >= 2, got 1" and at_least(2)(None) is None
    check = in_range(0.0, 1.0)
    assert check(0.0) is None and check(1.0) is None and check(None) is None
    assert check(1.01) == "must be between 0.0 and 1.0, got 1.01" and check(-0.1) is not None
    assert positive(float("nan")) == "must be > 0, got nan"
    assert non_negative([0, 1]) is None and non_negative([0, -1]) == "must be >= 0, got -1 at index 1"


@pytest.mark.parametrize("name", ["auto", "cpu", "cuda", "cuda:0", "cuda:3", "mps", "cpu:0", "meta"])
def test_check_device_accepts_device_strings_without_needing_the_device(name):
    assert check_device(name) is None


@pytest.mark.parametrize("name", ["gpu", "CUDA", "cuda:x", "cuda:-1", "", " cpu"])
def test_check_device_rejects_others(name):
    assert check_device(name) == f"must be auto, cpu, cuda or cuda:N, got {name!r}"


def test_device_check_in_a_section():
    assert message(Train, "{device: gpu}", "train") == "train.device must be auto, cpu, cuda or cuda:N, got 'gpu'"
    assert build(Train, "{device: 'cuda:1'}", "train").device == "cuda:1"


def test_unsupported_annotation_is_a_programming_error():
    @dataclass
    class Odd:
        x: set = field(default_factory=set)

    with pytest.raises(TypeError, match="cannot check the annotation"):
        build_section(Odd, {"x": [1]}, "odd")
