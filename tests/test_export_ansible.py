"""`stack-tui export ansible`: the tree it writes, the inventory, the secrets kept out of
every file (environment lookups, or a vault file encrypted with the user's password), the
file modes, and the refusals.  The playbook itself runs in tests/e2e/test_ansible_e2e.py."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
import yaml

from tests.test_cli import run, saved_profile
from tui.tasks.export import ansible as exp
from tui.tasks.export import vault
from tui.tasks.profile import HostConfig, Profile

# Hostile but valid: quotes, $(), backticks, %, Jinja delimiters, YAML and INI specials.
HOSTILE = {
    "admin_password": "Ad'm\"in $(id) % {{ x }} \\`;# : -",
    "demo_password": "de'mo\"$(touch /tmp/pwned) %s ;# {%",
    "keystone_db_password": "ks'db\"$PATH\\`;# @x [a]",
    "glance_db_password": "gl'db\"$1 \\ `x`;# {{ y",
    "glance_password": "gl'an\"ce $$ % \\ ;# @ !unsafe",
    "rabbit_password": "ra'bb\"it $USER %d \\`;# &a *b",
}


class Loader(yaml.SafeLoader):
    pass


Loader.add_constructor("!unsafe", lambda loader, node: loader.construct_scalar(node))


def one_host(tmp_path: Path) -> Profile:
    img = tmp_path / "cirros.img"
    img.write_bytes(b"\0" * 1024)
    p = Profile("one")
    p.host.address, p.host.key_file, p.host.port = "10.9.0.2", str(tmp_path / "id"), 2222
    p.image.file = str(img)
    return p


def three_hosts(tmp_path: Path) -> Profile:
    p = one_host(tmp_path)
    p.hosts = [HostConfig(name="ctl", address="10.9.0.2", roles=["controller"],
                          mgmt_address="192.168.50.2", user="debian"),
               HostConfig(name="cmp1", address="10.9.0.3", roles=["compute"],
                          mgmt_address="192.168.50.3"),
               HostConfig(name="cmp2", address="10.9.0.4", roles=["compute"], port=2200)]
    return p


def all_text(dest: Path) -> str:
    return "\n".join(p.read_text(errors="replace") for p in dest.rglob("*") if p.is_file())


def test_tree_and_every_yaml_parses(tmp_path):
    dest = tmp_path / "out"
    written = exp.export(one_host(tmp_path), dest)
    rel = {str(p.relative_to(dest)) for p in written}
    for want in ("ansible.cfg", "inventory.yml", "site.yml", "group_vars/all/main.yml",
                 "group_vars/all/secrets.yml", "filter_plugins/stack_tui.py",
                 "roles/prepare/tasks/main.yml", "roles/mariadb/handlers/main.yml",
                 "roles/rabbitmq/tasks/main.yml", "roles/memcached/tasks/main.yml",
                 "roles/keystone/templates/keystone-vhost.conf.j2",
                 "roles/glance/tasks/main.yml", "roles/finish/templates/demo-openrc.sh.j2"):
        assert want in rel
    for p in dest.rglob("*.yml"):
        assert yaml.load(p.read_text(), Loader=Loader) is not None, p
    play = yaml.safe_load((dest / "site.yml").read_text())[0]
    assert play["roles"] == ["prepare", "mariadb", "rabbitmq", "memcached", "keystone",
                             "glance", "finish"]
    assert play["hosts"] == "controller"
    assert play["timeout"] == 1800   # no task waits forever on the host
    assert "host_key_checking" not in (dest / "ansible.cfg").read_text()


def test_inventory_one_host(tmp_path):
    dest = tmp_path / "out"
    exp.export(one_host(tmp_path), dest)
    inv = yaml.safe_load((dest / "inventory.yml").read_text())["all"]["children"]
    h = inv["controller"]["hosts"][Profile("x").host.name]
    assert h == {"ansible_host": "10.9.0.2", "ansible_port": 2222, "ansible_user": "root",
                 "stack_tui_mgmt_address": "10.9.0.2",
                 "ansible_ssh_private_key_file": str(tmp_path / "id")}
    assert inv["compute"]["hosts"] == {Profile("x").host.name: h}  # one host does both


def test_inventory_three_hosts(tmp_path):
    dest = tmp_path / "out"
    exp.export(three_hosts(tmp_path), dest)
    inv = yaml.safe_load((dest / "inventory.yml").read_text())["all"]["children"]
    assert list(inv["controller"]["hosts"]) == ["ctl"]
    assert list(inv["compute"]["hosts"]) == ["cmp1", "cmp2"]
    assert inv["controller"]["hosts"]["ctl"]["stack_tui_mgmt_address"] == "192.168.50.2"
    assert inv["controller"]["hosts"]["ctl"]["ansible_user"] == "debian"
    assert inv["compute"]["hosts"]["cmp2"]["ansible_port"] == 2200
    assert inv["compute"]["hosts"]["cmp2"]["stack_tui_mgmt_address"] == "10.9.0.4"
    play = yaml.safe_load((dest / "site.yml").read_text())[0]
    assert play["become"] is True   # not root on the controller


def test_host_keys_checked_never_disabled(tmp_path):
    dest = tmp_path / "out"
    exp.export(one_host(tmp_path), dest)
    args = yaml.safe_load((dest / "group_vars/all/main.yml").read_text())[
        "ansible_ssh_common_args"]
    assert "StrictHostKeyChecking=yes" in args and "known_hosts" in args
    assert "host_key_checking" not in all_text(dest).lower()


def test_no_secret_in_env_mode_files(tmp_path, monkeypatch):
    for k, v in HOSTILE.items():
        monkeypatch.setenv(f"STACK_TUI_{k.upper()}", v)
    dest = tmp_path / "out"
    exp.export(one_host(tmp_path), dest)
    text = all_text(dest)
    for v in HOSTILE.values():
        assert v not in text
    sec = yaml.safe_load((dest / "group_vars/all/secrets.yml").read_text())
    assert sec["stack_tui_admin_password"] == "{{ lookup('env', 'STACK_TUI_ADMIN_PASSWORD') }}"
    assert set(sec) == {f"stack_tui_{n}" for n in HOSTILE}


def test_vault_mode_encrypts_secrets_0600(tmp_path):
    dest = tmp_path / "out"
    exp.export(one_host(tmp_path), dest, secrets=HOSTILE, vault_password="pw 'x'")
    text = all_text(dest)
    for v in HOSTILE.values():
        assert v not in text
    f = dest / "group_vars/all/vault.yml"
    assert stat.S_IMODE(f.stat().st_mode) == 0o600
    assert not (dest / "group_vars/all/secrets.yml").exists()
    plain = vault.decrypt(f.read_text(), "pw 'x'")
    assert "!unsafe" in plain   # Ansible never templates a password holding "{{"
    data = yaml.load(plain, Loader=Loader)
    assert data == {f"stack_tui_{k}": v for k, v in HOSTILE.items()}
    with pytest.raises(ValueError, match="wrong vault password"):
        vault.decrypt(f.read_text(), "other")


def handles_secret(task: dict) -> bool:
    """A task that reads a secret's value, or talks to Keystone as admin (module_defaults)."""
    if "ansible.builtin.assert" in task:   # checks a secret is set: never shows it
        return False
    body = yaml.safe_dump(task)
    return any(f"stack_tui_{n}" in body for n in HOSTILE) or "lookup('vars'" in body or \
        any(k.startswith("openstack.cloud.") for k in task)


