"""The ``sim view`` web application (trame): a :class:`sim.view.scene.Scene` rendered on the
server (VTK off screen: EGL or OSMesa, no display needed) and streamed to the browser as
images, or shipped to the browser for local rendering (``local=True``, vtk.js).

Page: field and component selectors, fixed or per-frame colour range, a time slider with
play/pause, a status line the server writes (step, time, range), the error curve of a rollout
and, for 3-D meshes, a clip plane.
"""

from __future__ import annotations

import asyncio
import base64
import os
import sys
from pathlib import Path
from typing import Any

from sim.errors import SimError

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
EXTRA_HINT = ("sim view needs the viewer's packages: pip install 'sim-surrogates[view]' "
              "(trame, trame-vtk, trame-vuetify)")


def _quiet_vtk() -> None:
    """Without a display VTK tries X first and logs a warning before it falls back to EGL or
    OSMesa; only errors are worth showing."""
    from vtkmodules.vtkCommonCore import vtkLogger

    vtkLogger.SetStderrVerbosity(vtkLogger.VERBOSITY_ERROR)


class Viewer:
    """A trame server showing one series.

    Args:
        path: a series, store or mesh file (:func:`sim.mesh.frames.open_frames`).
        entry: the store entry.
        local: render in the browser (vtk.js) instead of on the server.
        fps: frames per second when playing.
        name: the trame server's name (several viewers in one process need distinct names).
    """

    def __init__(self, path: str | os.PathLike, entry: str | None = None, local: bool = False, fps: float = 8.0,
                 name: str = "sim-view"):
        try:
            from trame.app import get_server
        except ImportError:
            raise SimError(EXTRA_HINT) from None
        from sim.mesh.frames import open_frames
        from sim.view.scene import Scene

        _quiet_vtk()
        self.path = Path(path)
        frames = open_frames(path, entry)
        try:
            self.scene = Scene(frames)
        except BaseException:
            frames.close()
            raise
        self.local, self.fps = local, fps
        self.server = get_server(name, client_type="vue3")
        self._setup_state()
        self._build_ui()

    # -- state ----------------------------------------------------------------------------
    def _setup_state(self) -> None:
        s, scene = self.server.state, self.scene
        entry = getattr(scene.frames, "entry", None)  # a store entry's frames
        s.title = self.path.name + (f" : {entry.name}" if entry is not None else "")
        s.fields = list(scene.fields)
        s.field = scene.field
        s.components = scene.info.choices
        s.component = scene.component
        s.num_steps = scene.num_steps
        s.frame = 0
        s.playing = False
        s.fixed_range = True
        s.is3d = scene.dim == 3 and not scene.points_only
        s.clip_axis = "off"
        s.clip_at = 0.5
        s.curve_src = ""
        s.scan_done = scene.num_steps == 1
        s.status = ""
        s.change("field")(self._on_field)
        s.change("component")(self._on_component)
        s.change("frame")(self._on_frame)
        s.change("fixed_range")(self._on_range)
        s.change("clip_axis", "clip_at")(self._on_clip)
        s.change("playing")(self._on_playing)
        self.server.controller.on_server_ready.add(self._start_scan)
        self._status()

    def _status(self) -> None:
        scene, s = self.scene, self.server.state
        t = scene.frames.times[scene.step]
        lo, hi = scene.shown_range
        scanned = int(scene.scanned.sum())
        s.status = (f"step {scene.step} / {scene.num_steps - 1}   t = {t:.4g}   {scene.field} ({scene.component}) "
                    f"range {lo:.3g} .. {hi:.3g} {'over the series' if scene.fixed_range else 'this frame'}"
                    + ("" if scene.scan_complete else f" (read {scanned}/{scene.num_steps} steps)"))

    def _update_curve(self) -> None:
        png = self.scene.curve_png()
        self.server.state.curve_src = "" if png is None else \
            "data:image/png;base64," + base64.b64encode(png).decode("ascii")

    def _redraw(self) -> None:
        self._status()
        self.server.controller.view_update()

    def _on_field(self, field: str, **_: Any) -> None:
        if field not in self.scene.fields or field == self.scene.field:
            return
        self.scene.set_field(field)
        self.server.state.components = self.scene.info.choices
        self.server.state.component = self.scene.component
        self._update_curve()
        self.server.controller.view_reset_camera()
        self._redraw()

    def _on_component(self, component: str, **_: Any) -> None:
        if component in self.scene.info.choices and component != self.scene.component:
            self.scene.set_component(component)
            self._redraw()

    def _on_frame(self, frame: Any, **_: Any) -> None:
        step = min(max(int(float(frame)), 0), self.scene.num_steps - 1)
        if step != self.scene.step:
            self.scene.show(step)
        if not self.server.state.playing or step % 10 == 0:
            self._update_curve()
        self._redraw()

    def _on_range(self, fixed_range: bool, **_: Any) -> None:
        self.scene.fixed_range = bool(fixed_range)
        self.scene.show(self.scene.step)
        self._redraw()

    def _on_clip(self, clip_axis: str, clip_at: float, **_: Any) -> None:
        self.scene.set_clip(None if clip_axis == "off" else clip_axis, float(clip_at))
        self._redraw()

    def _on_playing(self, playing: bool, **_: Any) -> None:
        if playing:
            asyncio.get_event_loop().create_task(self._play())

    async def _play(self) -> None:
        s = self.server.state
        while s.playing:
            with s:
                s.frame = (int(s.frame) + 1) % self.scene.num_steps
            await asyncio.sleep(1.0 / self.fps)

    def _start_scan(self, **_: Any) -> None:
        asyncio.get_event_loop().create_task(self._scan())

    async def _scan(self) -> None:
        """Read every frame once (fixed colour ranges, error curves), yielding to the page
        between frames; then redraw with the final ranges."""
        scene, s = self.scene, self.server.state
        for i in range(scene.num_steps):
            scene.scan(i)
            if i % 10 == 9:
                with s:
                    self._status()
                await asyncio.sleep(0)
        with s:
            s.scan_done = True
            scene.show(scene.step)
            self._update_curve()
            self._redraw()

    # -- page -----------------------------------------------------------------------------
    def _build_ui(self) -> None:
        from trame.ui.vuetify3 import SinglePageLayout
        from trame.widgets import html
        from trame.widgets import vtk as vtk_widgets
        from trame.widgets import vuetify3 as v3

        ctrl = self.server.controller
        with SinglePageLayout(self.server) as layout:
            layout.title.set_text("sim view: {{ title }}")
            with layout.toolbar:
                v3.VSpacer()
                v3.VSelect(v_model=("field",), items=("fields",), label="field", density="compact",
                           hide_details=True, style="max-width: 220px", classes="mx-1", id="field-select")
                v3.VSelect(v_model=("component",), items=("components",), label="component", density="compact",
                           hide_details=True, style="max-width: 150px", classes="mx-1", id="component-select")
                v3.VCheckbox(v_model=("fixed_range",), label="fixed range", density="compact", hide_details=True,
                             style="max-width: 140px", id="fixed-range")
                with html.Div(v_if="is3d", classes="d-flex align-center"):
                    v3.VSelect(v_model=("clip_axis",), items=("['off', 'x', 'y', 'z']",), label="clip",
                               density="compact", hide_details=True, style="min-width: 110px", id="clip-axis")
                    v3.VSlider(v_model=("clip_at",), min=0, max=1, step=0.01, hide_details=True,
                               style="width: 120px", disabled=("clip_axis === 'off'",), id="clip-at")
            with layout.content:
                with v3.VContainer(fluid=True, classes="pa-0 fill-height d-flex flex-column"):
                    with html.Div(style="flex: 1 1 auto; width: 100%; position: relative; min-height: 300px",
                                  id="view"):
                        view_cls = vtk_widgets.VtkLocalView if self.local else vtk_widgets.VtkRemoteView
                        kwargs = {} if self.local else {"interactive_ratio": 1}
                        view = view_cls(self.scene.plotter.render_window, **kwargs)
                        ctrl.view_update = view.update
                        ctrl.view_reset_camera = view.reset_camera
                    with html.Div(classes="d-flex align-center px-3 py-1", style="width: 100%"):
                        with v3.VBtn(icon=True, density="compact", click="playing = !playing", id="play",
                                     disabled=("num_steps < 2",)):
                            v3.VIcon("{{ playing ? 'mdi-pause' : 'mdi-play' }}")
                        v3.VSlider(v_model=("frame",), min=0, max=("num_steps - 1",), step=1, hide_details=True,
                                   classes="mx-3", id="time-slider", disabled=("num_steps < 2",))
                        html.Img(src=("curve_src",), v_if="curve_src", style="height: 160px", id="curve")
                    html.Div("{{ status }}", classes="px-3 pb-1 text-caption", id="status",
                             style="font-family: monospace; width: 100%")

    # -- serving --------------------------------------------------------------------------
    def start(self, port: int = 8080, host: str = "127.0.0.1", open_browser: bool = False) -> None:
        """Serve until interrupted (Ctrl-C)."""
        if host not in LOCAL_HOSTS:
            print(f"sim view: warning: serving on {host}:{port}; anyone who can reach this machine there can see "
                  "the data (the viewer has no login)", file=sys.stderr)
        self.server.controller.on_server_ready.add(
            lambda **_: print(f"sim view: serving {self.path} at http://{host}:{self.server.port}/ (Ctrl-C stops)",
                              flush=True))
        argv = sys.argv
        sys.argv = argv[:1]  # trame reads its own options from the command line; ours are already parsed
        try:
            self.server.start(port=port, host=host, open_browser=open_browser, show_connection_info=False,
                              disable_logging=True, exec_mode="main", timeout=0)
        finally:
            sys.argv = argv

    def close(self) -> None:
        self.scene.close()
