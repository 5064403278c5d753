"""Hardening: hostile values in profile fields are refused before they reach a config file
or a shell line, and every config writer refuses a line break as a last line of defence."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from tui.tasks import inifile
from tui.tasks import profile as pr
from tui.tasks.engine import StepError
from tui.tasks.profile import Profile, ProfileError
from tui.tasks.secrets import SECRET_NAMES


@pytest.fixture(autouse=True)
def home(isolated_home):
    return isolated_home


def good_profile(tmp_path) -> Profile:
    img = tmp_path / "cirros.img"
    img.write_bytes(b"QFI\xfb")
    key = tmp_path / "id_ed25519"
    key.write_text("not really a key\n")
    p = Profile(name="site")
    p.host.address, p.host.user, p.host.key_file = "10.0.0.5", "deploy", str(key)
    p.openstack.endpoint_host = "fe80::1%eth0"
    p.image.file = str(img)
    p.validate()
    return p


CONTROLS = ["\n", "\r", "\t", "\0"]

# (dotted key, how to set it, a good value the control character is added to)
FIELDS = [
    ("host.address", lambda p, v: setattr(p.host, "address", v), "server.example.org"),
    ("host.address", lambda p, v: setattr(p.host, "address", v), "10.0.0.5"),
    ("host.address", lambda p, v: setattr(p.host, "address", v), "fe80::1%eth0"),
    ("host.user", lambda p, v: setattr(p.host, "user", v), "deploy"),
    ("host.key_file", lambda p, v: setattr(p.host, "key_file", v), "~/.ssh/id_ed25519"),
    ("openstack.region", lambda p, v: setattr(p.openstack, "region", v), "RegionOne"),
    ("openstack.endpoint_host", lambda p, v: setattr(p.openstack, "endpoint_host", v), "ctl.example"),
    ("openstack.endpoint_host", lambda p, v: setattr(p.openstack, "endpoint_host", v), "fe80::1%eth0"),
    ("openstack.platform", lambda p, v: setattr(p.openstack, "platform", v), "debian-13"),
    ("openstack.services", lambda p, v: p.openstack.services.__setitem__(-1, v), "glance"),
    ("image.name", lambda p, v: setattr(p.image, "name", v), "cirros"),
    ("image.file", lambda p, v: setattr(p.image, "file", v), "/tmp/cirros.img"),
    ("image.url", lambda p, v: (setattr(p.image, "file", None), setattr(p.image, "url", v)),
     "https://example.org/cirros.img"),
    ("image.disk_format", lambda p, v: setattr(p.image, "disk_format", v), "qcow2"),
    ("image.container_format", lambda p, v: setattr(p.image, "container_format", v), "bare"),
    ("image.visibility", lambda p, v: setattr(p.image, "visibility", v), "public"),
]


@pytest.mark.parametrize("ch", CONTROLS, ids=["LF", "CR", "TAB", "NUL"])
@pytest.mark.parametrize("key,setter,good", FIELDS, ids=[f"{k}={g}" for k, _, g in FIELDS])
@pytest.mark.parametrize("where", ["end", "middle"])
def test_every_validated_field_refuses_control_characters(tmp_path, key, setter, good, ch, where):
    p = good_profile(tmp_path)
    value = good + ch if where == "end" else good[:2] + ch + good[2:]
    setter(p, value)
    with pytest.raises(ProfileError) as ei:
        p.validate()
    assert ei.value.key == key, str(ei.value)
    assert ch not in str(ei.value)      # the message shows it escaped, never raw


@pytest.mark.parametrize("value", [
    "fe80::1%eth0 x", "fe80::1%eth0\n", "fe80::1%$(id)", "fe80::1%`id`", "fe80::1%a;b",
    "fe80::1%'a'", 'fe80::1%"a"', "fe80::1%", "fe80::1%eth0%eth1", "fe80::1%a/b",
    "fe80::1%\x1b[31m", "10.0.0.1%eth0", "host name", "host$x", "host;x", "`host`",
    "'host'", "host\\x", "host\n", "\nhost", "10.0.0.1\n", "10.0.0.1 ", " 10.0.0.1",
])
@pytest.mark.parametrize("field", ["address", "endpoint_host"])
def test_host_fields_refuse_shell_and_config_characters(tmp_path, value, field):
    p = good_profile(tmp_path)
    if field == "address":
        p.host.address = value
    else:
        p.openstack.endpoint_host = value
    with pytest.raises(ProfileError) as ei:
        p.validate()
    assert ei.value.key == ("host.address" if field == "address" else "openstack.endpoint_host")


@pytest.mark.parametrize("value", ["fe80::1%eth0", "fe80::1%enp0s31f6", "fe80::1%br-lan.10",
                                   "fe80::1%3", "::1", "10.0.0.5", "ctl-1.example.org"])
def test_host_fields_accept_real_hosts_and_zones(tmp_path, value):
    p = good_profile(tmp_path)
    p.host.address = p.openstack.endpoint_host = value
    p.validate()
    pr.save(p)
    q = pr.load("site")
    assert q.host.address == value and q.openstack.endpoint_host == value


@pytest.mark.parametrize("line", [
    'region = "RegionOne\\n"', 'region = "RegionOne\\r"', 'region = "Region\\tOne"',
    'region = "RegionOne\\u0000"',
])
def test_toml_escapes_reach_validation_and_are_refused(tmp_path, line):
    path = tmp_path / "x.toml"
    path.write_text(f'version = 1\n[host]\naddress = "10.0.0.1"\n[openstack]\n{line}\n')
    with pytest.raises(ProfileError) as ei:
        pr.load(path)
    assert ei.value.key == "openstack.region" and str(path) in str(ei.value)


@pytest.mark.parametrize("name", ["site\n", "site\r", "si\tte", "site\0", "../x", "x/y", ".hidden",
                                  "-rf"])
def test_profile_names_are_full_matches(name):
    with pytest.raises(ProfileError):
        pr.save(Profile(name=name, host=pr.HostConfig(address="10.0.0.1")))
    assert pr.list_profiles() == []


# --------------------------------------------------------------------------- config writers


@pytest.mark.parametrize("bad", ["a\nb", "a\rb", "a\x85b", "a\u2028b", "a\x00b", "a\x0bb"])
def test_inifile_refuses_a_value_with_a_line_break(bad):
    text = "[DEFAULT]\ndebug = false\n"
    with pytest.raises(inifile.UnsafeValue) as ei:
        inifile.set_values(text, {("database", "connection"): bad})
    assert "[database] connection" in str(ei.value) and bad not in str(ei.value)
    with pytest.raises(inifile.UnsafeValue):
        inifile.set_values(text, {("data\nbase", "connection"): "x"})
    with pytest.raises(inifile.UnsafeValue):
        inifile.set_values(text, {("database", "conn\nection"): "x"})


def test_inifile_still_takes_tabs_and_printable_hostile_text():
    out = inifile.set_values("", {("a", "b"): "x\ty $(id) `q` ' \" ;"})
    assert inifile.get_value(out, "a", "b") == "x\ty $(id) `q` ' \" ;"


def _ctx(endpoint: str, secret: str = "S3cret-pw"):
    """A context as the keystone and glance config writers see it (no host needed): the
    profile is built without validation, as if something upstream had let a value through."""
    p = Profile(name="x", host=pr.HostConfig(address="10.0.0.5"))
    p.openstack.endpoint_host = endpoint
    p.openstack.platform = "debian-13"
    secrets = {n: secret for n in SECRET_NAMES}
    return SimpleNamespace(profile=p, facts={"platform": "debian-13", "mgmt_address": "10.0.0.5"},
                           secrets=secrets, cache={"host_size": (2, 4 << 20)})


def test_keystone_and_glance_writers_refuse_a_line_break_before_writing():
    from tui.tasks.services import glance, keystone

    ok = _ctx("ctl.example")
    assert "ServerName ctl.example" in dict(keystone._apache_files(ok))[
        "/etc/apache2/conf-available/servername.conf"]
    keystone._keystone_settings(ok)
    glance._glance_settings(ok)
    evil = _ctx("ctl.example\nInclude /etc/shadow")
    for writer in (keystone._apache_files, glance._glance_settings):
        with pytest.raises(StepError) as ei:
            writer(evil)
        assert "line break" in ei.value.why and "Include" not in ei.value.why + ei.value.what
    # a region is a config value too (keystone_authtoken region_name)
    bad_region = _ctx("ctl.example")
    bad_region.profile.openstack.region = "RegionOne\nadmin_token = x"
    with pytest.raises(StepError) as ei:
        glance._glance_settings(bad_region)
    assert "[keystone_authtoken] region_name" in ei.value.why and GLANCE in ei.value.what


GLANCE = "/etc/glance/glance-api.conf"


@pytest.mark.parametrize("where", ["", "[host]\n", "[secrets]\n"])
def test_an_unknown_key_with_control_characters_is_shown_escaped(tmp_path, where):
    path = tmp_path / "x.toml"
    body = 'version = 1\n[host]\naddress = "10.0.0.1"\n'
    if where == "[host]\n":
        body += '"evil\\u001b[2J\\nkey" = 1\n'
    else:
        body = (body + where if where else '"evil\\u001b[2J\\nkey" = 1\n' + body)
        if where:
            body += '"evil\\u001b[2J\\nkey" = "x"\n'
    path.write_text(body)
    with pytest.raises(ProfileError) as ei:
        pr.load(path)
    msg = str(ei.value)
    assert "unknown" in msg and "evil" in msg and "\x1b" not in msg and "\n" not in msg
