"""try.sh's ways in, with its two programs faked (scripts/setup.sh and .venv/bin/stack-tui
record how they were called): the commands it runs for each, and what it refuses."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RECORD = 'echo "$(basename "$0") $*" >> "$(dirname "$0")/{up}calls"\n'


@pytest.fixture
def copy(tmp_path):
    shutil.copy(ROOT / "try.sh", tmp_path / "try.sh")
    for rel, up in (("scripts/setup.sh", "../"), (".venv/bin/stack-tui", "../../")):
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text("#!/bin/sh\n" + RECORD.format(up=up))
        p.chmod(0o755)
    return tmp_path


def run(copy: Path, *args: str) -> tuple[int, list[str], str]:
    r = subprocess.run(["bash", str(copy / "try.sh"), *args], capture_output=True, text=True,
                       timeout=30)
    calls = copy / "calls"
    return r.returncode, calls.read_text().splitlines() if calls.exists() else [], r.stderr


def test_no_argument_boots_one_throwaway_host(copy):
    assert run(copy) == (0, ["setup.sh ", "stack-tui sandbox up", "stack-tui --profile sandbox"],
                         "")


def test_hosts_boots_a_group_and_opens_its_profile(copy):
    rc, calls, _ = run(copy, "--hosts", "3")
    assert rc == 0
    assert calls == ["setup.sh ", "stack-tui sandbox up --hosts 3 --name lab",
                     "stack-tui --profile lab"]


def test_a_server_gets_the_client_setup_and_its_own_profile(copy):
    rc, calls, _ = run(copy, "deploy@10.0.0.5")
    assert rc == 0
    assert calls == ["setup.sh --client",
                     "stack-tui profiles new server --host 10.0.0.5 --user deploy --force",
                     "stack-tui --profile server"]


def test_help_says_the_three_ways_and_runs_nothing(copy):
    r = subprocess.run(["bash", str(copy / "try.sh"), "--help"], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 0 and not (copy / "calls").exists()
    for way in ("bash try.sh ", "bash try.sh --hosts N", "bash try.sh user@server"):
        assert way in r.stdout, r.stdout


@pytest.mark.parametrize("args", [("--hosts",), ("--hosts", "three"), ("--hosts", "3x"),
                                  ("-x",)])
def test_bad_options_are_refused_before_anything_runs(copy, args):
    rc, calls, err = run(copy, *args)
    assert rc == 2 and calls == [], (rc, calls, err)
    assert err.startswith("try.sh: ")
