"""Profiles and secrets: strict loading with clear errors, round trips, secret sources."""

from __future__ import annotations

import os
import stat
import tomllib
from pathlib import Path

import pytest

from tui.tasks import profile as pr
from tui.tasks.profile import Profile, ProfileError
from tui.tasks.secrets import (
    GENERATABLE,
    SECRET_NAMES,
    Secrets,
    env_name,
    read_secrets_file,
    validate,
    write_secrets_file,
)

GOOD = """\
version = 1
[host]
address = "10.199.0.2"
port = 22
user = "root"
[openstack]
region = "RegionOne"
services = ["mariadb", "rabbitmq", "memcached", "keystone", "glance"]
demo = true
[image]
name = "cirros"
url = "https://example.org/cirros.img"
disk_format = "qcow2"
"""


@pytest.fixture(autouse=True)
def home(isolated_home):
    return isolated_home


def refused(tmp_path, content: bytes | str, *, key: str | None, reason: str, name="bad.toml"):
    """Load ``content`` from a file: ProfileError naming file, key and reason; file untouched."""
    path = tmp_path / name
    data = content.encode() if isinstance(content, str) else content
    path.write_bytes(data)
    before = path.stat().st_mtime_ns
    with pytest.raises(ProfileError) as ei:
        pr.load(path)
    exc = ei.value
    msg = str(exc)
    assert exc.file == str(path) and str(path) in msg, msg
    if key is not None:
        assert exc.key == key, msg
        assert f"[{key}]" in msg, msg
    assert reason.lower() in msg.lower(), msg
    assert path.read_bytes() == data and path.stat().st_mtime_ns == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "home") == [name]
    return exc


# --------------------------------------------------------------------------- bad profiles


def test_invalid_toml(tmp_path):
    exc = refused(tmp_path, GOOD + "oops = = 3\n", key=None, reason="not valid TOML")
    assert "line 14" in str(exc)


def test_unknown_top_level_key(tmp_path):
    refused(tmp_path, "colour = \"red\"\n" + GOOD, key="colour", reason="unknown key 'colour'")


def test_unknown_nested_key(tmp_path):
    refused(tmp_path, GOOD.replace("port = 22", "prot = 22"), key="host.prot",
            reason="unknown key 'prot'")
    refused(tmp_path, GOOD.replace("demo = true", "demo = true\nnova = true"),
            key="openstack.nova", reason="unknown key 'nova'")


def test_unknown_table(tmp_path):
    refused(tmp_path, GOOD + "[nova]\nx = 1\n", key="nova", reason="unknown key 'nova'")


@pytest.mark.parametrize("old,new,key,reason", [
    ('port = 22', 'port = "22"', "host.port", "must be a whole number, not str"),
    ('port = 22', 'port = true', "host.port", "must be a whole number, not bool"),
    ('port = 22', 'port = 22.5', "host.port", "must be a whole number, not float"),
    ('demo = true', 'demo = "yes"', "openstack.demo", "must be true or false"),
    ('services = ["mariadb", "rabbitmq", "memcached", "keystone", "glance"]',
     'services = "keystone"', "openstack.services", "must be a list"),
    ('services = ["mariadb", "rabbitmq", "memcached", "keystone", "glance"]',
     'services = ["mariadb", 3]', "openstack.services", "list of strings"),
    ('address = "10.199.0.2"', 'address = 10', "host.address", "must be a string"),
    ('version = 1', 'version = "1"', "version", "must be a whole number"),
])
def test_wrong_types(tmp_path, old, new, key, reason):
    assert old in GOOD
    refused(tmp_path, GOOD.replace(old, new), key=key, reason=reason)


def test_host_not_a_table(tmp_path):
    text = GOOD.replace('[host]\naddress = "10.199.0.2"\nport = 22\nuser = "root"\n', "")
    refused(tmp_path, 'host = "10.0.0.1"\n' + text, key="host", reason="must be a table")


