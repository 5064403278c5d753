"""Preflight, explained failures and the support bundle on real sandbox hosts.

On a fresh host (nothing installed): port 5000 held by a stranger
(`python3 -m http.server`): `check` names the process, `apply --fix` stops in the
preflight and not one package gets installed.

The preflight tests that need an installed host (a wrong /etc/hosts entry, a held apt
lock, a bad MariaDB setting, the support bundle) run on the fault suite's installed host
(tests/e2e/test_faults_e2e.py, section 8): one full install serves both.
"""

from __future__ import annotations

import os
import re
import time

import pytest

from tests import cloud

pytestmark = pytest.mark.e2e

def _wait_listening(info, port: int, timeout: float = 15) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if f":{port} " in cloud.ssh(info, f"ss -Hltn 'sport = :{port}'").stdout + " ":
            return
        time.sleep(0.2)
    raise AssertionError(f"nothing listens on {port}")


def _installed(info, pkg: str) -> bool:
    r = cloud.ssh(info, f"dpkg-query -W -f='${{db:Status-Status}}' {pkg} 2>/dev/null")
    return r.stdout.strip() == "installed"


# --------------------------------------------------------------------------- port held
def test_port_5000_held_blocks_before_any_package(sandbox_factory, stack_home):
    from tui.cli import write_sandbox_profile

    info = sandbox_factory(f"pfp-{os.getpid()}")
    write_sandbox_profile(info, name="pfport")
    r = cloud.ssh(info, "systemd-run -q --unit=squatter --working-directory=/tmp "
                        "python3 -m http.server 5000")
    assert r.returncode == 0, r.stderr
    _wait_listening(info, 5000)

    t0 = time.monotonic()
    r = cloud.cli("check", "pfport", "--accept-new-host-key", timeout=120)
    took = time.monotonic() - t0
    assert r.returncode == 1, r.stdout + r.stderr
    line = next(ln for ln in r.stdout.splitlines() if "Port 5000" in ln)
    assert "BLOCKING" in line and re.search(r"python3 \(pid \d+\)", line), r.stdout
    assert "1 blocking" in r.stdout
    print(f"check (fresh host, port held): {took:.1f} s")

    r = cloud.cli("apply", "pfport", "--yes", "--fix", timeout=300)
    assert r.returncode == 1, r.stdout + r.stderr
    steps = [ln for ln in r.stdout.splitlines() if ln.startswith("[")]
    assert len(steps) == 1 and "preflight.checks" in steps[0] and "FAILED" in steps[0], r.stdout
    assert "Nothing was installed" in r.stdout and "python3 (pid" in r.stdout
    assert "Traceback" not in r.stdout + r.stderr
    assert not _installed(info, "mariadb-server")
    assert not _installed(info, "rabbitmq-server")
    assert cloud.ssh(info, "test -e /usr/sbin/policy-rc.d").returncode != 0
