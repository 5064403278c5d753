"""The host screen's checks: RAM and disk levels come from preflight's thresholds (one
source of truth), and the user field is a full match (a trailing newline is refused)."""

from __future__ import annotations

import pytest

from tui.screens.host import check_user
from tui.screens.hostinfo import HostFacts
from tui.tasks.preflight import checks

GiB = 1024 ** 3


def _levels(ram: int, disk: int) -> tuple[str, str]:
    rows = {label: level for label, _, level in HostFacts(ram=ram, disk_free=disk).rows()}
    return rows["RAM"], rows["Free disk"]


def test_levels_follow_preflight_thresholds(monkeypatch):
    assert _levels(checks.MEM_MIN - 1, checks.DISK_MIN - 1) == ("bad", "bad")
    assert _levels(checks.MEM_MIN, checks.DISK_MIN) == ("warning", "warning")
    assert _levels(checks.MEM_GOOD, checks.DISK_GOOD) == ("ok", "ok")
    monkeypatch.setattr(checks, "MEM_GOOD", 8 * GiB)
    monkeypatch.setattr(checks, "DISK_MIN", 20 * GiB)
    assert _levels(5 * GiB, 15 * GiB) == ("warning", "bad")


def test_a_host_that_computes_is_judged_by_the_compute_thresholds():
    """Nova on the host: memory as the compute preflight judges it (5 GiB needed, 8 advised),
    said in the row; without Nova, the control plane's thresholds as before."""
    from tui.tasks.preflight.compute import COMPUTE_MEM_GOOD, COMPUTE_MEM_MIN

    def ram(value: int, compute: bool) -> tuple[str, str]:
        row = {label: (text, level) for label, text, level
               in HostFacts(ram=value, disk_free=100 * GiB).rows(compute=compute)}["RAM"]
        return row

    assert COMPUTE_MEM_MIN > checks.MEM_MIN
    text, level = ram(COMPUTE_MEM_MIN - GiB, compute=True)
    assert level == "bad" and "with Nova: 5 GiB needed, 8 GiB advised" in text
    assert ram(COMPUTE_MEM_MIN - GiB, compute=False)[1] != "bad"
    assert ram(COMPUTE_MEM_MIN, compute=True)[1] == "warning"
    assert ram(COMPUTE_MEM_GOOD, compute=True) == ("8.0 GiB", "ok")


@pytest.mark.parametrize("bad", ["root\n", "root\r", "ro ot", "root\t", "root\x00", "Root",
                                 "a" * 40, "$x"])
def test_user_field_refuses_what_the_profile_refuses(bad):
    assert check_user(bad) is not None


@pytest.mark.parametrize("good", ["root", "debian", "svc_user", "machine$", "a.b-c"])
def test_user_field_accepts_valid_names(good):
    assert check_user(good) is None
