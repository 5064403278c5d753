"""Groups of sandbox hosts (`stack-tui sandbox up --hosts N`): names, addresses, slots and the
command line, without root.  The booting itself is tests/e2e/test_sandbox_hosts_e2e.py."""

from __future__ import annotations

import os

import pytest

from tui import cli, cli_parser
from tui.tasks import sandbox
from tui.tasks.sandbox import group


def test_hosts_are_named_after_the_group_and_numbered_from_one():
    assert group.host_names("lab", 3) == ["lab-1", "lab-2", "lab-3"]
    assert group.host_names("lab", 1) == ["lab-1"]


def test_group_slot_maps_to_its_own_namespace_subnet_and_addresses():
    n = group.group_names(7)
    assert n["netns"] == "stkg-7"
    assert n["mgmt_subnet"] == "10.198.7.0/24"
    assert [group.mgmt_address(7, k) for k in (1, 2, 3)] == ["10.198.7.11", "10.198.7.12", "10.198.7.13"]
    # Never the hosts' SSH /30s, never another group's subnet.
    assert not n["mgmt_subnet"].startswith(sandbox.NET_PREFIX)
    assert group.group_names(8)["mgmt_subnet"] != n["mgmt_subnet"]
    assert group.group_names(7)["netns"] != sandbox._names(7)["netns"]


def test_every_interface_name_fits_the_kernel_limit():
    top = group.group_names(group.MAX_GROUPS)
    names = [top["netns"], top["mgmt_bridge"], top["provider_bridge"], group.MGMT_IF, group.PROVIDER_IF]
    for k in range(1, group.MAX_HOSTS + 1):
        names += group.port_names(k).values()
    assert all(0 < len(x) <= 15 for x in names), names
    assert len(set(group.port_names(1).values()) | set(group.port_names(2).values())) == 4
    assert group.mgmt_address(group.MAX_GROUPS, group.MAX_HOSTS) == "10.198.50.15"


def test_hosts_file_maps_every_host_to_its_management_address():
    text = group.hosts_file(4, ["lab-1", "lab-2", "lab-3"])
    lines = text.splitlines()
    assert "127.0.0.1 localhost" in lines
    assert {"10.198.4.11 lab-1", "10.198.4.12 lab-2", "10.198.4.13 lab-3"} <= set(lines)
    assert text.endswith("\n")


@pytest.mark.parametrize("name", ["Lab", "a_b", "lab\n", "-lab", "lab-", "", "a" * 31, "a.b"])
def test_a_group_name_must_be_a_host_name_prefix(name):
    with pytest.raises(sandbox.SandboxError, match="Invalid group name"):
        group.check_group(name, 3)


@pytest.mark.parametrize("count", [0, 6, -1])
def test_a_group_has_one_to_five_hosts(count):
    with pytest.raises(sandbox.SandboxError, match="1 to 5"):
        group.check_group("lab", count)


def test_group_up_refuses_bad_input_before_needing_root(monkeypatch):
    monkeypatch.setattr(group, "require_root_tools", lambda: pytest.fail("checked root first"))
    with pytest.raises(sandbox.SandboxError, match="Invalid group name"):
        sandbox.group_up("Bad_Name", 2)
    with pytest.raises(sandbox.SandboxError, match="Unknown Debian release"):
        sandbox.group_up("lab", 2, release="11")


def test_group_claims_are_exclusive_and_stale_ones_are_reclaimed(tmp_path, monkeypatch):
    monkeypatch.setattr(sandbox.claims, "CLAIM_ROOT", tmp_path / "claims")
    torn = []
    monkeypatch.setattr(group, "_teardown_group_net", lambda g: torn.append(g))
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    for d in (a, b, c):
        d.mkdir()
    assert group._claim_group(a, None) == 1
    assert group._claim_group(b, None) == 2
    # A host's slot 1 is a different claim: groups and single sandboxes do not collide.
    assert sandbox._claims() == {}
    assert group._owned_group_claims(b) == [2]
    a.rmdir()  # owner gone: slot 1 is stale, its namespace is removed before reuse
    assert group._claim_group(c, None) == 1
    assert torn == [1]
    group._release_group(2)
    assert group._owned_group_claims(b) == []


def test_a_foreign_sandbox_with_a_host_name_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("STACK_TUI_HOME", str(tmp_path / "home"))
    sandbox._sandbox_path("lab-2").mkdir(parents=True)
    with pytest.raises(sandbox.SandboxError, match="lab-2 already exists"):
        group._refuse_foreign("lab", 3)
    group._refuse_foreign("lab", 1)


