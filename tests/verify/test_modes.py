"""The propagation mode belongs to the box: boxes of different modes used in turn in one
process give exactly what each gives alone; bad modes, unsupported operations and misuse are
named errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from sim.errors import SimError
from sim.verify import MODES, BoundError, Interval, jacobian_rows


def _relu_mlp() -> nn.Sequential:
    torch.manual_seed(1)
    return nn.Sequential(nn.Linear(5, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 3)).double()


def _summary(out: Interval, box: Interval) -> list[torch.Tensor]:
    """Bounds and Jacobian enclosure of an output."""
    jac = out.jacobian() if out.mode == "centred" else jacobian_rows(out, torch.arange(out.numel()), box)
    return [out.lo, out.hi, *jac]


def test_modes_interleaved_in_one_process_do_not_affect_each_other():
    model = _relu_mlp()
    x0 = torch.randn(4, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        alone = {}
        for mode in MODES:
            box = Interval.box(x0, 0.3, mode=mode)
            alone[mode] = _summary(model(box), box)
        # the same boxes, run layer by layer in turn: each layer of one box runs between the others'
        boxes = {mode: Interval.box(x0, 0.3, mode=mode) for mode in reversed(MODES)}
        cur = dict(boxes)
        for layer in model:
            for mode in cur:
                cur[mode] = layer(cur[mode])
        together = {mode: _summary(cur[mode], boxes[mode]) for mode in MODES}
    for mode in MODES:
        assert cur[mode].mode == mode
        for a, b in zip(alone[mode], together[mode]):
            assert torch.equal(a, b), mode
    # and the modes do differ here, so the check is not vacuous
    width = {mode: alone[mode][1] - alone[mode][0] for mode in MODES}
    assert (width["crown"] < width["ibp"] - 1e-9).any() and not torch.equal(width["centred"], width["crown"])


def test_an_unknown_mode_is_refused():
    with pytest.raises(BoundError, match=r"mode must be one of \('ibp', 'crown', 'centred'\), not 'fast'"):
        Interval.box(torch.zeros(3, dtype=torch.float64), 0.1, mode="fast")
    with pytest.raises(BoundError, match="radius must be >= 0"):
        Interval.box(torch.zeros(3, dtype=torch.float64), -0.1)


def test_each_mode_offers_its_own_jacobian():
    lin = nn.Linear(3, 2).double()
    x0 = torch.zeros(3, dtype=torch.float64)
    with torch.no_grad():
        box = Interval.box(x0, 0.1, mode="centred")
        with pytest.raises(BoundError, match="keeps no tape"):
            jacobian_rows(lin(box), torch.tensor([0]), box)
        with pytest.raises(BoundError, match="no centred form"):
            lin(Interval.box(x0, 0.1, mode="crown")).jacobian()
        with pytest.raises(BoundError, match="does not depend on this input box"):
            jacobian_rows(lin(Interval.box(x0, 0.1)), torch.tensor([0]), Interval.box(x0, 0.1))


def test_unsupported_operations_are_named():
    attn = nn.MultiheadAttention(4, 1, batch_first=True).double()
    box = Interval.box(torch.randn(1, 3, 4, dtype=torch.float64), 0.1)
    with torch.no_grad(), pytest.raises(BoundError, match="no rule for"):
        attn(box, box, box)
    with pytest.raises(BoundError, match="no rule for the tensor attribute or method 'softmax'"):
        box.softmax(-1)
    assert not hasattr(box, "is_sparse")  # probes answer False
    assert issubclass(BoundError, SimError)  # the command line reports it in one line
