"""MMGP on plates of varying shape: steady fields with uncertainty, through the Python API.

    python examples/elasticity_mmgp.py [--out examples_output/elasticity_mmgp] [--quick]

1. generate the small elasticity recipe with our plane-stress solver: notched plates meshed
   independently (different node counts and connectivity), clamped at the bottom, pulled at
   the top, with random E, nu and load; plus out-of-distribution ellipse and wedge shapes;
2. fit MMGP (Floater morphing onto the disk, P1 transfer to a common mesh, POD, Gaussian
   processes) and save it (arrays + JSON, no pickles);
3. ``sim.load`` it and predict an unseen in-distribution plate and an out-of-distribution one:
   mean and std of the displacement and von Mises fields on each plate's own mesh, written
   as ``.vtu`` (ParaView) and pictured (``<case>.png``: prediction, truth, error, std).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

import sim
from sim.mesh import Store
from sim.models.mmgp import MMGP
from sim.rollout.plots import fields_png
from solvers.recipes import generate, load_recipe

ROOT = Path(__file__).resolve().parents[1]
INPUTS = ("E", "nu", "load")
FIELDS = ("u", "von_mises")


def read_all(path: Path) -> list:
    with Store(path) as s:
        return [s.read(n) for n in s.names()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="examples_output/elasticity_mmgp")
    ap.add_argument("--quick", action="store_true", help="coarser meshes and fewer modes (a smoke test)")
    args = ap.parse_args()
    out = Path(args.out)
    t0 = time.perf_counter()
    recipe = load_recipe(ROOT / "datasets" / "elasticity_shapes.yaml")
    if args.quick:
        recipe.sizes["small"]["params"] = {"mesh_size": 0.1}
    data = generate(recipe, "small", out=out / "data", workers=1)
    train, test = read_all(data["train"]), read_all(data["test"])
    ood = read_all(data["test_wedge"])

    modes = 4 if args.quick else 8
    model = MMGP(shape_modes=modes, field_modes=modes, n_restarts=1, n_draws=100)
    model.fit(train, {k: np.array([m.field_data[k][0] for m in train]) for k in INPUTS},
              {f: [m.point_data[f] for m in train] for f in FIELDS})
    model.save(out / "mmgp.npz")
    print(f"fitted MMGP on {len(train)} plates ({min(m.num_points for m in train)}-"
          f"{max(m.num_points for m in train)} nodes each): {out / 'mmgp.npz'}")

    surrogate = sim.load(out / "mmgp.npz")
    for case, mesh in (("in_distribution", test[0]), ("out_of_distribution_wedge", ood[0])):
        grid = surrogate.predict(mesh, **{k: float(mesh.field_data[k][0]) for k in INPUTS})
        truth = mesh.point_data["von_mises"]
        pred, std = grid.point_data["von_mises"], grid.point_data["von_mises_std"]
        for f in FIELDS:
            grid.point_data[f"{f}_truth"] = mesh.point_data[f]
        grid.save(out / f"{case}.vtu")
        lim = (float(truth.min()), float(truth.max()))
        fields_png(out / f"{case}.png", mesh, [
            ("prediction: von Mises stress", pred, "viridis", lim),
            ("truth: von Mises stress", truth, "viridis", lim),
            ("error: |prediction - truth|", np.abs(pred - truth), "magma", None),
            ("std: predictive standard deviation", std, "cividis", None)], window=(700, 1400))
        rel = np.sqrt(np.mean((pred - truth) ** 2)) / np.abs(truth).max()
        print(f"{case}: von Mises RRMSE {rel:.4f}, mean predicted std {std.mean():.4g} "
              f"-> {out / f'{case}.vtu'}, {out / f'{case}.png'}")
    print(f"done in {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
