"""The divergence guard: a runaway stops at 10x the data's scale by default, the factor is set per
call, per block (``blowup_guard``) or by ``--blowup-factor`` on ``sim rollout``/``sim eval``."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sim.cli import main
from sim.mesh import Store
from sim.models.mesh.simulator import MeshSimulator
from sim.rollout import RolloutDiverged
from sim.rollout.engine import BLOWUP_FACTOR, Frame, blowup_guard, check_blowup_factor, run
from sim.train.checkpoint import save_checkpoint
from tests.train.diffusion_data import diffusion_store


class Growing:
    """One trajectory of values 1.5^s (a geometric runaway), or NaN from step ``nan_at`` on."""

    size = 1

    def __init__(self, nan_at: int | None = None):
        self.value, self.nan_at = 1.0, nan_at
        self.times = [lambda s: float(s)]

    def outputs(self) -> list[Frame]:
        v = np.full((3, 2), self.value)
        return [Frame(v, {"u": v})]

    def advance(self, step: int) -> None:
        self.value = np.nan if self.nan_at is not None and step >= self.nan_at else 1.5 ** step


def _diverges_at(**kw) -> int:
    with pytest.raises(RolloutDiverged) as err:
        run(Growing(), 40, Growing().times, **kw)
    return int(str(err.value).split("at step ")[1].split(":")[0])


def test_default_stops_a_runaway_at_ten_times_the_data():
    assert BLOWUP_FACTOR == 10.0
    assert _diverges_at() == 6  # 1.5^5 = 7.6 passes, 1.5^6 = 11.4 > 10 x 1 (the former 1000x: step 18)
    ref = [np.full((41, 3, 2), 2.0)]  # the truth's magnitude counts too: limit 20
    assert _diverges_at(reference=ref) == 8  # 1.5^7 = 17.1, 1.5^8 = 25.6


def test_the_message_names_step_magnitude_limit_and_flag():
    with pytest.raises(RolloutDiverged) as err:
        run(Growing(), 40, Growing().times)
    msg = str(err.value)
    assert "at step 6" in msg and "magnitude 11.4" in msg and "limit 10" in msg and "--blowup-factor" in msg
    assert "\n" not in msg


def test_factor_per_call_per_block_and_zero_for_nan_only():
    assert _diverges_at(blowup_factor=100) == 12  # 1.5^11 = 86.5, 1.5^12 = 130
    with blowup_guard(1000):
        assert _diverges_at() == 18  # 1.5^17 = 985
        assert _diverges_at(blowup_factor=10) == 6  # an explicit factor wins over the block
        with blowup_guard(0):
            res = run(Growing(), 40, Growing().times)  # 1.5^40 = 1e7: no limit, only NaN/inf
            assert res.final[0][0, 0] == pytest.approx(1.5 ** 40)
        assert _diverges_at() == 18  # the outer block again
    assert _diverges_at() == 6  # and the default after it
    with pytest.raises(RolloutDiverged, match="at step 4: NaN"):
        run(Growing(nan_at=4), 40, Growing().times, blowup_factor=0)


@pytest.mark.parametrize("bad", [-1, float("nan"), "ten", None])
def test_bad_factors_are_refused(bad):
    with pytest.raises(Exception, match="--blowup-factor.*positive number, or 0") as err:
        check_blowup_factor(bad)
    assert type(err.value).__name__ == "SimError"


# --- through the command line ---------------------------------------------------------------


@pytest.fixture(scope="module")
def runaway(tmp_path_factory):
    """A mesh model whose every update is +5 on the diffusion data (|u| < 1): 10x the data is
    crossed within two steps, 100x (the former default's 1000x far) not in 10."""
    d = tmp_path_factory.mktemp("runaway")
    data = diffusion_store(d / "diff.h5", trajectories=1, steps=12)
    torch.manual_seed(0)
    model = MeshSimulator("meshgraphnet", {"latent": 8, "steps": 1}, ["u"], [1], edge_in=3)
    for norm in (model.node_normalizer, model.edge_normalizer):
        norm.count.fill_(1.0)
        norm.sum_sq.fill_(1.0)
    out = model.output_normalizer  # mean 5, std ~0: the update is 5 whatever the network says
    out.count.fill_(1.0)
    out.sum.fill_(5.0)
    out.sum_sq.fill_(25.0)
    save_checkpoint(d / "runaway.pt", model)
    with Store(data) as s:
        scale = float(np.abs(s.read(s.names()[0]).point_fields["u"]).max())
    assert 0.5 < scale < 1.0
    return d / "runaway.pt", data


@pytest.mark.parametrize("command", ["rollout", "eval"])
def test_cli_default_refuses_what_the_flag_allows(runaway, tmp_path, capsys, command):
    ckpt, data = runaway
    out = ["--out", str(tmp_path / "o")] if command == "rollout" else []
    assert main([command, str(ckpt), str(data), "--steps", "10", *out]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "diverged at step 2" in err[0] and "--blowup-factor" in err[0], err
    assert not (tmp_path / "o").exists() or not list((tmp_path / "o").iterdir())
    for factor in ("100", "0", "none"):
        assert main([command, str(ckpt), str(data), "--steps", "10", "--blowup-factor", factor, *out]) == 0
    if command == "rollout":
        assert (tmp_path / "o" / "000000.pvd").exists()
    assert main([command, str(ckpt), str(data), "--steps", "10", "--blowup-factor", "50", *out]) == 2
    assert "limit" in capsys.readouterr().err


@pytest.mark.parametrize("factor", ["-1", "nan", "big"])
def test_cli_bad_factor_is_one_line(runaway, tmp_path, capsys, factor):
    ckpt, data = runaway
    assert main(["rollout", str(ckpt), str(data), "--out", str(tmp_path / "o"), "--blowup-factor", factor]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("sim: error: ") and "--blowup-factor" in err[0]
    assert not (tmp_path / "o").exists()


def test_prose_does_not_step_so_the_flag_does_not_apply(tmp_path):
    from sim.errors import SimError
    from sim.families import get_family

    with pytest.raises(SimError, match="--blowup-factor does not apply"):
        get_family("prose").evaluate(None, tmp_path / "none.h5", None, blowup_factor=5.0)
