"""Profile version 2: several hosts with names and roles, the version 1 migration (loading,
saving with comments, the kept copy), the checks that name their key, and the refusal to
install a profile of several hosts while the engine installs one."""

from __future__ import annotations

import os
import stat
import tomllib

import pytest

from tui.tasks import deploy, profile as pr, runner
from tui.tasks.profile import HostConfig, Profile, ProfileError

V1 = """\
# my lab: the box under the desk
version = 1

[host]  # the one server
# behind the VPN
port = 2222   # sshd
address = "192.0.2.10"
user = "deploy"

[openstack]
services = ["mariadb", "rabbitmq", "memcached", "keystone", "glance"]
region = "RegionOne"  # only one region

[image]
url = "https://example.org/cirros.img"
"""

THREE = """\
version = 2

[[hosts]]
name = "ctl"
roles = ["controller", "compute"]
address = "10.198.1.11"

[[hosts]]
name = "cmp1"
roles = ["compute"]
address = "10.198.1.12"
user = "deploy"

[[hosts]]
name = "cmp2"
roles = ["compute"]
address = "10.198.1.13"
port = 2222

[openstack]
services = ["mariadb", "rabbitmq", "memcached", "keystone", "glance"]

[image]
url = "https://example.org/cirros.img"
"""


@pytest.fixture(autouse=True)
def home(isolated_home):
    return isolated_home


