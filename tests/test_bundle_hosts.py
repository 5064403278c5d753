"""The support bundle of a several-hosts profile: every host's files and command outputs, the
controller's under host/ (the single-host layout), each other host's under hosts/NAME/; a host
that cannot be reached is named in the manifest and the others are still collected; every
host's files pass through the same redaction."""

from __future__ import annotations

import tarfile
from types import SimpleNamespace

import pytest

from tests.fakehost import FakeHost
from tui.tasks import bundle, bundle_hosts
from tui.tasks import profile as pr
from tui.tasks.profile import HostConfig, Profile
from tui.tasks.redact import MASK, Redactor
from tui.tasks.secrets import write_secrets_file
from tui.tasks.transport import ConnectError
from tui.tasks.transport.errors import UnknownHostKey

TRIXIE = 'PRETTY_NAME="Debian GNU/Linux 13 (trixie)"\nID=debian\nVERSION_ID="13"\n'
GENTOO = 'PRETTY_NAME="Gentoo Linux"\nID=gentoo\n'
NOVA = "/etc/nova/nova.conf"


@pytest.fixture(autouse=True)
def home(isolated_home):
    return isolated_home


def _trio(name: str = "trio") -> Profile:
    p = Profile(name=name, hosts=[
        HostConfig(name="ctl", roles=["controller", "compute"], address="10.0.0.1"),
        HostConfig(name="cmp1", roles=["compute"], address="10.0.0.2"),
        HostConfig(name="cmp2", roles=["compute"], address="10.0.0.3", port=2200, user="deploy")])
    p.openstack.services = [s for s in pr.SERVICES if s != "horizon"]
    pr.save(p)
    return p


def _host(marker: str, os_release: str = TRIXIE) -> FakeHost:
    return (FakeHost().put("/etc/os-release", os_release)
            .put(NOVA, f"[DEFAULT]\nmy_ip = {marker}\n").on(r".", (0, f"out of {marker}\n")))


def _open(path) -> dict[str, str]:
    with tarfile.open(path) as tar:
        return {m.name.split("/", 1)[1]: tar.extractfile(m).read().decode()
                for m in tar.getmembers()}


def _session(prof, ctl, others):
    return SimpleNamespace(transport=ctl, others=others, profile=prof, redact=Redactor(),
                           plan=None, state=SimpleNamespace(facts={}))


def test_three_hosts_are_collected_into_their_own_paths(tmp_path):
    prof = _trio()
    hosts = {"ctl": _host("ctl"), "cmp1": _host("cmp1"), "cmp2": _host("cmp2")}
    session = _session(prof, hosts["ctl"], {"cmp1": hosts["cmp1"], "cmp2": hosts["cmp2"]})
    texts = _open(bundle.make_bundle(session, tmp_path / "b.tar.gz"))
    assert "my_ip = ctl" in texts["host/etc/nova/nova.conf"]
    for name in ("cmp1", "cmp2"):
        assert f"my_ip = {name}" in texts[f"hosts/{name}/etc/nova/nova.conf"]
        assert texts[f"hosts/{name}/journal/nova-compute.txt"] == f"out of {name}\n"
        assert f"hosts/{name}/etc/os-release" in texts and f"hosts/{name}/ss-ltnp.txt" in texts
        assert any(c.startswith("journalctl -u nova-compute ") for c in hosts[name].commands)
    # the same items on every host: one host's names are another's under its prefix
    under = {p: {k.split(p, 1)[1] for k in texts if k.startswith(p)}
             for p in ("host/", "hosts/cmp1/", "hosts/cmp2/")}
    assert under["host/"] == under["hosts/cmp1/"] == under["hosts/cmp2/"]
    manifest = texts["MANIFEST.txt"]
    assert "ctl: root@10.0.0.1:22, roles controller, compute; files under host/" in manifest
    assert "cmp1: root@10.0.0.2:22, roles compute; files under hosts/cmp1/" in manifest
    assert "cmp2: deploy@10.0.0.3:2200, roles compute; files under hosts/cmp2/" in manifest
    assert "host cmp2 (hosts/cmp2/): not collected:" in manifest  # a file it lacks, named
    assert "  hosts/cmp2/etc/keystone/keystone.conf: /etc/keystone/keystone.conf does not exist" \
        in manifest
    assert all(h.connected for h in hosts.values())   # the run's connections are not closed


class _Unreachable(FakeHost):
    def __init__(self, exc: Exception):
        super().__init__()
        self.exc = exc

    def connect(self):
        raise self.exc


