"""Config edits change only our keys and keep everything else; plans per platform."""

from __future__ import annotations

import configparser

from tui.tasks import inifile
from tui.tasks.platforms import PLATFORMS, detect
from tui.tasks.services import all_packages, glance

ORIGINAL = """# keystone.conf shipped by the distribution
[DEFAULT]
# log_dir = /var/log/keystone
debug = false

[database]
# The SQLAlchemy connection string
#connection = <None>
connection = sqlite:////var/lib/keystone/keystone.db
max_retries = 10

[token]
#provider = fernet
expiration = 3600
"""


def test_set_values_changes_only_owned_keys_and_keeps_comments():
    new = inifile.set_values(ORIGINAL, {
        ("database", "connection"): "mysql+pymysql://keystone:pw@db/keystone",
        ("token", "provider"): "fernet",
        ("cache", "enabled"): "true",
    })
    lines = new.splitlines()
    # every original line but the replaced one survives, in order
    kept = [ln for ln in ORIGINAL.splitlines() if not ln.startswith("connection = sqlite")]
    it = iter(lines)
    assert all(any(ln == other for other in it) for ln in kept)
    # the new key sits right after its commented default
    assert lines[lines.index("#provider = fernet") + 1] == "provider = fernet"
    cp = configparser.RawConfigParser()
    cp.read_string(new)
    assert cp.get("database", "connection") == "mysql+pymysql://keystone:pw@db/keystone"
    assert cp.get("database", "max_retries") == "10"
    assert cp.get("cache", "enabled") == "true"
    assert sum(ln.startswith("connection =") for ln in lines) == 1


def test_set_values_is_idempotent_and_can_remove():
    settings = {("token", "provider"): "fernet", ("DEFAULT", "debug"): None}
    once = inifile.set_values(ORIGINAL, settings)
    assert inifile.set_values(once, settings) == once
    assert "debug = false" not in once
    assert inifile.get_value(once, "token", "provider") == "fernet"


def test_set_values_on_an_empty_file():
    new = inifile.set_values("", {("paste_deploy", "flavor"): "keystone"})
    assert new == "[paste_deploy]\nflavor = keystone\n"


def test_oslo_value_escapes_dollar_and_protects_outer_quotes():
    assert inifile.oslo_value("a$b") == "a$$b"
    assert inifile.oslo_value("'quoted'") == "\"'quoted'\""
    assert inifile.oslo_value(" padded ") == '" padded "'
    assert inifile.oslo_value("plain") == "plain"


def test_diff_is_redacted():
    from tui.tasks.redact import MASK, Redactor

    red = Redactor(["s3cret-pass"])
    old = "[database]\nconnection = x\n"
    new = "[database]\nconnection = mysql://u:s3cret-pass@h/db\n"
    out = "\n".join(inifile.diff(old, new, "/etc/x.conf", red))
    assert "s3cret-pass" not in out and MASK in out and "+connection" in out


def test_detect_platforms_from_os_release():
    deb = 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nID=debian\nVERSION_ID="12"\n'
    assert detect(deb).id == "debian-12"
    assert detect('ID=ubuntu\nVERSION_ID="24.04"\n').id == "ubuntu-24.04"
    assert detect('ID="rocky"\nID_LIKE="rhel centos fedora"\nVERSION_ID="9.4"\n').id == "el9"
    assert detect('ID=debian\nVERSION_ID="11"\n') is None
    assert detect('ID=arch\n') is None


def test_platform_tables_follow_the_notes():
    deb, el9 = PLATFORMS["debian-12"], PLATFORMS["el9"]
    assert deb.repo_setup == () and deb.openstack == "zed" and deb.verified
    assert "--no-install-recommends" in deb.install_cmd(["x"])
    assert any("centos-release-openstack" in c for c in el9.repo_setup)
    assert {"openstack-keystone", "httpd", "python3-mod_wsgi"} <= set(all_packages(el9))
    assert glance.layout(el9).service == "openstack-glance-api" and el9.web_service == "httpd"
    for pid in ("ubuntu-22.04", "ubuntu-24.04"):
        assert any("cloud-archive:" in c for c in PLATFORMS[pid].repo_setup)
        assert not PLATFORMS[pid].verified
