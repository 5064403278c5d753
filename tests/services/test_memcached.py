"""Memcached's step on a scripted fake host: acts once, then its check says done and a re-run
changes nothing; the check itself never writes."""

from __future__ import annotations

import pytest

from tests.fakehost import FakeHost, run_plan
from tui.tasks.engine import Plan, Status
from tui.tasks.platforms import PLATFORMS
from tui.tasks.profile import Profile
from tui.tasks.services import memcached

DEBIAN_CONF = "# memcached default config\n-m 64\n-p 11211\n-l 127.0.0.1\n"


def _profile() -> Profile:
    p = Profile(name="t")
    p.host.address = "10.0.0.5"
    return p


def _host(conf: str | None = DEBIAN_CONF) -> FakeHost:
    host = FakeHost().systemd("memcached", active=True, enabled=True)
    host.on(r"^\[ -e \S+\.stack-tui\.orig \] \|\| cp -p ", (0, ""))
    if conf is not None:
        host.put("/etc/memcached.conf", conf)
    return host


def _run(host: FakeHost, tmp_path, plat: str = "debian-13") -> dict[str, Status]:
    ctx = host.ctx(_profile(), platform=plat, state_path=tmp_path / "state.json")
    plan = Plan(memcached.phases(_profile(), PLATFORMS[plat]), platform=plat)
    return run_plan(plan, ctx)


def test_first_run_acts_second_run_is_already_done_and_writes_nothing(tmp_path):
    host = _host()
    assert _run(host, tmp_path) == {"memcached.config": Status.DONE}
    conf = host.read_file("/etc/memcached.conf")
    assert "-l 10.0.0.5\n" in conf and "-l 127.0.0.1" not in conf
    assert "-m 64\n" in conf                          # other lines are kept
    assert host.writes == ["/etc/memcached.conf"]
    assert host.units["memcached"].restarts == 1      # config changed while it ran: restarted

    mark = host.mark()
    assert _run(host, tmp_path) == {"memcached.config": Status.ALREADY_DONE}
    commands, writes = host.since(mark)
    assert writes == []
    assert not any(c.startswith(("systemctl enable", "systemctl restart", "[ -e")) for c in commands)
    assert host.units["memcached"].restarts == 1


def test_check_is_pure_even_when_the_host_is_not_configured(tmp_path):
    host = _host()
    mark = host.mark()
    step = memcached.phases(_profile(), PLATFORMS["debian-13"])[0].steps[0]
    assert step.check(host.ctx(_profile(), state_path=tmp_path / "s.json")) is False
    commands, writes = host.since(mark)
    assert writes == []
    assert all(c.startswith("systemctl is-") for c in commands), commands


def test_a_stopped_memcached_is_started_without_rewriting_its_config(tmp_path):
    host = _host(DEBIAN_CONF.replace("127.0.0.1", "10.0.0.5")).systemd("memcached")
    assert _run(host, tmp_path) == {"memcached.config": Status.DONE}
    assert host.writes == []
    unit = host.units["memcached"]
    assert unit.active and unit.enabled and unit.restarts == 0


@pytest.mark.parametrize("plat,path,line", [
    ("el9", "/etc/sysconfig/memcached", 'OPTIONS="-l 127.0.0.1,::1,10.0.0.5"'),
    ("ubuntu-24.04", "/etc/memcached.conf", "-l 10.0.0.5"),
])
def test_each_platform_writes_its_own_file(plat, path, line, tmp_path):
    host = _host(conf=None)
    assert _run(host, tmp_path, plat) == {"memcached.config": Status.DONE}
    assert host.writes == [path]
    assert line in host.read_file(path).splitlines()
    assert _run(host, tmp_path, plat) == {"memcached.config": Status.ALREADY_DONE}