@pytest.mark.parametrize("exc", [
    ConnectError("Cannot reach 10.0.0.2:22: No route to host", "it is down", "start it"),
    UnknownHostKey("10.0.0.2", "ssh-ed25519", "SHA256:abc")], ids=["down", "unknown-key"])
def test_an_unreachable_compute_host_is_named_and_the_others_are_collected(tmp_path, monkeypatch,
                                                                            exc):
    prof = _trio()
    by_address = {"10.0.0.1": _host("ctl"), "10.0.0.2": _Unreachable(exc), "10.0.0.3": _host("cmp2")}
    opened = []

    def open_transport(profile, host, redact):
        opened.append(host.name)
        return by_address[host.address]

    monkeypatch.setattr(bundle_hosts, "_open_transport", open_transport)
    texts = _open(bundle.make_bundle(prof.name, tmp_path / "b.tar.gz"))
    assert opened == ["ctl", "cmp1", "cmp2"]
    assert "my_ip = ctl" in texts["host/etc/nova/nova.conf"]
    assert "my_ip = cmp2" in texts["hosts/cmp2/etc/nova/nova.conf"]
    assert not [k for k in texts if k.startswith("hosts/cmp1/")]
    manifest = texts["MANIFEST.txt"]
    assert (f"host cmp1 (root@10.0.0.2:22) was not reachable, nothing collected from it: "
            f"{exc.what}") in manifest
    assert not by_address["10.0.0.1"].connected and not by_address["10.0.0.3"].connected  # closed


def test_a_new_connection_never_trusts_an_unknown_host_key():
    prof = _trio()
    t = bundle_hosts._open_transport(prof, prof.hosts[2], Redactor())
    assert (t.address, t.port, t.user) == ("10.0.0.3", 2200, "deploy")
    assert t.accept_new_host_key is False and t.confirm_host_key is None


def test_each_host_is_resolved_on_its_own_without_a_run(tmp_path, monkeypatch):
    prof = _trio()
    by_name = {"ctl": _host("ctl"), "cmp1": _host("cmp1", GENTOO), "cmp2": _host("cmp2")}
    monkeypatch.setattr(bundle_hosts, "_open_transport", lambda p, h, r: by_name[h.name])
    texts = _open(bundle.make_bundle(prof, tmp_path / "b.tar.gz"))
    assert "nothing collected from host cmp1: Unsupported system: Gentoo Linux." \
        in texts["MANIFEST.txt"]
    assert by_name["cmp1"].commands == [] and "hosts/cmp2/etc/nova/nova.conf" in texts


def test_a_single_host_bundle_keeps_its_layout(tmp_path):
    prof = Profile(name="solo", host=HostConfig(address="192.0.2.7"))
    host = _host("solo")
    texts = _open(bundle.make_bundle(_session(prof, host, {}), tmp_path / "b.tar.gz"))
    files, cmds = bundle.host_items(_debian13())
    present = {n for n, path in files if path in host.files}
    assert {k for k in texts if k.startswith("host")} == \
        {f"host/{n}" for n in present | {n for n, _ in cmds}}
    assert "hosts:\n  controller: root@192.0.2.7:22, roles controller, compute; files under " \
        "host/\n" in texts["MANIFEST.txt"]


def _debian13():
    from tui.tasks.platforms import PLATFORMS

    return PLATFORMS["debian-13"]


def test_a_secret_in_a_compute_hosts_files_is_masked(tmp_path, monkeypatch):
    prof = _trio("sec")
    secret = "c0mpute-S3cret-value"   # no shape gives it away: only the redactor knows it
    write_secrets_file(prof.secrets_file, {"rabbit_password": secret})
    cmp1 = _host("cmp1").put(NOVA, f"[DEFAULT]\nmy_ip = cmp1\n# {secret}\n")
    cmp1.on(r"^journalctl -u nova-compute ", (0, f"nova-compute: AMQP as {secret} failed\n"))
    by_name = {"ctl": _host("ctl"), "cmp1": cmp1, "cmp2": _host("cmp2")}
    monkeypatch.setattr(bundle_hosts, "_open_transport", lambda p, h, r: by_name[h.name])
    texts = _open(bundle.make_bundle(prof.name, tmp_path / "b.tar.gz"))
    assert texts["hosts/cmp1/etc/nova/nova.conf"].endswith(f"# {MASK}\n")
    assert texts["hosts/cmp1/journal/nova-compute.txt"] == f"nova-compute: AMQP as {MASK} failed\n"
    assert not [k for k, body in texts.items() if secret in body]
