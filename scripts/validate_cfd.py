"""Validate the cylinder-flow solver against the DFG 2D-2 benchmark (Schaefer & Turek 1996).

Channel 2.2 x 0.41, cylinder of radius 0.05 at (0.2, 0.2), parabolic inflow with mean 1
(peak 1.5), nu = 1e-3, so Re = 100 on the diameter. Reported after the flow has become
periodic: max drag and lift coefficients over the last periods and the Strouhal number
from the lift's period, next to the published reference ranges.

    python scripts/validate_cfd.py [--quick] [--json PATH] [--size H] [--size-min H] [--dt DT] [--t-end T]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from solvers.cfd.geometry import Channel, channel_mesh  # noqa: E402
from solvers.cfd.navier_stokes import CylinderFlow  # noqa: E402

REFERENCE = {"cd_max": (3.22, 3.24), "cl_max": (0.99, 1.01), "strouhal": (0.295, 0.305)}


def run(size: float, size_min: float, dt: float, t_end: float, window: float, kick: float = 0.3,
        wake_size: float | None = None, progress: bool = True) -> dict:
    t0 = time.perf_counter()
    channel = Channel()
    mesh = channel_mesh(channel, size=size, size_min=size_min, refine_distance=0.4, wake_size=wake_size)
    # a brief rotation of the cylinder (first second) starts the shedding early; the periodic
    # state it leads to is the same, it is only reached within a shorter run
    flow = CylinderFlow(mesh, channel, nu=1e-3, u_mean=1.0, dt=dt, ramp=0.5, kick=kick, kick_time=1.0)
    state = flow.initial_state()
    times, cd, cl, cd_v, cl_v = [], [], [], [], []
    n = int(round(t_end / dt))
    from tqdm import tqdm

    for _ in tqdm(range(n), desc="DFG 2D-2", unit="step", disable=not progress, mininterval=2.0):
        state = flow.step(state)
        fx, fy = flow.forces(state)  # traction integral on the cylinder
        vx, vy = flow.forces_volume(state)  # momentum residual tested with a cylinder indicator
        times.append(state.t)
        cd.append(2 * fx / (1.0**2 * 0.1))
        cl.append(2 * fy / (1.0**2 * 0.1))
        cd_v.append(2 * vx / (1.0**2 * 0.1))
        cl_v.append(2 * vy / (1.0**2 * 0.1))
    times, cd, cl, cd_v, cl_v = map(np.asarray, (times, cd, cl, cd_v, cl_v))
    last = times > t_end - window
    up = np.flatnonzero((cl[:-1] < 0) & (cl[1:] >= 0) & last[1:])
    # linear interpolation of the upward zero crossings of the lift
    tz = times[up] - cl[up] * (times[up + 1] - times[up]) / (cl[up + 1] - cl[up])
    strouhal = float(0.1 / np.mean(np.diff(tz))) if len(tz) > 2 else float("nan")
    before = (times > t_end - 2 * window) & ~last  # the window before: equal maxima mean a periodic state
    return {  # reported: the volume-integral forces (less sensitive to the wall resolution)
        "cd_max": float(cd_v[last].max()), "cl_max": float(cl_v[last].max()), "strouhal": strouhal,
        "cd_max_previous_window": float(cd_v[before].max()), "cl_max_previous_window": float(cl_v[before].max()),
        "kick": kick, "wake_size": wake_size,
        "cd_max_traction": float(cd[last].max()), "cl_max_traction": float(cl[last].max()),
        "cd_max_volume": float(cd_v[last].max()), "cl_max_volume": float(cl_v[last].max()),
        "n_vertices": mesh.num_points, "n_velocity_dofs": int(2 * flow.vb.N), "dt": dt, "t_end": t_end,
        "mesh_size": size, "mesh_size_min": size_min, "wall_s": time.perf_counter() - t0,
        "divergence_l2_final": flow.divergence_l2(state),
        "machine": platform.machine(), "python": platform.python_version(),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="coarse mesh and large dt (about a minute)")
    ap.add_argument("--json", help="write the results as JSON")
    ap.add_argument("--size", type=float)
    ap.add_argument("--size-min", type=float)
    ap.add_argument("--dt", type=float)
    ap.add_argument("--t-end", type=float)
    ap.add_argument("--kick", type=float, default=0.3, help="early cylinder rotation speed (0: none)")
    ap.add_argument("--wake-size", type=float, help="element size in a refined wake box (default: none; a 0.01 "
                                                    "wake changed no reported digit here)")
    args = ap.parse_args()
    q = args.quick
    res = run(size=args.size or (0.04 if q else 0.025), size_min=args.size_min or (0.012 if q else 0.004),
              dt=args.dt or (0.005 if q else 0.002), t_end=args.t_end or (6.0 if q else 7.0),
              window=2.0, kick=args.kick, wake_size=args.wake_size)
    print(f"periodicity: cl_max {res['cl_max_previous_window']:.4f} in the window before the last, "
          f"cd_max {res['cd_max_previous_window']:.4f}")
    print(f"traction-integral forces: cd_max {res['cd_max_traction']:.4f}, cl_max {res['cl_max_traction']:.4f}")
    print(f"mesh: {res['n_vertices']} vertices (size {res['mesh_size']}, {res['mesh_size_min']} at the cylinder, "
          f"{res['wake_size']} in the wake), "
          f"dt {res['dt']}, t_end {res['t_end']}, wall {res['wall_s']:.0f} s")
    print(f"{'quantity':<10} {'ours':>9} {'reference':>15} {'error vs mid':>13}")
    for k, (lo, hi) in REFERENCE.items():
        mid = 0.5 * (lo + hi)
        print(f"{k:<10} {res[k]:>9.4f} {f'{lo}-{hi}':>15} {100 * (res[k] - mid) / mid:>12.1f}%")
        res[f"{k}_ref_low"], res[f"{k}_ref_high"] = lo, hi
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
