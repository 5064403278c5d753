"""The platform is resolved once, with no silent default, and carries its strategies."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from tests.fakehost import FakeHost
from tui.tasks import deploy, explain, platforms, runner
from tui.tasks.platforms import PLATFORMS, UnknownPlatform
from tui.tasks.profile import Profile

BULLSEYE = 'PRETTY_NAME="Debian GNU/Linux 11 (bullseye)"\nID=debian\nVERSION_ID="11"\n'
BOOKWORM = 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nID=debian\nVERSION_ID="12"\n'
ROCKY = 'PRETTY_NAME="Rocky Linux 9.4 (Blue Onyx)"\nID="rocky"\nID_LIKE="rhel centos fedora"\nVERSION_ID="9.4"\n'


def _profile(platform: str = "auto") -> Profile:
    p = Profile(name="t")
    p.host.address = "10.0.0.5"
    p.openstack.platform = platform
    return p


def test_resolve_detects_or_takes_the_forced_one():
    assert platforms.resolve("auto", BOOKWORM).id == "debian-12"
    assert platforms.resolve("auto", ROCKY).id == "el9"
    assert platforms.resolve("ubuntu-24.04", BULLSEYE).id == "ubuntu-24.04"


def test_an_unknown_system_is_an_error_naming_it():
    with pytest.raises(UnknownPlatform) as err:
        platforms.resolve("auto", BULLSEYE)
    assert "Debian GNU/Linux 11 (bullseye)" in err.value.what
    assert "Debian 13" in err.value.why
    with pytest.raises(UnknownPlatform, match="'debian-11'"):
        platforms.by_id("debian-11")
    with pytest.raises(UnknownPlatform, match="unknown system"):
        platforms.resolve("auto", "")


def test_build_plan_refuses_an_unknown_platform_id():
    with pytest.raises(UnknownPlatform, match="debian-11"):
        deploy.build_plan(_profile(), "debian-11")
    assert deploy.build_plan(_profile()).platform == platforms.PLAN_ASSUMED


def _session(os_release: str, platform: str = "auto"):
    host = FakeHost().put("/etc/os-release", os_release)
    return SimpleNamespace(transport=host, profile=_profile(platform), plan=None, others={})


def test_hosts_on_different_systems_are_refused_naming_the_host():
    from tui.tasks.errors import Failure
    from tui.tasks.profile import HostConfig

    session = _session(BOOKWORM)
    session.profile.hosts = [HostConfig(name="c1", roles=["controller", "compute"],
                                        address="10.0.0.1"),
                             HostConfig(name="c2", roles=["compute"], address="10.0.0.2")]
    session.others = {"c2": FakeHost().put("/etc/os-release", ROCKY)}
    with pytest.raises(Failure) as ei:
        runner.connect_and_plan(session)
    assert "Host c2 runs" in ei.value.what and "the controller Debian 12" in ei.value.what
    assert "same OpenStack release" in ei.value.why


def test_connect_and_plan_uses_the_detected_platform():
    session = _session(BOOKWORM)
    assert runner.connect_and_plan(session).platform == "debian-12"
    assert runner.connect_and_plan(_session(ROCKY)).platform == "el9"


def test_connect_and_plan_assumes_nothing_for_an_unsupported_system():
    plan = runner.connect_and_plan(_session(BULLSEYE))
    assert plan.platform == ""
    assert [s.id for s in plan.steps()] == ["preflight.checks"]  # which blocks, naming it


def test_forced_platform_does_not_read_os_release():
    session = _session(BULLSEYE, platform="debian-13")
    assert runner.connect_and_plan(session).platform == "debian-13"
    assert session.transport.commands == []


@pytest.mark.parametrize("pid", list(PLATFORMS))
def test_strategies_give_each_family_its_commands(pid):
    plat = PLATFORMS[pid]
    deb = plat.family == "deb"
    assert plat.pm is (platforms.APT if deb else platforms.DNF)
    assert plat.install_cmd(["a b"]).startswith("DEBIAN_FRONTEND=" if deb else "dnf install")
    assert plat.install_cmd(["a b"]).endswith(" 'a b'")
    assert plat.installed_check_cmd(["x"]).startswith("dpkg-query -W" if deb else "rpm -q x")
    assert plat.web.unit == ("apache2" if deb else "httpd") == plat.web_service
    assert plat.web.configtest == ("apache2ctl configtest" if deb else "apachectl configtest")
    assert plat.apache_log_dir == ("/var/log/apache2" if deb else "/var/log/httpd")


def test_package_managers_parse_what_their_query_prints():
    assert platforms.APT.installed(["a", "b"], "a installed\nb not-installed\n") == {"a"}
    assert platforms.DNF.installed(["a", "b"], "a-1.0-1.el9.x86_64\npackage b is not installed\n") == {"a"}
    sections = {"yum": "baseurl=http://dl.rockylinux.org/pub/$releasever/\n", "pm": "42 dnf\n"}
    assert platforms.DNF.sources(sections) == ["http://dl.rockylinux.org/"]
    assert platforms.DNF.holders(sections) == "dnf (pid 42)"
    assert platforms.APT.holders({"lock": " apt-get (pid 7) "}) == "apt-get (pid 7)"


def test_explain_fetches_no_guessed_log_for_an_unknown_platform():
    ctx = SimpleNamespace(facts={})
    assert explain._logs("keystone", ctx, "401") == []
    ctx = SimpleNamespace(facts={"platform": "el9"})
    assert explain._logs("keystone", ctx, "401")[0][0] == "/var/log/httpd/keystone.log"
