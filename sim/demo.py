"""``sim demo``: a small mesh series written for ParaView, until a trained demo model exists.

The mesh is a real unstructured gmsh mesh (a channel with a cylinder, refined near it,
node types on every boundary). The fields are analytic, so the demo needs no solver:
potential flow past the cylinder (static velocity) and a Gaussian pulse carried by the
mean flow while it diffuses (a time-dependent scalar; the free-space solution, so it is an
I/O demonstration, not a solution of the boundary-value problem). The series is written
to the sim store, to ``.pvd`` + ``.vtu`` and to XDMF, and a PNG shows three snapshots.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sim.mesh import Trajectory
from sim.mesh.atomic import atomic_path
from solvers.cfd.geometry import Channel, channel_mesh

CENTRE, RADIUS = (0.2, 0.2), 0.05


def demo_trajectory(steps: int = 40, dt: float = 0.02, speed: float = 1.0, diffusivity: float = 2e-3) -> Trajectory:
    mesh = channel_mesh(Channel(), size=0.03)
    x = mesh.points[:, 0] - CENTRE[0]
    y = mesh.points[:, 1] - CENTRE[1]
    r2 = np.maximum(x**2 + y**2, RADIUS**2)
    velocity = np.stack([speed * (1 - RADIUS**2 * (x**2 - y**2) / r2**2), -speed * 2 * RADIUS**2 * x * y / r2**2], 1)
    mesh.point_data["velocity"] = velocity.astype(np.float32)
    times = np.arange(steps) * dt
    s0 = 0.05
    c = np.empty((steps, mesh.num_points), dtype=np.float32)
    for i, t in enumerate(times):
        var = s0**2 + 2 * diffusivity * t
        cx, cy = 0.5 + speed * t, 0.25
        c[i] = s0**2 / var * np.exp(-((mesh.points[:, 0] - cx) ** 2 + (mesh.points[:, 1] - cy) ** 2) / (2 * var))
    return Trajectory(mesh, times, point_fields={"concentration": c}, dt=dt,
                      params={"speed": speed, "diffusivity": diffusivity, "pulse_width": s0})


def snapshot_png(traj: Trajectory, field: str, path: Path, steps: list[int]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.tri import Triangulation

    tri = Triangulation(traj.mesh.points[:, 0], traj.mesh.points[:, 1], traj.mesh.cells["triangle"])
    fig, axes = plt.subplots(len(steps), 1, figsize=(9, 1.9 * len(steps)), constrained_layout=True)
    vmax = float(traj.point_fields[field].max())
    for ax, t in zip(np.atleast_1d(axes), steps):
        im = ax.tripcolor(tri, traj.point_fields[field][t], shading="gouraud", vmin=0, vmax=vmax, cmap="viridis")
        ax.triplot(tri, lw=0.1, color="w", alpha=0.3)
        ax.set_aspect("equal")
        ax.set_title(f"{field}, t = {traj.times[t]:.2f}", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(im, ax=axes, shrink=0.8)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def run_demo(out: Path, steps: int = 40) -> dict[str, Path]:
    from sim.mesh import StoreWriter, write_pvd, write_xdmf

    out.mkdir(parents=True, exist_ok=True)
    traj = demo_trajectory(steps=steps)
    paths = {"store": out / "demo.h5", "pvd": out / "demo.pvd", "xdmf": out / "demo.xdmf", "png": out / "demo.png"}
    with StoreWriter(paths["store"]) as w:
        w.append(traj, name="channel")
    write_pvd(traj, paths["pvd"])
    write_xdmf(traj, paths["xdmf"])
    snapshot_png(traj, "concentration", paths["png"], [0, steps // 2, steps - 1])
    print(f"mesh: {traj.mesh.num_points} nodes, {traj.mesh.num_cells} triangles; {traj.num_steps} steps")
    for kind, p in paths.items():
        print(f"wrote {p}" + ("   <- open this in ParaView" if kind == "pvd" else ""))
    return paths
