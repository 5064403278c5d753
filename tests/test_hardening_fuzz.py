"""Hardening, fuzz-style: every profile field and every secret gets a list of hostile values.
Each is either refused with a ProfileError naming the key, or saved and loaded back unchanged.
Fast on purpose (a few seconds): no host, no subprocess; the 60 s bound catches a per-character
scan of the 10 MB values without flaking on a busy machine."""

from __future__ import annotations

import os
import time

import pytest

from tui.tasks import profile as pr
from tui.tasks.profile import Profile, ProfileError
from tui.tasks.secrets import (SECRET_NAMES, env_name, read_secrets_file, validate,
                               write_secrets_file)

HUGE = "x" * 10_000_000

HOSTILE = [
    "a\nb", "x\n", "\n", "a\rb", "a\0b", "\t", "\x1b[31mred", "a\u2028b", "'", '"', "a'b\"c",
    "$(touch /tmp/pwned)", "`id`", "a;b", "a b", "#c", "[x]", "a = b", "\\", "${HOME}",
    "fe80::1%eth0", "fe80::1%eth0\n", "fe80::1%$(id)", "fe80::1%`id`", "fe80::1%a b",
    "fe80::1%'x'", "10.0.0.1%eth0", "ü☃", "-rf", HUGE,
]

# dotted key -> (setter, getter)
FIELDS = {
    "host.address": (lambda p, v: setattr(p.host, "address", v), lambda p: p.host.address),
    "host.user": (lambda p, v: setattr(p.host, "user", v), lambda p: p.host.user),
    "host.key_file": (lambda p, v: setattr(p.host, "key_file", v), lambda p: p.host.key_file),
    "openstack.region": (lambda p, v: setattr(p.openstack, "region", v),
                         lambda p: p.openstack.region),
    "openstack.endpoint_host": (lambda p, v: setattr(p.openstack, "endpoint_host", v),
                                lambda p: p.openstack.endpoint_host),
    "openstack.services": (lambda p, v: p.openstack.services.append(v),
                           lambda p: p.openstack.services[-1]),
    "openstack.platform": (lambda p, v: setattr(p.openstack, "platform", v),
                           lambda p: p.openstack.platform),
    "image.name": (lambda p, v: setattr(p.image, "name", v), lambda p: p.image.name),
    "image.file": (lambda p, v: setattr(p.image, "file", v), lambda p: p.image.file),
    "image.url": (lambda p, v: (setattr(p.image, "file", None), setattr(p.image, "url", v)),
                  lambda p: p.image.url),
    "image.disk_format": (lambda p, v: setattr(p.image, "disk_format", v),
                          lambda p: p.image.disk_format),
    "image.container_format": (lambda p, v: setattr(p.image, "container_format", v),
                               lambda p: p.image.container_format),
    "image.visibility": (lambda p, v: setattr(p.image, "visibility", v),
                         lambda p: p.image.visibility),
}


@pytest.fixture(autouse=True)
def home(isolated_home):
    return isolated_home


def base(tmp_path) -> Profile:
    img = tmp_path / "cirros.img"
    img.write_bytes(b"QFI\xfb")
    p = Profile(name="fz", host=pr.HostConfig(address="10.0.0.5"))
    p.image.file = str(img)
    return p


def refused_or_round_trips(p: Profile, key: str, get, value) -> str:
    try:
        pr.save(p)
    except ProfileError as exc:
        assert exc.key == key, (key, str(exc)[:300])
        assert key in str(exc) and len(str(exc)) < 2000
        assert not any(c in str(exc) for c in "\n\r\0\x1b"), str(exc)[:300]
        return "refused"
    q = pr.load(p.path)
    assert get(q) == value and q.to_dict() == p.to_dict(), key
    return "kept"


