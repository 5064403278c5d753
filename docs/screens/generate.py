"""Render every TUI screen to SVG for the README: docs/screens/<size>/<scenario>.svg.

Uses the snapshot tests' scenarios (tests/test_tui_snapshots.py): fake SSH, real engine
with fake steps, fixed clock.  Run from the repository root:

    python docs/screens/generate.py
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

SIZES = ((100, 30), (80, 24))


class _Env:
    """The bits of pytest's monkeypatch that setup_home uses."""

    def setenv(self, key, value):
        os.environ[key] = value

    def delenv(self, key):
        os.environ.pop(key, None)


def main() -> int:
    from textual._doc import take_svg_screenshot

    from tests.test_tui_fakes import setup_home
    from tests.test_tui_snapshots import SCENARIOS

    out_dir = Path(__file__).resolve().parent
    only = set(sys.argv[1:])
    for width, height in SIZES:
        target = out_dir / f"{width}x{height}"
        target.mkdir(parents=True, exist_ok=True)
        for name, (setup, run_before) in SCENARIOS.items():
            if only and name not in only:
                continue
            with tempfile.TemporaryDirectory() as tmp:
                setup_home(_Env(), Path(tmp))
                app = setup()
                svg = take_svg_screenshot(app=app, terminal_size=(width, height),
                                          run_before=run_before, title="stack-tui")
            path = target / f"{name}.svg"
            path.write_text(svg, encoding="utf-8")
            print(path.relative_to(ROOT))
    return 0


if __name__ == "__main__":
    sys.exit(main())
