"""What the viewer draws, independent of the web page: a series read frame by frame
(:class:`sim.mesh.frames.Frames`) coloured by a field, in one panel or, where the series
carries ``<field>_truth`` and ``<field>_error`` (as ``sim rollout`` writes them), three panels
(prediction | truth | error) with linked cameras; colour ranges fixed over the series or per
frame; a clip plane for 3-D meshes; the rollout's error curve against persistence.

Fixed ranges and the error curves need every frame once: :meth:`Scene.scan` takes them one
frame at a time so a viewer can stay responsive while it runs.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sim.mesh.core import NODE_TYPE_ARRAY, Mesh
from sim.mesh.frames import Frames

TRUTH, ERROR = "_truth", "_error"
MAGNITUDE = "magnitude"  # of a vector
VALUE = "value"  # of a scalar
AXES = "xyz"
PANELS = ("prediction", "truth", "error")


@dataclass
class FieldInfo:
    """A field the viewer can colour by: where it lives and its components."""

    name: str
    location: str  # "point" or "cell"
    components: int
    compared: bool = False  # the series has <name>_truth and <name>_error

    @property
    def choices(self) -> list[str]:
        if self.components == 1:
            return [VALUE]
        return [MAGNITUDE] + [AXES[c] if self.components <= 3 else str(c) for c in range(self.components)]


COORDINATES = "coordinates"


def _arrays(mesh: Mesh) -> dict[str, tuple[str, np.ndarray]]:
    """Every numeric array of a frame by name, and the point coordinates (so a bare mesh can be
    coloured too)."""
    out = {k: ("point", v) for k, v in mesh.point_data.items() if np.asarray(v).dtype.kind in "biuf"}
    if mesh.node_type is not None:
        out[NODE_TYPE_ARRAY] = ("point", mesh.node_type)
    out.update({k: ("cell", v) for k, v in mesh.cell_data.items()
                if np.asarray(v).dtype.kind in "biuf" and k not in out})
    out.setdefault(COORDINATES, ("point", mesh.points))
    return out


def fields_of(mesh: Mesh) -> dict[str, FieldInfo]:
    """The fields of a frame a user chooses from: a compared field stands for its prediction,
    truth and error together."""
    arrays = _arrays(mesh)
    out: dict[str, FieldInfo] = {}
    for name, (loc, a) in arrays.items():
        a = np.asarray(a)
        comps = int(np.prod(a.shape[1:])) if a.ndim > 1 else 1
        out[name] = FieldInfo(name, loc, comps)
    for name, info in list(out.items()):
        if name + TRUTH in out and name + ERROR in out:
            info.compared = True
            del out[name + TRUTH], out[name + ERROR]
    return out


def component_values(a: np.ndarray, component: str) -> np.ndarray:
    """One value per node or cell: a scalar's value, a vector's magnitude, or one component."""
    a = np.asarray(a, dtype=np.float64)
    flat = a.reshape(len(a), -1)
    if component == VALUE and flat.shape[1] == 1:
        return flat[:, 0]
    if component == MAGNITUDE:
        return np.linalg.norm(flat, axis=1)
    c = AXES.index(component) if component in AXES else int(component)
    if c >= flat.shape[1]:
        raise ValueError(f"component {component!r} of a field with {flat.shape[1]} component(s)")
    return flat[:, c]


@dataclass
class Curves:
    """Per-step RMSE of a compared field (over nodes and components, as MeshGraphNet defines
    rollout RMSE) and persistence's (the first frame held)."""

    rmse: np.ndarray
    persistence: np.ndarray
    done: np.ndarray = field(default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if self.done is None:
            self.done = np.zeros(len(self.rmse), dtype=bool)


class Scene:
    """A series drawn with pyvista (off screen), ready to be shown by a web view.

    Args:
        frames: the series.
        plotter_kwargs: passed to ``pyvista.Plotter`` (``off_screen`` is always set).
    """

    def __init__(self, frames: Frames, **plotter_kwargs: Any):
        import pyvista as pv

        self.frames = frames
        first = frames.frame(0)
        self.dim = first.dim
        self.points_only = not first.cells or set(first.cells) == {"vertex"}
        self.fields = fields_of(first)
        self.compared = any(f.compared for f in self.fields.values())
        shape = (1, 3) if self.compared else (1, 1)
        size = plotter_kwargs.pop("window_size", [1500, 520] if self.compared else [900, 650])
        self.plotter = pv.Plotter(off_screen=True, shape=shape, window_size=size, border=False, **plotter_kwargs)
        if self.compared:
            self.plotter.link_views()
        self.field = next((n for n, f in self.fields.items() if f.compared), next(iter(self.fields)))
        self.component = self.info.choices[0]
        self.step = 0
        self.fixed_range = True
        self.clip_axis: str | None = None  # "x", "y" or "z" (3-D meshes)
        self.clip_at = 0.5  # where along the axis, as a fraction of the first frame's extent
        self._bounds = np.asarray(self._grid(first).bounds)
        self._ranges: dict[tuple[str, str, str], list[float]] = {}  # (field, component, panel) -> [lo, hi]
        self.scanned = np.zeros(len(frames), dtype=bool)
        self.curves: dict[str, Curves] = {}
        self._truth0: dict[str, np.ndarray] = {}
        self._grids: list[Any] = []
        self.shown_range: tuple[float, float] = (0.0, 1.0)  # the prediction panel's, as drawn last
        self._build()
        # the web view sizes the window to the page: fit the mesh again when it does
        self.plotter.render_window.AddObserver("WindowResizeEvent", lambda *_: self.fit())

    # -- what is shown ------------------------------------------------------------------
    @property
    def num_steps(self) -> int:
        return len(self.frames)

    @property
    def info(self) -> FieldInfo:
        return self.fields[self.field]

    def panels(self) -> list[str]:
        return list(PANELS) if self.info.compared else [PANELS[0]]

    def array_name(self, panel: str) -> str:
        return self.field + {"prediction": "", "truth": TRUTH, "error": ERROR}[panel]

    def set_field(self, name: str, component: str | None = None) -> None:
        if name not in self.fields:
            raise ValueError(f"no field {name!r} (fields: {', '.join(self.fields)})")
        comps = self.fields[name].choices
        component = component if component is not None else self.component
        self.field, self.component = name, component if component in comps else comps[0]
        self._build()

    def set_component(self, component: str) -> None:
        if component not in self.info.choices:
            raise ValueError(f"{self.field} has components {self.info.choices}, not {component!r}")
        self.component = component
        self.show(self.step)

    def set_clip(self, axis: str | None, at: float | None = None) -> None:
        if axis not in (None, "x", "y", "z"):
            raise ValueError(f"clip axis {axis!r}: x, y, z or None")
        self.clip_axis = axis if self.dim == 3 else None
        if at is not None:
            self.clip_at = float(np.clip(at, 0.0, 1.0))
        self.show(self.step)

    # -- values and ranges --------------------------------------------------------------
    def _panel_values(self, mesh: Mesh) -> dict[str, np.ndarray]:
        """The chosen component of each shown panel's array at this frame."""
        arrays = _arrays(mesh)
        return {p: component_values(arrays[self.array_name(p)][1], self.component) for p in self.panels()}

    def _extend(self, key: tuple[str, str, str], v: np.ndarray) -> None:
        finite = v[np.isfinite(v)]
        if not len(finite):
            return
        lo, hi = float(finite.min()), float(finite.max())
        r = self._ranges.get(key)
        self._ranges[key] = [min(lo, r[0]), max(hi, r[1])] if r else [lo, hi]

    def colour_range(self, panel: str, mesh: Mesh) -> tuple[float, float]:
        """The colour range of a panel at this frame. Prediction and truth share one range (equal
        colours mean equal values); the error panel has its own, symmetric about zero for a
        signed component. With ``fixed_range`` the range covers every frame scanned so far."""
        return self._range(panel, self._panel_values(mesh))

    def _range(self, panel: str, by_panel: dict[str, np.ndarray]) -> tuple[float, float]:
        partners = ["error"] if panel == "error" else [p for p in ("prediction", "truth") if p in by_panel]
        values = np.concatenate([by_panel[p] for p in partners])
        finite = values[np.isfinite(values)]
        lo, hi = (float(finite.min()), float(finite.max())) if len(finite) else (0.0, 1.0)
        if self.fixed_range:
            for k in [(self.field, self.component, p) for p in partners]:
                if k in self._ranges:
                    lo, hi = min(lo, self._ranges[k][0]), max(hi, self._ranges[k][1])
        if panel == "error" and self.component != MAGNITUDE:
            m = max(abs(lo), abs(hi))
            lo, hi = -m, m
        if hi <= lo:
            hi = lo + (abs(lo) * 1e-6 or 1.0)
        return lo, hi

    def scan(self, i: int) -> None:
        """Read frame ``i`` once for the fixed colour ranges (every field and component) and
        the error curves."""
        if self.scanned[i]:
            return
        mesh = self.frames.frame(i)
        arrays = _arrays(mesh)
        for name, info in self.fields.items():
            panels = PANELS if info.compared else PANELS[:1]
            for p in panels:
                key = name + {"prediction": "", "truth": TRUTH, "error": ERROR}[p]
                if key not in arrays:
                    continue
                for c in info.choices:
                    self._extend((name, c, p), component_values(arrays[key][1], c))
            if info.compared:
                self._curve_point(name, i, np.asarray(arrays[name + ERROR][1], dtype=np.float64),
                                  np.asarray(arrays[name + TRUTH][1], dtype=np.float64))
        self.scanned[i] = True

    def _curve_point(self, name: str, i: int, error: np.ndarray, truth: np.ndarray) -> None:
        c = self.curves.setdefault(name, Curves(np.full(self.num_steps, np.nan), np.full(self.num_steps, np.nan)))
        if name not in self._truth0:
            first = self.frames.frame(0)
            self._truth0[name] = np.asarray(_arrays(first)[name + TRUTH][1], dtype=np.float64)
        c.rmse[i] = float(np.sqrt(np.mean(error ** 2)))
        c.persistence[i] = float(np.sqrt(np.mean((truth - self._truth0[name]) ** 2)))
        c.done[i] = True

    @property
    def scan_complete(self) -> bool:
        return bool(self.scanned.all())

    # -- drawing ------------------------------------------------------------------------
    def _grid(self, mesh: Mesh) -> Any:
        from sim.mesh.adapters import mesh_to_pyvista

        return mesh_to_pyvista(mesh)

    def _build(self) -> None:
        """(Re)create the panels' actors for the current field."""
        pl = self.plotter
        for title in list(pl.scalar_bars.keys()):
            pl.remove_scalar_bar(title)
        for col in range(pl.shape[1]):
            pl.subplot(0, col)
            pl.clear_actors()
        self._grids = []
        mesh = self.frames.frame(self.step)
        base, by_panel = self._grid(mesh), self._panel_values(mesh)
        for col, panel in enumerate(PANELS[: pl.shape[1]]):
            pl.subplot(0, col)
            if panel not in by_panel:
                pl.add_text(f"{self.field} has no truth in this series", font_size=9, name="label")
                self._grids.append(None)
                continue
            grid = self._shown(base, panel, by_panel)
            self._grids.append(grid)
            title = f"{self.array_name(panel)} ({self.component})" if self.info.components > 1 else \
                self.array_name(panel)
            cmap = "RdBu_r" if panel == "error" and self.component != MAGNITUDE else "viridis"
            style = dict(style="points", point_size=6, render_points_as_spheres=True) if self.points_only else {}
            pl.add_mesh(grid, scalars="value", cmap=cmap, clim=grid.field_data["clim"],
                        preference=self.info.location, show_scalar_bar=True, name=f"mesh{col}",
                        scalar_bar_args={"title": title, "n_labels": 3, "fmt": "%.3g", "position_x": 0.15,
                                         "position_y": 0.04, "width": 0.7, "height": 0.06},
                        **style)
            if self.compared:
                pl.add_text(panel if self.info.compared else self.field, font_size=10, name="label")
        self._camera()
        pl.render()

    def _shown(self, base: Any, panel: str, by_panel: dict[str, np.ndarray]) -> Any:
        """The pyvista dataset of a panel at this frame (a shallow copy of the frame's grid):
        clipped when asked, the panel's values as ``value`` and its colour range in its field
        data."""
        grid = base.copy(deep=False)
        if self.info.location == "point":
            grid.point_data["value"] = by_panel[panel]
        else:
            grid.cell_data["value"] = by_panel[panel]
        grid.field_data["clim"] = np.array(self._range(panel, by_panel))
        if panel == PANELS[0]:
            self.shown_range = tuple(grid.field_data["clim"])
        if self.clip_axis is not None and not self.points_only:
            ax = "xyz".index(self.clip_axis)
            lo, hi = self._bounds[2 * ax], self._bounds[2 * ax + 1]
            origin = np.array(grid.center)
            origin[ax] = lo + self.clip_at * (hi - lo)
            clipped = grid.clip(normal=self.clip_axis, origin=origin, crinkle=False)
            clipped.field_data["clim"] = grid.field_data["clim"]
            grid = clipped
        return grid

    def _camera(self) -> None:
        pl = self.plotter
        for col in range(pl.shape[1]):
            pl.subplot(0, col)
            if self.dim < 3:
                pl.view_xy()
                pl.enable_parallel_projection()
                pl.enable_2d_style()
            else:
                pl.view_isometric()
            pl.reset_camera()
            if self.compared:
                break  # linked views share the first panel's camera
        self.fit()

    def fit(self) -> None:
        """A 2-D mesh fills its panel (with room for the label and the colour bar) whatever the
        panel's shape; 3-D views keep VTK's camera reset."""
        if self.dim == 3:
            return
        b = self._bounds
        dx, dy = max(b[1] - b[0], 1e-12), max(b[3] - b[2], 1e-12)
        for ren in self.plotter.renderers[: 1 if self.compared else None]:
            w, h = ren.GetSize()
            if not w or not h:
                continue
            cam = ren.GetActiveCamera()
            cam.SetParallelScale(1.3 * max(dy / 2, dx / 2 / (w / h)))
            cx, cy = (b[0] + b[1]) / 2, (b[2] + b[3]) / 2 - 0.08 * dy
            fz = cam.GetFocalPoint()[2]
            dist = cam.GetDistance()
            cam.SetFocalPoint(cx, cy, fz)
            cam.SetPosition(cx, cy, fz + dist)

    def show(self, step: int) -> None:
        """Draw frame ``step``."""
        step = int(step)
        if not 0 <= step < self.num_steps:
            raise ValueError(f"step {step} of a series of {self.num_steps}")
        self.step = step
        mesh = self.frames.frame(step)
        base, by_panel = self._grid(mesh), self._panel_values(mesh)
        for col, panel in enumerate(PANELS[: self.plotter.shape[1]]):
            old = self._grids[col] if col < len(self._grids) else None
            if old is None:
                continue
            new = self._shown(base, panel, by_panel)
            old.copy_from(new, deep=False)
            actor = self.plotter.renderers[col].actors.get(f"mesh{col}")
            if actor is not None:
                actor.mapper.scalar_range = tuple(new.field_data["clim"])
        self.plotter.render()

    def image(self) -> np.ndarray:
        """The current picture as an (H, W, 3) array."""
        return self.plotter.screenshot(return_img=True)

    def curve_png(self, width: float = 4.2, height: float = 2.4) -> bytes | None:
        """The error-vs-step curve of the current field (prediction and persistence, the
        current step marked) as PNG bytes; None when the series has no truth for it."""
        c = self.curves.get(self.field)
        if c is None or not c.done.any():
            return None
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        steps = np.arange(self.num_steps)
        fig, ax = plt.subplots(figsize=(width, height), dpi=100)
        try:
            ax.plot(steps[c.done], c.rmse[c.done], label="rollout", color="C0")
            ax.plot(steps[c.done], c.persistence[c.done], label="persistence", color="C1", ls="--")
            ax.axvline(self.step, color="0.4", lw=0.8)
            ax.set_xlabel("step")
            ax.set_ylabel(f"RMSE of {self.field}")
            ax.legend(fontsize=8, loc="upper left")
            ax.grid(alpha=0.3)
            fig.tight_layout()
            buf = io.BytesIO()
            fig.savefig(buf, format="png")
        finally:
            plt.close(fig)
        return buf.getvalue()

    def close(self) -> None:
        self.plotter.close()
        self.frames.close()
