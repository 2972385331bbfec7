"""A screenshot of `sim view` on a series, as the README shows it (needs `make browser`).

    python scripts/view_screenshot.py demo_output/rollout/000000.pvd docs/images/sim_view.png [--step N]

Starts the viewer on a free port without a display, opens it in headless Chromium, waits for
every frame to be read (fixed colour ranges, the error curve), moves the time slider to
``--step`` and saves the page.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run", "--disable-quic"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("series")
    ap.add_argument("png")
    ap.add_argument("--step", type=int, default=40, help="time step to show (default 40)")
    ap.add_argument("--chromium", default="/usr/bin/chromium")
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if k != "DISPLAY"}
    proc = subprocess.Popen([sys.executable, "-m", "sim.cli", "view", args.series, "--port", str(port)], env=env)
    try:
        for _ in range(300):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.3)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=args.chromium, args=ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 640})
            page.goto(f"http://127.0.0.1:{port}/")
            page.wait_for_function("document.querySelector('#status') && "
                                   "document.querySelector('#status').innerText.endsWith('over the series')",
                                   timeout=120_000)
            page.get_by_role("slider").first.focus()
            page.keyboard.press("Home")
            for _ in range(args.step):
                page.keyboard.press("ArrowRight")
            page.wait_for_function(f"document.querySelector('#status').innerText.startsWith('step {args.step} ')",
                                   timeout=60_000)
            time.sleep(3)  # the server's image of that step
            Path(args.png).parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=args.png)
            browser.close()
    finally:
        proc.terminate()
        proc.wait(10)
    print(f"wrote {args.png}")


if __name__ == "__main__":
    main()