def test_force_over_the_other_kind_leaves_one_secrets_file(tmp_path):
    dest = tmp_path / "out"
    exp.export(one_host(tmp_path), dest, secrets=HOSTILE, vault_password="pw")
    exp.export(one_host(tmp_path), dest, force=True)
    assert not (dest / "group_vars/all/vault.yml").exists()
    exp.export(one_host(tmp_path), dest, force=True, secrets=HOSTILE, vault_password="pw")
    assert not (dest / "group_vars/all/secrets.yml").exists()
    assert (dest / "group_vars/all/vault.yml").exists()


def test_secret_tasks_are_no_log(tmp_path):
    dest = tmp_path / "out"
    exp.export(one_host(tmp_path), dest)
    seen = 0
    for p in (dest / "roles").rglob("tasks/main.yml"):
        for task in yaml.safe_load(p.read_text()):
            for t in task.get("block", [task]):
                if handles_secret(t):
                    seen += 1
                    assert t.get("no_log") is True, (p, t["name"])
    assert seen >= 15


def test_config_values_use_the_engines_quoting(tmp_path):
    dest = tmp_path / "out"
    exp.export(one_host(tmp_path), dest)
    ks = yaml.safe_load((dest / "roles/keystone/tasks/main.yml").read_text())
    secret = next(t for t in ks if t["name"] == "keystone.conf: settings that hold a password")
    assert secret["loop"][0]["value"].startswith(
        "mysql+pymysql://keystone:{{ stack_tui_keystone_db_password | stack_tui_db_url_password }}@")
    ns: dict = {}
    exec((dest / "filter_plugins/stack_tui.py").read_text(), ns)
    from tui.tasks import inifile

    f = ns["FilterModule"]().filters()
    for v in HOSTILE.values():
        assert f["stack_tui_oslo_value"](v) == inifile.oslo_value(v)
    assert f["stack_tui_db_url_password"]("a@b$c") == "a%40b$$c"


def test_modes_of_written_files(tmp_path):
    dest = tmp_path / "out"
    for p in exp.export(one_host(tmp_path), dest):
        assert stat.S_IMODE(p.stat().st_mode) == 0o644, p