def test_missing_host(tmp_path):
    text = GOOD.replace('[host]\naddress = "10.199.0.2"\nport = 22\nuser = "root"\n', "")
    refused(tmp_path, text, key="host", reason="missing [host]")


def test_missing_host_address(tmp_path):
    refused(tmp_path, GOOD.replace('address = "10.199.0.2"\n', ""), key="host.address",
            reason="no host address")


@pytest.mark.parametrize("old,new,key,reason", [
    ('address = "10.199.0.2"', 'address = "bad host!"', "host.address", "not a hostname or IP"),
    ('port = 22', 'port = 70000', "host.port", "outside 1-65535"),
    ('user = "root"', 'user = "Root User"', "host.user", "not a valid user name"),
    ('region = "RegionOne"', 'region = "a b"', "openstack.region", "not a valid region"),
    ('services = ["mariadb", "rabbitmq", "memcached", "keystone", "glance"]',
     'services = ["glance", "swift"]', "openstack.services", "unknown service(s) swift"),
    ('services = ["mariadb", "rabbitmq", "memcached", "keystone", "glance"]',
     'services = ["keystone", "memcached"]', "openstack.services", "keystone needs mariadb"),
    ('disk_format = "qcow2"', 'disk_format = "zip"', "image.disk_format", "'zip' is not one of"),
    ('url = "https://example.org/cirros.img"', 'url = "ftp://x/y"', "image.url", "not an http"),
    ('user = "root"', 'user = "root"\nkey_file = "/nonexistent/key"', "host.key_file",
     "does not exist"),
])
def test_invalid_values(tmp_path, old, new, key, reason):
    assert old in GOOD
    refused(tmp_path, GOOD.replace(old, new), key=key, reason=reason)


def test_huge_file(tmp_path):
    text = GOOD + "".join(f"# padding line {i} {'x' * 80}\n" for i in range(13000))
    assert len(text) > 1_000_000
    refused(tmp_path, text, key=None, reason="a profile is at most")


def test_binary_file(tmp_path):
    refused(tmp_path, b"\x7fELF\x02\x01\x01\x00\x00\x00" + os.urandom(2000), key=None,
            reason="binary file")


def test_not_utf8(tmp_path):
    refused(tmp_path, GOOD.encode() + b"# caf\xe9\n", key=None, reason="not UTF-8")


def test_version_newer(tmp_path):
    refused(tmp_path, GOOD.replace("version = 1", "version = 7"), key="version",
            reason="profile version 7 is newer")


@pytest.mark.parametrize("v", ["0", "-3"])
def test_version_not_positive(tmp_path, v):
    refused(tmp_path, GOOD.replace("version = 1", f"version = {v}"), key="version",
            reason=f"profile version {v} is not valid")


def test_version_missing(tmp_path):
    refused(tmp_path, GOOD.replace("version = 1\n", ""), key="version", reason="missing 'version'")


def test_unknown_inline_secret(tmp_path):
    refused(tmp_path, GOOD + '[secrets]\nroot_password = "x"\n', key="secrets.root_password",
            reason="unknown secret 'root_password'")


def test_missing_profile_name(home):
    with pytest.raises(ProfileError, match="no such profile"):
        pr.load("does-not-exist")


def test_invalid_profile_name():
    with pytest.raises(ProfileError, match="not a valid profile name"):
        pr.profile_path("bad name!")


def test_broken_profile_in_config_dir_not_overwritten(home):
    path = pr.paths.profiles_dir() / "broken.toml"
    path.write_text("version = 1\n[host\n")
    before = path.read_bytes()
    with pytest.raises(ProfileError) as ei:
        pr.load("broken")
    assert str(path) in str(ei.value)
    assert "broken" in pr.list_profiles()
    assert path.read_bytes() == before


# --------------------------------------------------------------------------- good profiles