def write(tmp_path, text: str, name: str = "lab.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def refused(tmp_path, text: str, key: str, reason: str) -> ProfileError:
    path = write(tmp_path, text, "bad.toml")
    with pytest.raises(ProfileError) as ei:
        pr.load(path)
    exc = ei.value
    assert exc.key == key and f"[{key}]" in str(exc), str(exc)
    assert reason.lower() in str(exc).lower(), str(exc)
    assert path.read_text() == text   # nothing rewritten
    return exc


# -- version 1 -------------------------------------------------------------------------

def test_a_version_1_file_is_one_host_that_controls_and_computes(tmp_path):
    p = pr.load(write(tmp_path, V1))
    assert p.version == 2 == pr.PROFILE_VERSION
    assert p.hosts == [HostConfig(address="192.0.2.10", port=2222, user="deploy",
                                  name="controller", roles=["controller", "compute"])]
    assert p.host is p.hosts[0] is p.controller
    assert p.computes == [p.host]


def test_a_version_1_file_saved_is_version_2_and_loads_back_equal(tmp_path):
    path = write(tmp_path, V1)
    before = pr.load(path)
    pr.save(before)
    data = tomllib.loads(path.read_text())
    assert data["version"] == 2 and "host" not in data
    assert data["hosts"] == [{"name": "controller", "roles": ["controller", "compute"],
                              "address": "192.0.2.10", "port": 2222, "user": "deploy"}]
    assert pr.load(path) == before
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_saving_a_version_1_file_keeps_the_comments_in_and_around_the_host(tmp_path):
    path = write(tmp_path, V1)
    p = pr.load(path)
    p.host.address = "192.0.2.11"
    pr.save(p)
    text = path.read_text()
    for kept in ("# my lab: the box under the desk", "[[hosts]]  # the one server",
                 "# behind the VPN", "port = 2222   # sshd", 'region = "RegionOne"  # only one region'):
        assert kept in text, text
    assert "[host]" not in text and 'address = "192.0.2.11"' in text
    assert text.index("port = 2222") < text.index("address =")   # the user's order
    assert pr.load(path).host.address == "192.0.2.11"


def test_a_host_written_inline_is_migrated_too(tmp_path):
    # no [host] header to rename: the hosts are written anew, the rest kept
    path = write(tmp_path, V1.replace('[host]  # the one server\n# behind the VPN\n'
                                      'port = 2222   # sshd\naddress = "192.0.2.10"\n'
                                      'user = "deploy"\n',
                                      'host = { address = "192.0.2.10", port = 2222, '
                                      'user = "deploy" }\n'))
    before = pr.load(path)
    pr.save(before)
    data = tomllib.loads(path.read_text())
    assert data["version"] == 2 and "host" not in data and len(data["hosts"]) == 1
    assert pr.load(path) == before
    assert "# my lab: the box under the desk" in path.read_text()


def test_the_version_1_text_is_kept_once_0600_and_deleted_with_the_profile(home):
    d = pr.paths.profiles_dir()
    d.mkdir(parents=True, exist_ok=True)
    path = d / "lab.toml"
    path.write_text(V1)
    backup = d / "lab.toml.v1"
    p = pr.load("lab")
    pr.save(p)
    assert backup.read_text() == V1
    assert stat.S_IMODE(backup.stat().st_mode) == 0o600
    p.host.address = "192.0.2.12"
    pr.save(p)                        # now version 2: the copy stays the version 1 text
    assert backup.read_text() == V1
    assert pr.list_profiles() == ["lab"]
    assert backup in pr.deletable_files("lab")
    assert pr.delete("lab") and not backup.exists() and not path.exists()


def test_an_existing_copy_or_link_at_the_backup_name_is_left_alone(tmp_path):
    path = write(tmp_path, V1)
    target = tmp_path / "elsewhere"
    target.write_text("not yours\n")
    os.symlink(target, tmp_path / "lab.toml.v1")
    pr.save(pr.load(path))
    assert tomllib.loads(path.read_text())["version"] == 2
    assert target.read_text() == "not yours\n"
    assert os.path.islink(tmp_path / "lab.toml.v1")


def test_a_version_2_file_saved_keeps_no_copy(tmp_path):
    path = write(tmp_path, THREE)
    pr.save(pr.load(path))
    assert not (tmp_path / "lab.toml.v1").exists()


# -- version 2 -------------------------------------------------------------------------

def test_three_hosts_round_trip(tmp_path):
    path = write(tmp_path, THREE)
    p = pr.load(path)
    assert [h.name for h in p.hosts] == ["ctl", "cmp1", "cmp2"]
    assert p.controller is p.host is p.hosts[0]
    assert [h.name for h in p.computes] == ["ctl", "cmp1", "cmp2"]
    assert (p.hosts[1].user, p.hosts[2].port, p.hosts[0].port) == ("deploy", 2222, 22)
    pr.save(p)
    again = pr.load(path)
    assert again == p
    assert [h["name"] for h in tomllib.loads(path.read_text())["hosts"]] == ["ctl", "cmp1", "cmp2"]
    # the copy the start screen makes goes through to_dict / from_dict
    assert pr.from_dict(p.to_dict(with_secrets=True), name="lab", path=path) == p


def test_a_controller_that_does_not_compute(tmp_path):
    p = pr.load(write(tmp_path, THREE.replace('roles = ["controller", "compute"]',
                                              'roles = ["controller"]')))
    assert p.controller.name == "ctl"
    assert [h.name for h in p.computes] == ["cmp1", "cmp2"]


def test_removing_and_adding_hosts_saves_what_is_in_memory(tmp_path):
    path = write(tmp_path, THREE)
    p = pr.load(path)
    del p.hosts[1]
    p.hosts.append(HostConfig(address="10.198.1.14", name="cmp3", roles=["compute"]))
    pr.save(p)
    assert [h.name for h in pr.load(path).hosts] == ["ctl", "cmp2", "cmp3"]
    assert pr.load(path) == p


def test_one_host_keeps_the_old_constructor_and_keys():
    p = Profile(name="one", host=HostConfig(address="10.0.0.5"))
    assert p.hosts == [HostConfig(address="10.0.0.5")] and p.host.roles == ["controller", "compute"]
    p.host = HostConfig(address="10.0.0.6")
    assert [h.address for h in p.hosts] == ["10.0.0.6"]
    p.host.address = "bad host!"
    assert [k for k, _ in pr.validation_errors(p)] == ["host.address"]
    assert p.to_dict()["hosts"][0]["address"] == "bad host!" and "host" not in p.to_dict()


@pytest.mark.parametrize("old, new, key, reason", [
    ('roles = ["controller", "compute"]', 'roles = ["compute"]', "hosts",
     "no host has the controller role"),
    ('name = "cmp1"\nroles = ["compute"]', 'name = "cmp1"\nroles = ["controller"]',
     "hosts[2].roles", "second controller"),
    ('name = "cmp2"', 'name = "CMP1"', "hosts[3].name", "already used by hosts[2]"),
    ('address = "10.198.1.13"\nport = 2222', 'address = "10.198.1.12"\nport = 22',
     "hosts[3].address", "already hosts[2]"),
    ('name = "cmp1"\nroles = ["compute"]', 'name = "cmp1"\nroles = ["storage"]',
     "hosts[2].roles", "unknown role(s) storage"),
    ('name = "cmp1"\nroles = ["compute"]', 'name = "cmp1"\nroles = []',
     "hosts[2].roles", "no role given"),
    ('name = "cmp1"\nroles = ["compute"]', 'name = "cmp1"\nroles = ["compute", "compute"]',
     "hosts[2].roles", "listed twice"),
    ('name = "cmp1"\nroles = ["compute"]', 'name = "cmp1"\nroles = "compute"',
     "hosts[2].roles", "must be a list"),
    ('name = "cmp1"\nroles = ["compute"]', 'name = "cmp1"', "hosts[2].roles", "missing roles"),
    ('name = "cmp1"\n', "", "hosts[2].name", "missing name"),
    ('name = "cmp1"', 'name = "cmp1"\ncolour = "red"', "hosts[2].colour", "unknown key"),
    ('name = "cmp1"', 'name = "cmp.1"', "hosts[2].name", "not a host name"),
    ('name = "cmp1"', 'name = "-cmp1"', "hosts[2].name", "not a host name"),
    ('name = "cmp1"', f'name = "{"c" * 64}"', "hosts[2].name", "not a host name"),
    ('name = "cmp1"', 'name = "$(reboot)"', "hosts[2].name", "not a host name"),
    ('address = "10.198.1.12"', 'address = "10.198.1.12; reboot"', "hosts[2].address",
     "not a hostname or IP address"),
    ('port = 2222', 'port = 70000', "hosts[3].port", "outside 1-65535"),
    ('user = "deploy"', 'user = "Root User"', "hosts[2].user", "not a valid user name"),
    ("version = 2", "version = 1", "hosts", "[[hosts]] entries are the version 2 form"),
    ("version = 2\n", 'version = 2\n[host]\naddress = "10.0.0.1"\n', "host",
     "[host] is the version 1 form"),
])
def test_each_refusal_names_its_key(tmp_path, old, new, key, reason):
    assert old in THREE
    refused(tmp_path, THREE.replace(old, new, 1), key, reason)


@pytest.mark.parametrize("field, value", [("name", "cmp\\n1"), ("address", "10.198.1.12\\n"),
                                          ("name", "cmp\\u001b[2J1"), ("user", "deploy\\n")])
def test_a_control_character_is_refused_and_shown_escaped(tmp_path, field, value):
    line = {"name": 'name = "cmp1"', "address": 'address = "10.198.1.12"',
            "user": 'user = "deploy"'}[field]
    exc = refused(tmp_path, THREE.replace(line, f'{field} = "{value}"', 1), f"hosts[2].{field}", "")
    assert "\n" not in str(exc) and "\x1b" not in str(exc)


def test_the_same_host_written_two_ways_is_one_address(tmp_path):
    text = THREE.replace('"10.198.1.12"', '"fd00::12"').replace('"10.198.1.13"\nport = 2222',
                                                                 '"fd00:0:0::12"')
    refused(tmp_path, text, "hosts[3].address", "already hosts[2]")
    # the same address on another port is another host (port-forwarded machines)
    ok = THREE.replace('"10.198.1.13"', '"10.198.1.12"')
    assert len(pr.load(write(tmp_path, ok)).hosts) == 3



# -- management addresses --------------------------------------------------------------

MGMT = THREE.replace('address = "10.198.1.11"', 'address = "192.0.2.11"\nmgmt_address = "10.198.1.11"')\
    .replace('address = "10.198.1.12"', 'address = "192.0.2.12"\nmgmt_address = "10.198.1.12"')


def test_a_management_address_round_trips_and_is_optional(tmp_path):
    path = write(tmp_path, MGMT)
    p = pr.load(path)
    assert [h.mgmt_address for h in p.hosts] == ["10.198.1.11", "10.198.1.12", None]
    assert p.host.address == "192.0.2.11"   # SSH still goes to the address
    p.hosts[2].mgmt_address = "10.198.1.13"
    pr.save(p)
    again = pr.load(path)
    assert again == p and again.hosts[2].mgmt_address == "10.198.1.13"
    assert [h.get("mgmt_address") for h in tomllib.loads(path.read_text())["hosts"]] == \
        ["10.198.1.11", "10.198.1.12", "10.198.1.13"]
    again.hosts[0].mgmt_address = None   # removed again: the key goes, detection as before
    pr.save(again)
    assert "mgmt_address" not in tomllib.loads(path.read_text())["hosts"][0]
    assert pr.load(path).hosts[0].mgmt_address is None
    assert pr.from_dict(again.to_dict(with_secrets=True), name="lab", path=path) == again


@pytest.mark.parametrize("value, reason", [
    ("10.198.1.12", "already the management address of hosts[2]"),
    ("10.198.1.12\\n", "not an IPv4 address"),
    ("10.198.1.12 ", "not an IPv4 address"),
    ("cmp2.example", "not an IPv4 address"),
    ("fd00::13", "not an IPv4 address"),
    ("10.198.1.256", "not an IPv4 address"),
    ("010.198.1.13", "not an IPv4 address"),
    ("127.0.1.1", "loopback"),
    ("0.0.0.0", "loopback, unspecified"),
    ("10.198.1.13; reboot", "not an IPv4 address"),
])
def test_a_bad_management_address_is_refused_naming_its_key(tmp_path, value, reason):
    text = MGMT.replace('port = 2222', f'port = 2222\nmgmt_address = "{value}"')
    exc = refused(tmp_path, text, "hosts[3].mgmt_address", reason)
    assert "\n" not in str(exc)


def test_a_management_address_must_be_a_string(tmp_path):
    refused(tmp_path, MGMT.replace('port = 2222', 'port = 2222\nmgmt_address = 13'),
            "hosts[3].mgmt_address", "must be a string")


def test_a_version_1_host_has_no_management_address(tmp_path):
    refused(tmp_path, V1.replace('user = "deploy"', 'user = "deploy"\nmgmt_address = "10.0.0.1"'),
            "host.mgmt_address", "unknown key")
    p = pr.load(write(tmp_path, V1))
    assert p.host.mgmt_address is None
    pr.save(p)
    assert "mgmt_address" not in p.path.read_text()


def test_one_host_in_memory_names_its_management_address_key():
    p = Profile(name="one", host=HostConfig(address="10.0.0.5", mgmt_address="10.0.0"))
    assert [k for k, _ in pr.validation_errors(p)] == ["host.mgmt_address"]


@pytest.mark.parametrize("text, key, reason", [
    ("version = 2\n", "hosts", "missing [[hosts]]"),
    ('version = 2\nhosts = "10.0.0.1"\n', "hosts", "must be [[hosts]] entries"),
    ("version = 2\nhosts = [1]\n", "hosts[1]", "must be a table"),
    ("version = 2\nhosts = []\n", "hosts", "no host described"),
    ("version = 3\n", "version", "newer than this stack-tui understands (2)"),
])
def test_a_version_2_file_without_usable_hosts(tmp_path, text, key, reason):
    refused(tmp_path, text, key, reason)


def test_one_host_of_a_version_2_file_is_named_in_the_list_form(tmp_path):
    one = THREE[:THREE.index('[[hosts]]\nname = "cmp1"')] + THREE[THREE.index("[openstack]"):]
    assert len(pr.load(write(tmp_path, one)).hosts) == 1
    refused(tmp_path, one.replace('"10.198.1.11"', '"bad host!"'), "hosts[1].address",
            "not a hostname")


# -- installing ------------------------------------------------------------------------

def test_a_profile_of_several_hosts_opens_one_connection_per_host(tmp_path):
    """Nothing is contacted yet: a transport per host, the run state the controller's."""
    p = pr.load(write(tmp_path, THREE))
    session = runner.open_session(p)
    try:
        assert session.transport.address == "10.198.1.11"
        assert {n: t.address for n, t in session.others.items()} == {
            "cmp1": "10.198.1.12", "cmp2": "10.198.1.13"}
        assert set(session.transports()) == {"", "cmp1", "cmp2"}
        assert "10.198.1.11" in session.state.path.name
    finally:
        session.close()


def test_one_host_of_either_version_opens_a_session_as_before(tmp_path):
    one = THREE[:THREE.index('[[hosts]]\nname = "cmp1"')] + THREE[THREE.index("[openstack]"):]
    p = pr.load(write(tmp_path, one))
    session = runner.open_session(p)
    try:
        assert session.transport.address == "10.198.1.11" and session.transport.port == 22
    finally:
        session.close()
    session = runner.open_session(pr.load(write(tmp_path, V1, "v1.toml")))
    try:
        assert session.transport.address == "192.0.2.10" and session.transport.port == 2222
    finally:
        session.close()


def _doc_profile(tmp_path, doc_file: str, after: str = ""):
    """The first version 2 profile of ``doc_file`` (after the heading ``after``), loaded with
    its key files made real."""
    from pathlib import Path

    doc = (Path(__file__).resolve().parent.parent / doc_file).read_text()
    doc = doc[doc.index(after):] if after else doc
    block = doc[doc.index("```toml\nversion = 2"):]
    text = block[len("```toml\n"):block.index("\n```")] + "\n"
    key = tmp_path / "id_ed25519"
    key.write_text("not a real key\n")
    return pr.load(write(tmp_path, text.replace("~/.ssh/id_ed25519", str(key))))


def test_the_documented_example_loads(tmp_path):
    """docs/multihost.md's three-host example is a valid profile (its key files made real)."""
    p = _doc_profile(tmp_path, "docs/multihost.md")
    assert [(h.name, h.roles) for h in p.hosts] == [
        ("lab-1", ["controller", "compute"]), ("lab-2", ["compute"]), ("lab-3", ["compute"])]
    assert p.host.address == "10.199.0.2" and len(p.computes) == 3
    assert [h.mgmt_address for h in p.hosts] == ["10.198.1.11", "10.198.1.12", "10.198.1.13"]


# -- a host's view (Profile.on): what the steps that run on a compute host see -----------------

def _three_hosts():
    from tui.tasks.profile import HostConfig, Profile
    return Profile("lab", hosts=[
        HostConfig(name="lab-1", roles=["controller", "compute"], address="10.199.0.2",
                   mgmt_address="10.198.1.11"),
        HostConfig(name="lab-2", roles=["compute"], address="10.199.0.6",
                   mgmt_address="10.198.1.12"),
        HostConfig(name="lab-3", roles=["compute"], address="10.199.0.10")])


def test_a_hosts_view_has_that_host_and_keeps_the_controllers_endpoints():
    prof = _three_hosts()
    view = prof.on("lab-2")
    assert view.host.name == "lab-2" and view.here == "lab-2"
    assert view.controller.name == "lab-1"
    assert view.endpoint_host == "10.199.0.2" == prof.endpoint_host
    assert prof.host.name == "lab-1" and prof.here is None   # the profile itself unchanged
    with pytest.raises(KeyError):
        prof.on("lab-9")


def test_controller_mgmt_from_a_compute_hosts_view():
    from types import SimpleNamespace
    from tui.tasks.services.common import controller_mgmt, mgmt

    prof = _three_hosts()
    ctrl = SimpleNamespace(profile=prof, facts={"mgmt_address": "10.198.1.11"})
    ctrl.controller_facts = ctrl.facts
    assert controller_mgmt(ctrl) == mgmt(ctrl) == "10.198.1.11"
    c2 = SimpleNamespace(profile=prof.on("lab-2"), facts={}, controller_facts={})
    assert mgmt(c2) == "10.198.1.12"
    assert controller_mgmt(c2) == "10.198.1.11"        # the controller's configured one
    c2.controller_facts = {"mgmt_address": "10.198.1.99"}
    assert controller_mgmt(c2) == "10.198.1.99"        # what the controller recorded wins
    c3 = SimpleNamespace(profile=prof.on("lab-3"), facts={}, controller_facts={})
    assert mgmt(c3) == "10.199.0.10"                   # no mgmt_address: its SSH address


def test_the_readmes_several_hosts_example_loads_and_plans(tmp_path):
    """README's profile of several hosts is valid and plans a compute phase for lab-2."""
    p = _doc_profile(tmp_path, "README.md", after="### Several hosts")
    assert [(h.name, h.roles) for h in p.hosts] == [
        ("lab-1", ["controller", "compute"]), ("lab-2", ["compute"])]
    p.openstack.platform = "debian-12"
    plan = deploy.build_plan(p)
    assert plan.find("lab-2:compute.services") is not None
    assert plan.find("computes.discover") is not None
