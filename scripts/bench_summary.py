"""Markdown table of every benchmark JSON in a folder: `python scripts/bench_summary.py bench_results`."""

from __future__ import annotations

import json
import sys
from pathlib import Path

SKIP = {"machine", "processor", "python", "torch", "benchmark"}


def main(folder: str) -> None:
    files = sorted(Path(folder).glob("*.json"))
    if not files:
        raise SystemExit(f"no benchmark JSON in {folder}")
    for f in files:
        data = json.loads(f.read_text())
        print(f"## {data.get('benchmark', f.stem)}\n")
        print("| key | value |\n|---|---|")
        for k, v in data.items():
            if k not in SKIP:
                print(f"| {k} | {v:.4g} |" if isinstance(v, float) else f"| {k} | {v} |")
        print()


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "bench_results")
