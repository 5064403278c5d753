"""The preflight step on a scripted fake host: its check reads and decides, never writes or
records; the package checks follow the platform's package manager."""

from __future__ import annotations

import pytest

from tests.fakehost import FakeHost
from tui.tasks import preflight
from tui.tasks.platforms import PLATFORMS
from tui.tasks.services import all_packages
from tui.tasks.profile import Profile

GiB = 1024 ** 3
TRIXIE = 'PRETTY_NAME="Debian GNU/Linux 13 (trixie)"\nID=debian\nVERSION_ID="13"\n'
ROCKY = 'PRETTY_NAME="Rocky Linux 9.4"\nID="rocky"\nID_LIKE="rhel centos fedora"\nVERSION_ID="9.4"\n'


def _facts(os_release: str, *, mem: int = 8 * GiB, sources: str = "", yum: str = "",
           pm: str = "", lock: str = "") -> str:
    return "\n".join([
        "@@os", os_release.rstrip(), "@@uid", "0", "@@mem", str(mem), "max",
        "@@disk", str(50 * GiB), "@@hostname", "stackhost", "@@resolved", "10.0.0.5",
        "@@addrs", "127.0.0.1", "10.0.0.5", "@@ss", "@@time", "NTPSynchronized=yes", "virt=none",
        "@@sources", sources, "@@sources822", "", "@@yum", yum, "@@lock", lock, "@@pm", pm,
        "@@end", ""])


def _host(facts: str, pkgs: str) -> FakeHost:
    host = FakeHost()
    host.on(r"echo @@os", (0, facts))
    host.on(r"^echo @@pkgs\n", (0, "@@pkgs\n" + pkgs + "@@probes\nprobe 0 0 \n"))
    return host


def _profile() -> Profile:
    p = Profile(name="t")
    p.host.address = "10.0.0.5"
    return p


def _ctx(host: FakeHost, tmp_path, platform: str = "debian-13"):
    ctx = host.ctx(_profile(), platform=platform, state_path=tmp_path / "state.json")
    ctx.facts.clear()   # preflight runs before prepare.detect: nothing is known yet
    return ctx


DEB_ALL = "".join(f"{p} installed\n" for p in all_packages(PLATFORMS["debian-13"]))


def test_check_reads_and_decides_without_writing_or_recording(tmp_path):
    host = _host(_facts(TRIXIE, sources="deb http://deb.debian.org/debian trixie main"), DEB_ALL)
    ctx = _ctx(host, tmp_path)
    step = preflight.phase().steps[0]
    assert step.check(ctx) is True
    assert host.writes == []
    assert ctx.cache == {} and ctx.facts == {}
    assert len(host.commands) == 2           # the batched facts, then packages + repositories
    assert "dpkg-query -W" in host.commands[1] and "apt-helper" in host.commands[1]


def test_a_blocker_makes_the_check_say_not_done_and_the_run_explain_it(tmp_path):
    host = _host(_facts(TRIXIE, mem=1 * GiB, sources="deb http://deb.debian.org/debian trixie main"),
                 DEB_ALL)
    ctx = _ctx(host, tmp_path)
    step = preflight.phase().steps[0]
    assert step.check(ctx) is False
    assert ctx.cache == {} and "preflight" not in ctx.facts and host.writes == []
    with pytest.raises(preflight.StepError) as err:
        step.run(ctx)
    assert "Memory" in err.value.what
    assert [r["id"] for r in ctx.facts["preflight"] if r["level"] == "blocking"] == ["memory"]


def test_el9_checks_packages_with_rpm_and_repositories_with_curl(tmp_path):
    facts = _facts(ROCKY, yum="baseurl=http://dl.rockylinux.org/pub/rocky/9/BaseOS/\n",
                   pm="4242 dnf\n")
    host = _host(facts, "package openstack-keystone is not installed\n")
    results = {r.id: r for r in preflight.run_checks(_ctx(host, tmp_path, "el9"))}
    script = host.commands[1]
    assert "rpm -q" in script and "curl" in script and "dpkg" not in script
    assert "http://dl.rockylinux.org/" in script
    assert results["platform"].level == "warning"            # supported, not yet verified
    assert results["pkg-lock"].level == "warning" and "dnf (pid 4242)" in results["pkg-lock"].why
    assert results["repos"].level == "ok"


def test_an_unsupported_system_blocks_naming_it(tmp_path):
    host = _host(_facts('PRETTY_NAME="Debian GNU/Linux 11 (bullseye)"\nID=debian\nVERSION_ID="11"\n'), "")
    results = preflight.run_checks(_ctx(host, tmp_path))
    plat = results[0]
    assert plat.blocking and "Debian GNU/Linux 11 (bullseye) is not supported" in plat.why
    assert len(host.commands) == 1           # no package probe for a platform it does not know


