"""`stack-tui plan` output per platform and service selection is pinned by golden files.

A change to what stack-tui would do shows up as a diff of tests/golden/*.txt in review.
Regenerate on purpose with: STACK_TUI_UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/test_golden_plan.py
"""

from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path

import pytest

GOLDEN = Path(__file__).parent / "golden"
PLATFORMS = ["auto", "debian-13", "debian-12", "ubuntu-22.04", "ubuntu-24.04", "el9"]
CASES = ([(p, "full") for p in PLATFORMS] + [("debian-13", "small")]
         + [(p, "compute") for p in ("debian-12", "debian-13")])
COMPUTE = ('services = ["mariadb", "rabbitmq", "memcached", "keystone", "glance", "placement", '
           '"neutron", "nova"]')

PROFILE = """version = 1
[host]
address = "192.0.2.10"
[openstack]
platform = "{platform}"
{extra}
[image]
url = "https://example.org/cirros.img"
"""


@pytest.mark.parametrize("platform,kind", CASES, ids=[f"{p}-{k}" for p, k in CASES])
def test_plan_matches_golden(tmp_path, monkeypatch, platform, kind):
    from tui.cli import main

    monkeypatch.setenv("STACK_TUI_HOME", str(tmp_path / "home"))
    extra = {"small": 'services = ["mariadb", "memcached", "keystone"]\ndemo = false',
             "compute": COMPUTE}.get(kind, "")
    path = tmp_path / "golden.toml"
    path.write_text(PROFILE.format(platform=platform, extra=extra))
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert main(["plan", str(path)]) == 0
    out = buf.getvalue()
    golden = GOLDEN / f"plan-{platform}-{kind}.txt"
    if os.environ.get("STACK_TUI_UPDATE_GOLDEN"):
        golden.write_text(out)
    assert out == golden.read_text(), f"plan differs from {golden}"
