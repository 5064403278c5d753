"""The support bundle's host part on a scripted fake host: the platform is resolved (never
guessed), the package list comes from the platform's package manager."""

from __future__ import annotations

import tarfile
from types import SimpleNamespace

from tests.fakehost import FakeHost
from tui.tasks import bundle
from tui.tasks.profile import Profile
from tui.tasks.redact import Redactor

TRIXIE = 'PRETTY_NAME="Debian GNU/Linux 13 (trixie)"\nID=debian\nVERSION_ID="13"\n'
ROCKY = 'PRETTY_NAME="Rocky Linux 9.4 (Blue Onyx)"\nID="rocky"\nID_LIKE="rhel centos fedora"\nVERSION_ID="9.4"\n'
GENTOO = 'PRETTY_NAME="Gentoo Linux"\nID=gentoo\n'


def _bundle(stack_home, os_release: str, name: str) -> tuple[FakeHost, dict[str, str]]:
    host = FakeHost().put("/etc/os-release", os_release).on(r".", (0, "out\n"))
    prof = Profile(name=name)
    prof.host.address = "192.0.2.7"
    session = SimpleNamespace(transport=host, profile=prof, redact=Redactor(), plan=None,
                              state=SimpleNamespace(facts={}))
    out = bundle.make_bundle(session, stack_home / f"{name}.tar.gz")
    with tarfile.open(out) as tar:
        texts = {m.name.split("/", 1)[1]: tar.extractfile(m).read().decode()
                 for m in tar.getmembers()}
    return host, texts


def test_an_unknown_system_is_named_and_nothing_is_guessed(stack_home):
    host, texts = _bundle(stack_home, GENTOO, "gentoo")
    assert "Unsupported system: Gentoo Linux." in texts["MANIFEST.txt"]
    assert not [k for k in texts if k.startswith("host/")]
    assert host.commands == []   # no Debian commands sent to a host that is not Debian


def test_the_package_list_comes_from_the_platforms_package_manager(stack_home):
    host, texts = _bundle(stack_home, ROCKY, "rocky")
    assert any(c.startswith("rpm -qa 2>&1 | grep -E ") for c in host.commands)
    assert not any("dpkg" in c for c in host.commands)
    host, texts = _bundle(stack_home, TRIXIE, "trixie")
    assert any(c.startswith("dpkg -l 2>&1 | grep -E ") for c in host.commands)
    assert "host/etc/os-release" in texts
