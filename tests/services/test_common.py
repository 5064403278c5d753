"""services/common.py's helpers on a scripted fake host: checks read, runs record."""

from __future__ import annotations

from tests.fakehost import FakeHost
from tui.tasks.profile import Profile
from tui.tasks.services import common

TRIXIE = 'PRETTY_NAME="Debian GNU/Linux 13 (trixie)"\nID=debian\nVERSION_ID="13"\n'


def _ctx(tmp_path):
    host = FakeHost().put("/etc/os-release", TRIXIE)
    ctx = host.ctx(Profile(name="t"), state_path=tmp_path / "state.json")
    ctx.facts.clear()
    return host, ctx


def test_detect_platforms_check_only_reads_and_its_run_records(tmp_path):
    host, ctx = _ctx(tmp_path)
    assert common.detect_platform(ctx, check_only=True) is False
    assert ctx.facts == {} and host.writes == []
    common.detect_platform(ctx)
    assert ctx.facts["platform"] == "debian-13" and ctx.facts["openstack_release"]
    recorded = dict(ctx.facts)
    assert common.detect_platform(ctx, check_only=True) is True
    assert ctx.facts == recorded


def test_detect_platforms_check_sees_a_host_that_changed_system(tmp_path):
    host, ctx = _ctx(tmp_path)
    common.detect_platform(ctx)
    host.put("/etc/os-release", TRIXIE.replace("13 (trixie)", "12 (bookworm)")
             .replace('"13"', '"12"'))
    assert common.detect_platform(ctx, check_only=True) is False
    assert ctx.facts["platform"] == "debian-13"   # the check did not record the new one


def test_config_writers_refuse_a_line_break_in_the_address(tmp_path):
    """The last line of defence in the writers of MariaDB's, memcached's and /etc/hosts'
    lines: an address with a line break (which the profile refuses long before) is
    refused, naming the file, and nothing is written."""
    import pytest

    from tui.tasks.engine import StepError
    from tui.tasks.services import mariadb, memcached

    host, ctx = _ctx(tmp_path)
    ctx.facts.update(platform="debian-13", mgmt_address="10.0.0.5\nbind-address = 0.0.0.0")
    host.put("/etc/memcached.conf", "-l 127.0.0.1\n")
    for call, where in ((lambda: mariadb._mariadb_conf(ctx), "bind-address in /etc/mysql/"),
                        (lambda: memcached._memcached_target(ctx), "/etc/memcached.conf"),
                        (lambda: common.fix_hosts_file(ctx, "stack", ctx.facts["mgmt_address"]),
                         "/etc/hosts")):
        with pytest.raises(StepError) as ei:
            call()
        assert where in ei.value.what and "line break" in ei.value.why
        assert ei.value.hint
    assert host.writes == []