def test_neutron_without_a_mechanism_blocks_before_any_package(monkeypatch):
    from tests.fakehost import FakeHost
    from tui.tasks.preflight import compute
    from tui.tasks.services import neutron

    p = Profile(name="t")
    p.host.address = "10.0.0.5"
    p.openstack.services = ["mariadb", "rabbitmq", "memcached", "keystone", "glance",
                            "placement", "neutron", "nova"]
    ctx = FakeHost().ctx(p)
    # Debian 13 (Open vSwitch, userspace datapath) and 12 (Linux bridge) both have one now
    assert compute._mechanism(ctx, PLATFORMS["debian-13"]) == []
    assert compute._mechanism(ctx, PLATFORMS["debian-12"]) == []
    bare = neutron.Layout(mechanism="")
    monkeypatch.setattr(neutron, "layout", lambda plat: bare)
    (res,) = compute._mechanism(ctx, PLATFORMS["debian-13"])
    assert res.blocking and "no Neutron network mechanism" in res.why
    assert "Debian 13 or 12" in res.fix_hint
    p.openstack.services = ["mariadb", "memcached", "keystone"]
    assert compute._mechanism(FakeHost().ctx(p), PLATFORMS["debian-13"]) == []


def test_memory_is_read_on_debian_12_whose_mawk_prints_big_numbers_in_e_notation(tmp_path):
    import re
    import shutil
    import subprocess

    from tui.tasks.preflight.facts import FACTS_SH, _mem_bytes

    # what Debian 12's facts said before: "Memory: could not read the host's memory size"
    assert _mem_bytes("2.52762e+10\nmax") == 25276200000
    assert _mem_bytes("25276194816\n4294967296") == 4294967296
    mawk = shutil.which("mawk")
    if mawk is None:
        pytest.skip("mawk (Debian's default awk) is not installed here")
    prog = re.search(r"echo @@mem; awk '([^']*)' /proc/meminfo", FACTS_SH).group(1)
    (tmp_path / "meminfo").write_text("MemTotal:       24683784 kB\n")
    out = subprocess.run([mawk, prog, str(tmp_path / "meminfo")], capture_output=True,
                         text=True, check=True).stdout
    assert out == "25276194816\n"


# -- the host name against a management address the profile gives ---------------------

def _hostname_row(tmp_path, resolved: list[str], have: list[str], mgmt: str | None,
                  host: FakeHost | None = None):
    from tui.tasks.preflight.checks import _hostname

    p = _profile()
    p.host.mgmt_address = mgmt
    ctx = (host or FakeHost()).ctx(p, state_path=tmp_path / "state.json")
    return ctx, _hostname(ctx, "lab-1", resolved, have)


def test_a_name_on_the_management_address_is_ok_when_the_profile_gives_it(tmp_path):
    # A group host: reached over SSH at 10.0.0.5, named on the management network.
    _, res = _hostname_row(tmp_path, ["10.198.1.11"], ["127.0.0.1", "10.0.0.5", "10.198.1.11"],
                           "10.198.1.11")
    assert res.level == preflight.OK and "10.198.1.11, the management address" in res.why


def test_a_name_on_another_local_address_blocks_when_a_management_address_is_given(tmp_path):
    host = FakeHost().put("/etc/hosts", "127.0.0.1 localhost\n10.0.0.5 lab-1\n")
    host.on(r".", (0, ""))
    ctx, res = _hostname_row(tmp_path, ["10.0.0.5"], ["127.0.0.1", "10.0.0.5", "10.198.1.11"],
                             "10.198.1.11", host)
    assert res.level == preflight.BLOCKING and "not to 10.198.1.11 alone" in res.why
    assert "map lab-1 to 10.198.1.11" in res.fix_hint
    res.fix(ctx)
    lines = host.files["/etc/hosts"].decode().splitlines()
    assert "10.198.1.11 lab-1" in lines and "10.0.0.5 lab-1" not in lines
    # the same name and addresses without mgmt_address: as before, any local address is fine
    _, res = _hostname_row(tmp_path, ["10.0.0.5"], ["127.0.0.1", "10.0.0.5", "10.198.1.11"], None)
    assert res.level == preflight.OK and "lab-1 resolves to 10.0.0.5" in res.why


def test_a_management_address_the_host_lacks_blocks_without_a_fix(tmp_path):
    _, res = _hostname_row(tmp_path, ["10.198.1.11"], ["127.0.0.1", "10.0.0.5"], "10.198.1.11")
    assert res.level == preflight.BLOCKING and res.fix is None
    assert "no such address (10.0.0.5)" in res.why and "mgmt_address" in res.fix_hint


def test_a_name_on_the_management_address_and_another_blocks(tmp_path):
    _, res = _hostname_row(tmp_path, ["10.0.0.5", "10.198.1.11"],
                           ["127.0.0.1", "10.0.0.5", "10.198.1.11"], "10.198.1.11")
    assert res.level == preflight.BLOCKING and res.fix is not None
