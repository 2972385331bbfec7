"""Online normalisers: correct statistics, exact inverse, frozen after max_accumulations, saved in state."""

from __future__ import annotations

import torch

from sim.data import Normalizer


def test_statistics_inverse_and_freeze():
    torch.manual_seed(0)
    norm = Normalizer(3, max_accumulations=4)
    batches = [torch.randn(100, 3) * torch.tensor([1.0, 5.0, 0.1]) + torch.tensor([2.0, -1.0, 0.0])
               for _ in range(6)]
    for b in batches:
        norm(b)  # training mode accumulates
    seen = torch.cat(batches[:4]).double()
    torch.testing.assert_close(norm.mean, seen.mean(0))
    torch.testing.assert_close(norm.std, seen.std(0, unbiased=False))
    x = torch.randn(7, 3)
    torch.testing.assert_close(norm.inverse(norm(x, accumulate=False)), x, rtol=1e-5, atol=1e-5)
    z = norm(torch.cat(batches[:4]), accumulate=False)
    torch.testing.assert_close(z.mean(0), torch.zeros(3), atol=1e-5, rtol=0)


def test_eval_mode_does_not_accumulate_and_state_round_trips():
    norm = Normalizer(2)
    norm(torch.ones(5, 2))
    norm.eval()
    norm(torch.full((5, 2), 100.0))
    assert int(norm.accumulations) == 1
    other = Normalizer(2)
    other.load_state_dict(norm.state_dict())
    torch.testing.assert_close(other.mean, norm.mean)


def test_constant_feature_uses_epsilon_not_zero():
    norm = Normalizer(1, std_epsilon=1e-3)
    norm(torch.full((10, 1), 3.0))
    assert torch.isfinite(norm(torch.full((2, 1), 3.0))).all()
    assert float(norm.std) == 1e-3