@pytest.mark.parametrize("value", ["0", "6", "x", "2.0", "-1"])
def test_cli_hosts_takes_one_to_five(value, capsys):
    with pytest.raises(SystemExit):
        cli_parser.parser().parse_args(["sandbox", "up", "--hosts", value])
    assert "--hosts" in capsys.readouterr().err


def test_cli_up_without_hosts_is_one_host():
    args = cli_parser.parser().parse_args(["sandbox", "up", "--name", "x"])
    assert args.hosts == 1
    assert cli_parser.parser().parse_args(["sandbox", "up", "--hosts", "3"]).hosts == 3


def _fake_infos(tmp_path, names):
    for n in names:
        (tmp_path / f"{n}.key").write_text("not a real key\n")
    (tmp_path / "img").write_bytes(b"qcow")
    return [sandbox.SandboxInfo(name=n, index=i, address=f"10.199.0.{4 * i + 2}",
                                host_address=f"10.199.0.{4 * i + 1}",
                                key_file=str(tmp_path / f"{n}.key"), image_file=str(tmp_path / "img"))
            for i, n in enumerate(names, 1)]


def test_cli_group_up_writes_one_profile_per_host_and_names_the_group(tmp_path, monkeypatch, capsys,
                                                                      isolated_home):
    from tui.tasks import profile

    infos = _fake_infos(tmp_path, ["lab-1", "lab-2", "lab-3"])
    calls = []
    monkeypatch.setattr(sandbox, "group_up",
                        lambda name, n, **kw: calls.append((name, n, kw["release"])) or infos)
    monkeypatch.setattr(sandbox, "trust_own_host_keys", lambda info: ["SHA256:x"])
    monkeypatch.setattr(sandbox, "group_status", lambda name: {
        "mgmt_subnet": "10.198.1.0/24", "netns": "stkg-1",
        "hosts": [{"name": i.name, "mgmt_address": f"10.198.1.{10 + k}"} for k, i in enumerate(infos, 1)]})
    assert cli.main(["sandbox", "up", "--name", "lab", "--hosts", "3"]) == 0
    out = capsys.readouterr().out
    assert calls == [("lab", 3, "13")]
    assert "Group lab: 3 Debian 13 hosts" in out and "10.198.1.0/24" in out
    for k, info in enumerate(infos, 1):
        own = profile.load(info.name)
        assert len(own.hosts) == 1 and own.host.address == info.address
        assert own.host.mgmt_address == f"10.198.1.{10 + k}"   # the services talk there
        line = f"{info.name}: ssh -i {info.key_file} root@{info.address} (management 10.198.1.{10 + k})"
        assert line in out
    # ... and one profile for the whole group, named after it: lab-1 controls, all compute
    grp = profile.load("lab")
    assert [(h.name, h.roles, h.address, h.key_file, h.mgmt_address) for h in grp.hosts] == [
        (i.name, ["controller", "compute"] if k == 1 else ["compute"], i.address, i.key_file,
         f"10.198.1.{10 + k}") for k, i in enumerate(infos, 1)]
    assert grp.host.name == "lab-1" and len(grp.computes) == 3
    assert f"Group profile written: {grp.path} (lab-1 the controller, lab-2, lab-3 compute" in out


def test_cli_down_and_status_find_the_group(monkeypatch, capsys):
    monkeypatch.setattr(sandbox, "group_exists", lambda name: name == "lab")
    removed = []
    monkeypatch.setattr(sandbox, "group_down", lambda name, log=None: removed.append(name) or True)
    monkeypatch.setattr(sandbox, "down", lambda name, log=None: pytest.fail("single down for a group"))
    monkeypatch.setattr(sandbox, "group_status", lambda name: {
        "group": "lab", "release": "13", "netns": "stkg-1", "netns_exists": True,
        "mgmt_subnet": "10.198.1.0/24", "mgmt_bridge": "br-mgmt", "provider_bridge": "br-prov",
        "hosts": [{"name": "lab-1", "mgmt_address": "10.198.1.11", "address": "10.199.0.6", "alive": True}]})
    assert cli.main(["sandbox", "down", "--name", "lab"]) == 0
    assert removed == ["lab"]
    assert cli.main(["sandbox", "status", "--name", "lab"]) == 0
    out = capsys.readouterr().out
    assert "Group lab removed" in out
    assert "lab-1" in out and "10.198.1.11" in out and "running" in out