def test_refuses_uncovered_services_naming_them(tmp_path):
    p = one_host(tmp_path)
    p.openstack.services = [*p.openstack.services, "placement", "neutron", "nova", "horizon"]
    with pytest.raises(exp.ExportError) as err:
        exp.export(p, tmp_path / "out")
    assert "does not cover horizon yet" in err.value.text()
    assert "placement" not in err.value.text().split("covers")[0]
    assert not (tmp_path / "out").exists()


def test_refuses_other_platform_and_missing_image_file(tmp_path):
    p = one_host(tmp_path)
    p.openstack.platform = "debian-12"
    p.image.file = str(tmp_path / "nowhere.img")
    text = "; ".join(exp.refusals(p))
    assert "debian-12" in text and "nowhere.img does not exist" in text


def test_url_image_is_downloaded_on_this_machine_then_copied(tmp_path):
    p = one_host(tmp_path)
    p.image.file, p.image.url = None, "https://example.org/x.img"
    dest = tmp_path / "out"
    exp.export(p, dest)
    tasks = yaml.safe_load((dest / "roles/glance/tasks/main.yml").read_text())
    get = next(t for t in tasks if "ansible.builtin.get_url" in t)
    assert get["delegate_to"] == "localhost" and get["run_once"] is True
    assert get["ansible.builtin.get_url"]["url"] == "https://example.org/x.img"
    copy = next(t for t in tasks if t["name"] == "Copy the image to the host")
    assert copy["ansible.builtin.copy"]["src"] == get["ansible.builtin.get_url"]["dest"]
    img = next(t for t in tasks if "openstack.cloud.image" in t)["openstack.cloud.image"]
    assert img["filename"] == copy["ansible.builtin.copy"]["dest"]


def test_refuses_non_empty_dir_unless_force(tmp_path):
    dest = tmp_path / "out"
    dest.mkdir()
    (dest / "mine.txt").write_text("keep")
    with pytest.raises(exp.ExportError, match="not empty"):
        exp.export(one_host(tmp_path), dest)
    exp.export(one_host(tmp_path), dest, force=True)
    assert (dest / "site.yml").exists() and (dest / "mine.txt").read_text() == "keep"


# ------------------------------------------------------------------------ command line

def cli_profile(home: Path, tmp_path: Path, extra: str = "") -> None:
    img = tmp_path / "c.img"
    img.write_bytes(b"x")
    saved_profile(home, "exp", f"""version = 2
[[hosts]]
name = "openstack"
roles = ["controller", "compute"]
address = "10.9.0.2"
[openstack]
{extra}
[image]
file = "{img}"
""")


def test_cli_writes_and_prints_the_command(tmp_path):
    home = tmp_path / "home"
    cli_profile(home, tmp_path)
    r = run(home, "export", "ansible", "exp", str(tmp_path / "out"))
    assert r.returncode == 0, r.stderr
    assert "site.yml" in r.stdout and "inventory.yml" in r.stdout
    assert f"cd {(tmp_path / 'out').resolve()} && ansible-playbook site.yml" in r.stdout
    assert "STACK_TUI_ADMIN_PASSWORD" in r.stdout
    r = run(home, "export", "ansible", "exp", str(tmp_path / "out"))
    assert r.returncode == 1 and "is not empty" in r.stderr and "--force" in r.stderr
    assert "Traceback" not in r.stderr


def test_cli_vault_mode(tmp_path):
    home = tmp_path / "home"
    cli_profile(home, tmp_path)
    pw = tmp_path / "pw"
    pw.write_text("vault-pass\n")
    env = {f"STACK_TUI_{k.upper()}": v for k, v in HOSTILE.items()
           if k not in ("keystone_db_password",)}  # generated: saved beside the profile
    r = run(home, "export", "ansible", "exp", str(tmp_path / "out"),
            "--vault-password-file", str(pw), env=env)
    assert r.returncode == 0, r.stderr
    assert "--vault-password-file" in r.stdout
    data = yaml.load(vault.decrypt((tmp_path / "out/group_vars/all/vault.yml").read_text(),
                                   "vault-pass"), Loader=Loader)
    assert data["stack_tui_admin_password"] == HOSTILE["admin_password"]
    assert len(data["stack_tui_keystone_db_password"]) >= 16
    for v in HOSTILE.values():
        assert v not in r.stdout + r.stderr


def test_cli_refuses_uncovered_service(tmp_path):
    home = tmp_path / "home"
    cli_profile(home, tmp_path, 'services = ["mariadb", "rabbitmq", "memcached", "keystone", '
                                '"glance", "horizon"]')
    r = run(home, "export", "ansible", "exp", str(tmp_path / "out"))
    assert r.returncode == 1
    assert "does not cover horizon" in r.stderr and "Traceback" not in r.stderr
    assert not os.path.exists(tmp_path / "out")


def test_cli_help(tmp_path):
    r = run(tmp_path, "export", "ansible", "--help")
    assert r.returncode == 0 and "--vault-password-file" in r.stdout and "--force" in r.stdout
    r = run(tmp_path, "export")
    assert r.returncode == 2 and "ansible" in r.stderr
