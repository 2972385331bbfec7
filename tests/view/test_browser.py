"""`sim view` served to headless Chromium (Debian's package, driven by Playwright through its
executable path: no browser is downloaded). `make browser` installs both; without them these
tests are skipped with a message saying so."""

from __future__ import annotations

import io
import os
import re
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from sim.mesh import write_pvd
from tests.view.conftest import free_port, rollout, serve, stop

CHROMIUM = os.environ.get("SIM_CHROMIUM", shutil.which("chromium") or "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]

pytest.importorskip("trame", reason="the viewer's packages are missing: pip install '.[view]'")
playwright = pytest.importorskip("playwright.sync_api", reason="Playwright is missing: make browser")
if not Path(CHROMIUM).exists():
    pytest.skip(f"no Chromium at {CHROMIUM}: make browser (Debian's chromium package)", allow_module_level=True)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """`sim view` on a small rollout series, in its own process, with no display."""
    folder = tmp_path_factory.mktemp("view")
    series = write_pvd(rollout(), folder / "roll.pvd")
    proc, _ = serve(["view", str(series), "--port", str(free_port())], folder / "server.log")
    yield proc.args[proc.args.index("--port") + 1]
    stop(proc)


@pytest.fixture
def page(served):
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        pg = browser.new_page(viewport={"width": 1300, "height": 760})
        pg.goto(f"http://127.0.0.1:{served}/")
        # trame first serves a "Loading..." page, then connects its websocket and builds the app;
        # the status line is written by the server, so it appearing means the app is live
        pg.wait_for_function("document.querySelector('#status') && "
                             "document.querySelector('#status').innerText.includes('step')", timeout=60_000)
        yield pg
        browser.close()


def _status(pg) -> str:
    return pg.inner_text("#status")


def _wait_status(pg, pattern: str, timeout: float = 30.0) -> str:
    deadline = time.time() + timeout
    while time.time() < deadline:
        text = _status(pg)
        if re.search(pattern, text):
            return text
        time.sleep(0.2)
    raise AssertionError(f"status never matched {pattern!r}; last: {_status(pg)!r}")


def _choose(pg, select_id: str, option: str) -> None:
    """Open a selector as a user does (a click on its field) and pick an option."""
    pg.locator(f"#{select_id}").locator("xpath=ancestor::div[contains(@class, 'v-field')][1]").click()
    pg.get_by_role("option", name=option, exact=True).click()


def _view(pg) -> np.ndarray:
    import matplotlib.image as mpimg

    return mpimg.imread(io.BytesIO(pg.locator("#view").screenshot()), format="png")[..., :3]


def _drawn(img: np.ndarray) -> float:
    return float((np.abs(img - img[2, 2]).sum(axis=-1) > 0.1).mean())


def _wait_picture(pg, different_from: np.ndarray | None = None, timeout: float = 30.0) -> np.ndarray:
    """The view once the server's image has arrived (not blank; changed when asked)."""
    deadline = time.time() + timeout
    img = _view(pg)
    while time.time() < deadline:
        img = _view(pg)
        if _drawn(img) > 0.05 and (different_from is None or different_from.shape != img.shape
                                   or np.abs(img - different_from).mean() > 0.003):
            return img
        time.sleep(0.3)
    raise AssertionError(f"the view did not show the expected picture (drawn fraction {_drawn(img):.3f})")


def test_the_mesh_is_drawn_and_follows_slider_and_field(page, tmp_path):
    _wait_status(page, r"over the series$")  # every frame read: final colour ranges
    first = _wait_picture(page)
    page.screenshot(path=str(tmp_path / "viewer.png"))
    slider = page.get_by_role("slider").first  # the time slider (a 2-D mesh has no clip slider)
    slider.focus()
    page.keyboard.press("End")
    _wait_status(page, r"step 11 / 11")
    last = _wait_picture(page, different_from=first)
    _choose(page, "field-select", "pressure")
    _wait_status(page, r"pressure \(value\)")
    _wait_picture(page, different_from=last)
    assert page.locator("#curve").count() == 0  # no truth for pressure: no error curve


def test_the_server_state_follows_the_page(page):
    # one server, one shared state: whatever an earlier page left, the field selector moves it
    _choose(page, "field-select", "pressure")
    _wait_status(page, r"pressure \(value\)")
    _choose(page, "field-select", "velocity")
    _wait_status(page, r"velocity \(magnitude\)")
    slider = page.get_by_role("slider").first  # the time slider (a 2-D mesh has no clip slider)
    slider.focus()
    page.keyboard.press("Home")
    _wait_status(page, r"step 0 / 11")
    page.keyboard.press("ArrowRight")
    page.keyboard.press("ArrowRight")
    text = _wait_status(page, r"step 2 / 11")
    assert "t = 0.2" in text
    _choose(page, "component-select", "y")
    _wait_status(page, r"velocity \(y\)")
    page.locator("#fixed-range").uncheck()
    _wait_status(page, r"this frame")
    _wait_status(page, r"step 2 / 11")  # the step stayed
    assert page.locator("#curve").count() == 1  # the rollout's error curve is shown
    page.locator("#play").click()
    _wait_status(page, r"step ([3-9]|1[01]) / 11", timeout=20)  # playing moves the server's step on
    page.locator("#play").click()