def _record(tmp_path, monkeypatch, name, hosts):
    """A group record as group_up writes it, under a fresh STACK_TUI_HOME."""
    monkeypatch.setenv("STACK_TUI_HOME", str(tmp_path / "home"))
    gdir = group._group_path(name)
    gdir.mkdir(parents=True)
    group._save_group(group.GroupInfo(name=name, index=1, hosts=hosts, dir=str(gdir)))


def test_group_of_finds_a_hosts_group_only_for_its_hosts(tmp_path, monkeypatch):
    _record(tmp_path, monkeypatch, "lab", ["lab-1", "lab-2"])
    assert group.group_of("lab-2") == "lab"
    assert group.group_of("lab-3") is None  # not one of its hosts
    assert group.group_of("lab") is None and group.group_of("other-1") is None
    assert group.group_exists("lab") and not group.group_exists("other")


def test_cli_refuses_to_remove_one_host_of_a_group(tmp_path, monkeypatch, capsys):
    _record(tmp_path, monkeypatch, "lab", ["lab-1", "lab-2"])
    monkeypatch.setattr(sandbox, "down", lambda name, log=None: pytest.fail("removed one host"))
    assert cli.main(["sandbox", "down", "--name", "lab-2"]) != 0
    assert "stack-tui sandbox down --name lab" in capsys.readouterr().err