def hostile_profile(name="rt") -> Profile:
    p = Profile(name=name)
    p.host.address = "server-1.example.org"
    p.host.port = 2222
    p.host.user = "deploy_er"
    p.openstack.region = "Region-Two"
    p.openstack.endpoint_host = "10.0.0.9"
    p.openstack.services = ["mariadb", "memcached", "keystone"]
    p.openstack.demo = False
    p.openstack.platform = "ubuntu-24.04"
    p.openstack.fix_hosts = False
    p.image.name = 'Ci"r\\r\'os ü #1 [x] = y'
    p.image.url = "https://example.org/a b/c?d=\"e\""
    p.image.disk_format = "raw"
    return p


def test_round_trip(home):
    p = hostile_profile()
    path = pr.save(p)
    assert path == pr.paths.profiles_dir() / "rt.toml"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    q = pr.load("rt")
    assert q.to_dict() == p.to_dict()
    assert q.name == "rt" and q.path == path
    assert q.inline_secrets == {}
    # Saving the loaded profile again gives the same bytes.
    text = path.read_bytes()
    pr.save(q)
    assert path.read_bytes() == text
    assert pr.list_profiles() == ["rt"]


def test_round_trip_by_path(tmp_path):
    p = hostile_profile()
    target = tmp_path / "elsewhere" / "site.toml"
    pr.save(p, path=target)
    q = pr.load(str(target))
    assert q.name == "site" and q.to_dict() == p.to_dict()


def test_save_refuses_invalid_profile(home):
    p = hostile_profile()
    p.host.address = ""
    with pytest.raises(ProfileError, match="host.address"):
        pr.save(p)
    assert pr.list_profiles() == []


def test_delete_removes_secrets_file_too(home):
    p = hostile_profile("gone")
    path = pr.save(p)
    write_secrets_file(p.secrets_file, {"admin_password": "Abcdef123456"})
    assert p.secrets_file.exists()
    assert pr.list_profiles() == ["gone"]      # the secrets file is not a profile
    assert pr.delete("gone")
    assert not path.exists() and not p.secrets_file.exists()
    assert not pr.delete("gone")


# --------------------------------------------------------------------------- secrets


def test_secrets_precedence_env_over_profile_over_file(tmp_path):
    path = tmp_path / "site.toml"
    path.write_text(GOOD + '[secrets]\nadmin_password = "from-profile-A1"\n'
                           'demo_password = "from-profile-D1"\n')
    prof = pr.load(path)
    write_secrets_file(prof.secrets_file, {"admin_password": "from-file-A1",
                                           "demo_password": "from-file-D1",
                                           "glance_password": "from-file-G1"})
    env = {env_name("admin_password"): "from-env-A1"}
    s = pr.load_secrets(prof, env=env)
    assert s.values["admin_password"] == "from-env-A1" and s.sources["admin_password"] == "env"
    assert s.values["demo_password"] == "from-profile-D1" and s.sources["demo_password"] == "profile"
    assert s.values["glance_password"] == "from-file-G1" and s.sources["glance_password"] == "file"
    assert "rabbit_password" not in s.values
    # An empty environment variable does not count.
    s = pr.load_secrets(prof, env={env_name("admin_password"): ""})
    assert s.values["admin_password"] == "from-profile-A1"


def test_secrets_env_from_process_environment(tmp_path, monkeypatch):
    path = tmp_path / "site.toml"
    path.write_text(GOOD)
    monkeypatch.setenv("STACK_TUI_SUDO_PASSWORD", "sudo pw ' \" $x")
    s = pr.load_secrets(pr.load(path))
    assert s.values["sudo_password"] == "sudo pw ' \" $x" and s.sources["sudo_password"] == "env"