def test_every_profile_field_refuses_or_round_trips_every_hostile_value(tmp_path):
    t0 = time.monotonic()
    seen = {}
    for key, (setter, get) in FIELDS.items():
        for value in HOSTILE:
            p = base(tmp_path)
            setter(p, value)
            seen[key, value[:20]] = refused_or_round_trips(p, key, get, value)
            p.path = None
    # the hostile-but-harmless text a free-text field may hold is kept, byte for byte
    assert seen["image.name", "$(touch /tmp/pwned)"] == "kept"
    assert seen["image.name", "a'b\"c"] == "kept"
    # and what could break a config line or a shell line in a host field is not
    for value in HOSTILE:
        for key in ("host.address", "openstack.endpoint_host"):
            if value not in ("fe80::1%eth0",):
                assert seen[key, value[:20]] == "refused", (key, value[:20])
    # a bound against a per-character scan of the 10 MB values (minutes), not a timing test
    assert time.monotonic() - t0 < 60


@pytest.mark.parametrize("port", [0, -1, 65536, 10**30])
def test_port_out_of_range_refused(tmp_path, port):
    p = base(tmp_path)
    p.host.port = port
    with pytest.raises(ProfileError) as ei:
        pr.save(p)
    assert ei.value.key == "host.port"


def test_every_secret_refuses_or_round_trips_every_hostile_value(tmp_path):
    t0 = time.monotonic()
    for name in SECRET_NAMES:
        for value in HOSTILE:
            why = validate(name, value)
            # inline in the profile
            p = base(tmp_path)
            p.inline_secrets = {name: value}
            try:
                pr.save(p)
            except ProfileError as exc:
                assert why and exc.key == f"secrets.{name}" and name in str(exc)
                assert value not in str(exc) or len(value) < 2
            else:
                assert why is None
                assert pr.load(p.path).inline_secrets == {name: value}
            # in the secrets file beside it (written as stack-tui writes it: 0600)
            p.inline_secrets = {}
            pr.save(p)
            write_secrets_file(p.secrets_file, {name: value})
            try:
                got = pr.load_secrets(p, env={})
            except ProfileError as exc:
                if value is HUGE:   # refused whole: the file is over its size cap
                    assert str(p.secrets_file) in str(exc) and "bytes" in str(exc)
                else:
                    assert why and exc.key == f"secrets.{name}", str(exc)[:300]
            else:
                assert why is None and got[name] == value
                assert read_secrets_file(p.secrets_file) == {name: value}
            os.unlink(p.secrets_file)
            # from the environment
            if "\0" not in value:
                try:
                    got = pr.load_secrets(p, env={env_name(name): value})
                except ProfileError as exc:
                    assert why and exc.key == f"secrets.{name}" and "from env" in str(exc)
                else:
                    assert why is None and got[name] == value
    # a bound against a per-character scan of the 10 MB values (minutes), not a timing test
    assert time.monotonic() - t0 < 60


@pytest.mark.parametrize("key,line", [
    ("host.address", b'address = "10.0.0.\xff"'),
    ("host.user", b'user = "r\xc3oot"'),
    ("image.name", b'name = "cirr\xe9s"'),
])
def test_non_utf8_bytes_in_the_profile_are_refused_naming_the_key(tmp_path, key, line):
    table, _, field = key.partition(".")
    text = b'version = 1\n[host]\naddress = "10.0.0.1"\n'
    if table == "host":
        text = text.replace(b'address = "10.0.0.1"', line if field == "address"
                            else b'address = "10.0.0.1"\n' + line)
    else:
        text += b"[" + table.encode() + b"]\n" + line + b"\n"
    path = tmp_path / "bad.toml"
    path.write_bytes(text)
    with pytest.raises(ProfileError) as ei:
        pr.load(path)
    assert "not UTF-8" in str(ei.value) and key in str(ei.value) and str(path) in str(ei.value)


def test_non_utf8_bytes_in_the_secrets_file_are_refused_naming_the_key(tmp_path):
    p = base(tmp_path)
    pr.save(p)
    p.secrets_file.write_bytes(b'version = 1\nadmin_password = "pa\xffss"\n')
    p.secrets_file.chmod(0o600)
    with pytest.raises(ProfileError) as ei:
        pr.load_secrets(p, env={})
    assert "not UTF-8" in str(ei.value) and "admin_password" in str(ei.value)