def test_a_host_that_fails_to_boot_takes_the_whole_group_down(tmp_path, monkeypatch):
    monkeypatch.setenv("STACK_TUI_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(sandbox.claims, "CLAIM_ROOT", tmp_path / "claims")
    monkeypatch.setattr(group, "require_root_tools", lambda: None)
    made, removed, nets = [], [], []
    monkeypatch.setattr(group, "_setup_group_net", lambda g, log: nets.append(("up", g)))
    monkeypatch.setattr(group, "_teardown_group_net", lambda g: nets.append(("down", g)))
    monkeypatch.setattr(group, "_wire_host", lambda *a: pytest.fail("wired a host of a failed group"))

    def fake_up(name, log=None, release="13", hostname=""):
        assert hostname == name
        if name == "lab-2":
            raise sandbox.SandboxError("sshd did not answer")
        made.append(name)
        return sandbox.SandboxInfo(name=name, index=1, address="a", host_address="b")

    monkeypatch.setattr(group, "up", fake_up)
    monkeypatch.setattr(group, "down", lambda name, log=None: removed.append(name) or True)
    with pytest.raises(sandbox.SandboxError, match="lab-2: sshd did not answer"):
        sandbox.group_up("lab", 3)
    assert sorted(made) == ["lab-1", "lab-3"]
    assert sorted(removed) == ["lab-1", "lab-2", "lab-3"]
    assert ("up", 1) in nets and nets[-1] == ("down", 1)
    assert not group._group_path("lab").exists() and group._owned_group_claims(group._group_path("lab")) == []
    assert not (tmp_path / "claims" / "grp-1").exists()


# -- the group's profile on down and status --------------------------------------------

def _group_up_with_profiles(tmp_path, monkeypatch, names=("lab-1", "lab-2", "lab-3")):
    """`sandbox up --hosts 3` through the command line, the booting faked; the infos."""
    infos = _fake_infos(tmp_path, list(names))
    monkeypatch.setattr(sandbox, "group_up", lambda name, n, **kw: infos)
    monkeypatch.setattr(sandbox, "trust_own_host_keys", lambda info: ["SHA256:x"])
    monkeypatch.setattr(sandbox, "group_status", lambda name: {
        "group": "lab", "release": "13", "netns": "stkg-1", "netns_exists": True,
        "mgmt_subnet": "10.198.1.0/24", "mgmt_bridge": "br-mgmt", "provider_bridge": "br-prov",
        "hosts": [{"name": i.name, "mgmt_address": f"10.198.1.{10 + k}", "address": i.address,
                   "alive": True} for k, i in enumerate(infos, 1)]})
    assert cli.main(["sandbox", "up", "--name", "lab", "--hosts", str(len(infos))]) == 0
    monkeypatch.setattr(sandbox, "group_exists", lambda name: name == "lab")
    monkeypatch.setattr(sandbox, "group_host_infos", lambda name: infos if name == "lab" else [])
    return infos


def test_cli_group_down_removes_the_group_profile_it_wrote(tmp_path, monkeypatch, capsys,
                                                           isolated_home):
    from tui.tasks import profile

    infos = _group_up_with_profiles(tmp_path, monkeypatch)
    secrets = profile.load("lab").secrets_file
    secrets.write_text("")   # as an install would leave one
    assert cli.main(["sandbox", "status", "--name", "lab"]) == 0
    assert "profile        lab" in capsys.readouterr().out
    removed = []

    def group_down(name, log=None):   # as the real one: the hosts' key files go with them
        removed.append(name)
        for info in infos:
            os.unlink(info.key_file)
        return True

    monkeypatch.setattr(sandbox, "group_down", group_down)
    assert cli.main(["sandbox", "down", "--name", "lab"]) == 0
    out = capsys.readouterr().out
    assert removed == ["lab"] and "Profile lab removed" in out
    assert "lab" not in profile.list_profiles()
    assert not secrets.exists()
    # the hosts' own profiles stay, as a single sandbox's does
    assert all(i.name in profile.list_profiles() for i in infos)


def test_cli_group_down_keeps_a_profile_of_that_name_pointed_elsewhere(tmp_path, monkeypatch,
                                                                       capsys, isolated_home):
    from tui.tasks import profile

    _group_up_with_profiles(tmp_path, monkeypatch)
    mine = profile.load("lab")
    mine.hosts[1].address = "192.0.2.20"   # the person's own host now
    profile.save(mine)
    text = mine.path.read_text()
    monkeypatch.setattr(sandbox, "group_down", lambda name, log=None: True)
    capsys.readouterr()
    assert cli.main(["sandbox", "status", "--name", "lab"]) == 0
    assert "profile " not in capsys.readouterr().out
    assert cli.main(["sandbox", "down", "--name", "lab"]) == 0
    assert "Profile lab removed" not in capsys.readouterr().out
    assert mine.path.read_text() == text


def test_cli_group_down_that_fails_keeps_the_profile(tmp_path, monkeypatch, capsys, isolated_home):
    from tui.tasks import profile

    _group_up_with_profiles(tmp_path, monkeypatch)

    def fail(name, log=None):
        raise sandbox.SandboxError("Group 'lab': some hosts could not be removed")

    monkeypatch.setattr(sandbox, "group_down", fail)
    assert cli.main(["sandbox", "down", "--name", "lab"]) != 0
    assert "some hosts could not be removed" in capsys.readouterr().err
    assert len(profile.load("lab").hosts) == 3


def test_group_up_again_keeps_the_persons_choices_in_the_group_profile(tmp_path, monkeypatch,
                                                                       isolated_home):
    from tui.tasks import profile

    _group_up_with_profiles(tmp_path, monkeypatch)
    grp = profile.load("lab")
    grp.openstack.services = [*grp.openstack.services, "placement"]
    profile.save(grp)
    infos = _group_up_with_profiles(tmp_path, monkeypatch, names=("lab-1", "lab-2"))
    again = profile.load("lab")
    assert "placement" in again.openstack.services
    assert [h.name for h in again.hosts] == [i.name for i in infos]


def test_group_host_infos_reads_the_hosts_records_in_order(tmp_path, monkeypatch):
    _record(tmp_path, monkeypatch, "lab", ["lab-1", "lab-2", "lab-3"])
    for k, name in ((2, "lab-2"), (1, "lab-1")):   # lab-3's record is gone
        info = sandbox.SandboxInfo(name=name, index=k, address=f"10.199.0.{4 * k + 2}",
                                   host_address="x", dir=str(sandbox._sandbox_path(name)))
        sandbox._sandbox_path(name).mkdir(parents=True)
        sandbox.lifecycle._save_info(info)
    assert [i.name for i in group.group_host_infos("lab")] == ["lab-1", "lab-2"]
    assert group.group_host_infos("other") == [] and group.group_host_infos("Bad!") == []


def test_cli_group_down_says_when_the_profile_cannot_be_removed(tmp_path, monkeypatch, capsys,
                                                                isolated_home):
    from tui.tasks import profile

    _group_up_with_profiles(tmp_path, monkeypatch)
    profile.load("lab").secrets_file.mkdir()   # not a file: delete refuses it
    monkeypatch.setattr(sandbox, "group_down", lambda name, log=None: True)
    assert cli.main(["sandbox", "down", "--name", "lab"]) != 0
    out = capsys.readouterr()
    assert "Group lab removed" in out.out
    assert "not its profile lab" in out.err and "stack-tui profiles delete lab" in out.err
    assert "Traceback" not in out.err