def test_missing_secrets_generated_saved_beside_profile_not_in_profile(tmp_path):
    path = tmp_path / "site.toml"
    path.write_text(GOOD + '[secrets]\nadmin_password = "inline-Admin-1"\n')
    profile_bytes = path.read_bytes()
    prof = pr.load(path)
    s = pr.load_secrets(prof, env={})
    made = s.ensure(prof.needed_secrets())
    assert sorted(made) == sorted(set(prof.needed_secrets()) - {"admin_password"})
    assert "ssh_password" not in s.values and "sudo_password" not in s.values
    secrets_file = tmp_path / "site.secrets.toml"
    assert prof.secrets_file == secrets_file and secrets_file.exists()
    assert stat.S_IMODE(secrets_file.stat().st_mode) == 0o600
    saved = read_secrets_file(secrets_file)
    assert sorted(saved) == sorted(made)          # the inline one stays only in the profile
    for name in made:
        v = saved[name]
        assert v == s.values[name] and len(v) >= 20 and validate(name, v) is None
        assert v.encode() not in path.read_bytes()
    assert path.read_bytes() == profile_bytes
    assert len(set(saved.values())) == len(saved)  # all different
    # A second load finds them in the file and generates nothing new.
    s2 = pr.load_secrets(pr.load(path), env={})
    assert s2.ensure(prof.needed_secrets()) == []
    assert {k: s2.values[k] for k in made} == saved
    assert all(s2.sources[k] == "file" for k in made)


def test_generated_secrets_never_for_ssh_or_sudo():
    s = Secrets()
    assert s.ensure(list(SECRET_NAMES), save=False) == list(GENERATABLE)
    assert "ssh_password" not in s.values and "sudo_password" not in s.values


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_secrets_file_loose_mode_refused_like_openssh(tmp_path, mode):
    path = tmp_path / "site.toml"
    path.write_text(GOOD)
    prof = pr.load(path)
    write_secrets_file(prof.secrets_file, {"admin_password": "Abcdef123456"})
    os.chmod(prof.secrets_file, mode)
    with pytest.raises(ProfileError) as ei:
        pr.load_secrets(prof, env={})
    msg = str(ei.value)
    assert str(prof.secrets_file) in msg and "too open" in msg
    assert f"chmod 600 {prof.secrets_file}" in msg and "Abcdef123456" not in msg
    assert stat.S_IMODE(prof.secrets_file.stat().st_mode) == mode   # never chmodded behind the user's back


def test_broken_secrets_file_is_a_clear_error(tmp_path):
    path = tmp_path / "site.toml"
    path.write_text(GOOD)
    prof = pr.load(path)
    for content, reason in (('admin_password = "x\nbroken', "not a valid secrets file"),
                            ('root_password = "x"\n', "unknown secret 'root_password'"),
                            ('admin_password = 3\n', "must be a string")):
        prof.secrets_file.write_text(content)
        prof.secrets_file.chmod(0o600)
        with pytest.raises(ProfileError) as ei:
            pr.load_secrets(prof, env={})
        assert reason in str(ei.value) and str(prof.secrets_file) in str(ei.value)
        assert prof.secrets_file.read_text() == content


@pytest.mark.parametrize("bad", ["a\nb", "tab\there", "nul\x00", "del\x7f", "esc\x1b[31m", "cr\r"])
def test_validate_rejects_control_characters(bad):
    assert "control character" in validate("admin_password", bad)
    p = hostile_profile()
    p.inline_secrets = {"admin_password": bad}
    with pytest.raises(ProfileError) as ei:
        p.validate()
    assert ei.value.key == "secrets.admin_password"
    assert "control character" in str(ei.value)


def test_control_characters_from_env_rejected(tmp_path):
    path = tmp_path / "site.toml"
    path.write_text(GOOD)
    with pytest.raises(ProfileError, match="control character") as ei:
        pr.load_secrets(pr.load(path), env={env_name("admin_password"): "a\tb"})
    assert "from env" in str(ei.value) and ei.value.key == "secrets.admin_password"


def test_inline_secret_with_control_char_refused_on_load(tmp_path):
    refused(tmp_path, GOOD + '[secrets]\nadmin_password = "a\\u0007b"\n',
            key="secrets.admin_password", reason="control character")


