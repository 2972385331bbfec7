"""Pictures a person looks at after a rollout: error vs step, and prediction / truth / error."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from sim.mesh import Mesh, Trajectory
from sim.mesh.atomic import atomic_path


def error_curve_png(path: Path, mse: np.ndarray, persistence: np.ndarray, dt: float, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = np.arange(1, len(mse) + 1)
    fig, ax = plt.subplots(figsize=(6, 3.5), constrained_layout=True)
    ax.semilogy(steps, np.sqrt(mse), label="model")
    ax.semilogy(steps, np.sqrt(persistence), "--", label="persistence (state never changes)")
    ax.set_xlabel(f"step (dt = {dt:g})")
    ax.set_ylabel("RMSE over nodes and fields")
    ax.set_title(f"rollout error, {title}")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def fields_png(path: Path, mesh: Mesh, panels: list[tuple[str, np.ndarray, str, tuple[float, float] | None]],
               window: tuple[int, int] | None = None) -> None:
    """One picture of scalar fields on ``mesh``, a panel per (title, values (N,), colour map, limits or
    None), stacked vertically (pyvista, off screen). 2D meshes are seen from above."""
    import pyvista as pv
    from vtkmodules.vtkCommonCore import vtkLogger

    # Without a display VTK warns while it picks an off-screen context; only errors matter here.
    vtkLogger.SetStderrVerbosity(vtkLogger.VERBOSITY_ERROR)
    grid = Mesh(mesh.points, mesh.cells).to_pyvista()
    planar = mesh.dim == 2 or np.ptp(mesh.points[:, -1]) == 0
    if window is None:
        panel_h = 300
        if planar:  # panels shaped like the domain
            ext = np.ptp(mesh.points[:, :2], axis=0)
            panel_h = int(np.clip(1000 * ext[1] / max(ext[0], 1e-12), 160, 700))
        window = (1000, panel_h * len(panels))
    plotter = pv.Plotter(shape=(len(panels), 1), off_screen=True, window_size=window)
    for row, (title, values, cmap, clim) in enumerate(panels):
        plotter.subplot(row, 0)
        plotter.add_text(title, font_size=10)
        plotter.add_mesh(grid.copy(), scalars=np.asarray(values), clim=clim, cmap=cmap, show_edges=False,
                         scalar_bar_args={"title": title.split(":")[0], "vertical": True, "height": 0.7, "width": 0.04,
                                          "position_x": 0.9, "position_y": 0.05, "label_font_size": 11,
                                          "title_font_size": 11})
        if planar:
            plotter.view_xy()
            # fit the domain to the panel without resizing the window (pyvista's default would), then
            # step back so that ~75% of the panel is domain: room for the title and the scalar bar
            plotter.camera.tight(padding=0.0, adjust_render_window=False)
            plotter.camera.zoom(0.75)
    with atomic_path(path) as tmp:
        plotter.screenshot(str(tmp))
    plotter.close()


def snapshot_png(path: Path, traj: Trajectory, ref: np.ndarray, res: Any, fields: list[str], dims: list[int],
                 simulator: Any, step: int) -> None:
    """Prediction, truth and error of the first field's magnitude at the last step."""
    pred = res.final[0]
    width = dims[0]
    pm = np.linalg.norm(pred[:, :width], axis=1)
    tm = np.linalg.norm(ref[step][:, :width], axis=1)
    em = np.linalg.norm(pred[:, :width] - ref[step][:, :width], axis=1)
    lo, hi = float(min(pm.min(), tm.min())), float(max(pm.max(), tm.max()))
    fields_png(path, traj.mesh, [
        (f"prediction: magnitude of {fields[0]}, step {step}", pm, "viridis", (lo, hi)),
        (f"truth: magnitude of {fields[0]}", tm, "viridis", (lo, hi)),
        (f"error: magnitude of the {fields[0]} error", em, "magma", (0.0, float(em.max()) or 1.0)),
    ])


def trajectory_png(path: Path, times: np.ndarray, observed: np.ndarray, future_times: np.ndarray,
                   truth: np.ndarray, pred: np.ndarray, title: str, equations: list[str] | None = None) -> None:
    """Each component of an ODE trajectory: the observed window, then truth and prediction;
    the generated equations (when any) in the title."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    d = observed.shape[1]
    fig, axes = plt.subplots(d, 1, figsize=(7, 1.8 * d + 0.8), sharex=True, constrained_layout=True, squeeze=False)
    for i, ax in enumerate(axes[:, 0]):
        ax.plot(times, observed[:, i], color="0.3", label="observed")
        ax.plot(future_times, truth[:, i], color="C0", label="truth")
        ax.plot(future_times, pred[:, i], "--", color="C1", label="prediction")
        ax.set_ylabel(f"x{i}")
        ax.grid(True, alpha=0.3)
    axes[0, 0].legend(loc="upper left", fontsize=8)
    axes[-1, 0].set_xlabel("t")
    eq = "" if not equations else "\n" + ",  ".join(f"dx{i}/dt = {e}" for i, e in enumerate(equations))
    fig.suptitle(f"{title}{eq}", fontsize=9)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