def test_validate_accepts_printable_hostile_values():
    hostile = "p'a\"s$s\\`w;o#r d ü$(touch /tmp/pwned)"
    assert validate("admin_password", hostile) is None
    assert validate("sudo_password", hostile) is None
    assert "Latin-1" in validate("keystone_db_password", "snow ☃")
    assert "'%'" in validate("glance_db_password", "50%off")


def test_keystone_passwords_fit_bcrypt():
    # 72 bytes count for bcrypt: a longer Keystone password is refused naming the key
    assert validate("admin_password", "x" * 72) is None
    assert validate("demo_password", "ü" * 36) is None          # 72 bytes in UTF-8
    why = validate("glance_password", "ü" * 37)
    assert why.startswith("glance_password ") and "72 bytes" in why
    assert validate("rabbit_password", "x" * 200) is None       # not a Keystone password


def test_secrets_file_round_trip_hostile(tmp_path):
    values = {"admin_password": "p'a\"s$s\\`w;o#r d ü$(touch /tmp/pwned)",
              "demo_password": "[table] = \"x\" # y \\u0041"}
    f = tmp_path / "x.secrets.toml"
    write_secrets_file(f, values)
    assert read_secrets_file(f) == values
    assert tomllib.loads(f.read_text())["version"] == 1


def test_saving_keeps_the_users_comments_and_key_order(tmp_path):
    """A profile written by hand, loaded, changed and saved (as the screens do) keeps what the
    person wrote: comments, blank lines, key order; only the changed value differs."""
    path = tmp_path / "lab.toml"
    path.write_text('''# my lab: the box under the desk
version = 1

[host]
# behind the VPN
port = 22   # sshd
address = "192.0.2.10"

[openstack]
services = ["mariadb", "rabbitmq", "memcached", "keystone", "glance"]
region = "RegionOne"  # only one region

[image]
url = "https://example.org/cirros.img"
''')
    prof = pr.load(path)
    prof.host.address = "192.0.2.11"
    prof.openstack.region = "RegionTwo"
    pr.save(prof)
    text = path.read_text()
    for kept in ("# my lab: the box under the desk", "# behind the VPN", "port = 22   # sshd",
                 'url = "https://example.org/cirros.img"'):
        assert kept in text
    assert 'address = "192.0.2.11"' in text and '"192.0.2.10"' not in text
    assert 'region = "RegionTwo"  # only one region' in text
    assert text.index("port = 22") < text.index("address =")   # the user's order, not ours
    assert pr.load(path).host.address == "192.0.2.11"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_secrets_file_keeps_its_comments(tmp_path):
    f = tmp_path / "x.secrets.toml"
    write_secrets_file(f, {"admin_password": "first-Pass-1"})
    f.write_text(f.read_text() + "# rotated every quarter\n")
    write_secrets_file(f, {"admin_password": "second-Pass-2", "demo_password": "d'\"$x"})
    assert "# rotated every quarter" in f.read_text()
    assert read_secrets_file(f) == {"admin_password": "second-Pass-2", "demo_password": "d'\"$x"}
    assert stat.S_IMODE(f.stat().st_mode) == 0o600


def test_the_platform_choices_are_the_known_platforms():
    from tui.tasks import platforms, profile as pr

    assert pr.PLATFORMS == ("auto", *platforms.PLATFORMS)
    for pid in pr.PLATFORMS:
        p = pr.Profile(name="t")
        p.host.address = "10.0.0.9"
        p.openstack.platform = pid
        assert not [e for e in pr.validation_errors(p) if e[0] == "openstack.platform"]
    p.openstack.platform = "gentoo-1"
    assert [m for k, m in pr.validation_errors(p) if k == "openstack.platform"] == [
        "'gentoo-1' is not one of " + ", ".join(pr.PLATFORMS)]
