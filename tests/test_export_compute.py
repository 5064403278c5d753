"""`stack-tui export ansible` for a compute profile (Placement, Neutron, Nova on one host
that is controller and compute): the roles in the engine's order, the engine's own settings
and traps in the tasks, no secret in any written file, no_log on every task that handles one,
and what is still refused.  The playbook itself runs in tests/e2e/test_ansible_e2e.py."""

from __future__ import annotations

import urllib.parse
from pathlib import Path

import pytest
import yaml

from tests.test_export_ansible import HOSTILE as BASE_HOSTILE
from tests.test_export_ansible import Loader, all_text, handles_secret, one_host
from tui.tasks.export import ansible as exp
from tui.tasks.export import source, vault
from tui.tasks.profile import SERVICES, HostConfig

HOSTILE = {
    **BASE_HOSTILE,
    "placement_db_password": "pl'db\"$(id) \\`;# {{ z",
    "placement_password": "pl'ac\"e $HOME % \\ ;# @ {%",
    "neutron_db_password": "ne'db\"$1 \\`;# ]] [[",
    "neutron_password": "ne'ut\"ron $$ %2F / ? & \\ ;# {{",
    "metadata_secret": " me'ta\"data $(reboot) \\`;# {{ x }} ",
    "nova_db_password": "no'db\"$PATH \\`;# }}",
    "nova_password": "no'va\" $USER % @ / : \\ ;# {#",
}


def compute_host(tmp_path: Path):
    p = one_host(tmp_path)
    p.openstack.services = [s for s in SERVICES if s != "horizon"]
    return p


def tasks_of(dest: Path, role: str) -> list[dict]:
    out = []
    for t in yaml.safe_load((dest / f"roles/{role}/tasks/main.yml").read_text()):
        out += t.get("block", [t])
    return out


def script(task: dict) -> str:
    """What a command task runs on the host under its time limit: a shell's script (the
    argument after -c), else the command line."""
    args = task["ansible.builtin.command"]
    args = {"cmd": args} if isinstance(args, str) else args
    argv = args.get("argv") or []
    return argv[argv.index("-c") + 1] if "-c" in argv else args.get("cmd") or " ".join(argv)


def assert_every_command_is_bounded_on_the_host(dest: Path) -> int:
    """Each command of every role's tasks and handlers runs under timeout(1) on the host
    (the play's own timeout does not end it there), and no shell task is left unbounded."""
    seen = 0

    def walk(tasks):
        nonlocal seen
        for t in tasks or []:
            for key in ("block", "rescue", "always"):
                walk(t.get(key))
            assert "ansible.builtin.shell" not in t, t["name"]
            if "ansible.builtin.command" in t:
                args = t["ansible.builtin.command"]
                line = args if isinstance(args, str) else args.get("cmd") or args["argv"]
                words = line.split() if isinstance(line, str) else line
                assert words[0] == "timeout" and words[1] == "-k" and int(words[3]) <= 1800, \
                    t["name"]
                seen += 1

    for f in sorted(dest.glob("roles/*/*/main.yml")):
        if f.parent.name in ("tasks", "handlers"):
            walk(yaml.safe_load(f.read_text()))
    return seen


def ini_keys(dest: Path, role: str, path: str) -> dict:
    """(section, option) -> value of the settings tasks of ``path``."""
    out = {}
    for t in tasks_of(dest, role):
        ini = t.get("community.general.ini_file")
        if ini and ini["path"] == path and "loop" in t:
            out.update({(i["section"], i["option"]): i.get("value") for i in t["loop"]})
    return out


@pytest.fixture
def exported(tmp_path, monkeypatch):
    for k, v in HOSTILE.items():
        monkeypatch.setenv(f"STACK_TUI_{k.upper()}", v)
    dest = tmp_path / "out"
    exp.export(compute_host(tmp_path), dest)
    return dest


def test_roles_in_the_engines_order(exported):
    from tui.tasks.services import REGISTRY

    play = yaml.safe_load((exported / "site.yml").read_text())[0]
    engine = [s.id for s in REGISTRY if s.id != "horizon"]
    want = ["prepare", *engine[:engine.index("nova") + 1], "cloud", "finish"]
    assert play["roles"] == want
    for role in ("placement", "neutron", "nova", "cloud"):
        assert (exported / f"roles/{role}/tasks/main.yml").is_file()
    for p in exported.rglob("*.yml"):
        assert yaml.load(p.read_text(), Loader=Loader) is not None, p
    # the many settings tasks: modules over SSH's stdin, no module file on the host's disk
    assert "[ssh_connection]\npipelining = True" in (exported / "ansible.cfg").read_text()


def test_no_secret_in_any_file_env_mode(exported):
    text = all_text(exported)
    for v in HOSTILE.values():
        assert v not in text and urllib.parse.quote(v, safe="") not in text
    sec = yaml.safe_load((exported / "group_vars/all/secrets.yml").read_text())
    assert set(sec) == {f"stack_tui_{n}" for n in HOSTILE}


def assert_vaulted_without_a_plain_secret(profile, dest) -> None:
    """``profile`` exported to ``dest`` with the vault: no secret in any file, plain or
    URL-encoded, and the vault holds every one of them."""
    exp.export(profile, dest, secrets=HOSTILE, vault_password="pw")
    text = all_text(dest)
    for v in HOSTILE.values():
        assert v not in text and urllib.parse.quote(v, safe="") not in text
    data = yaml.load(vault.decrypt((dest / "group_vars/all/vault.yml").read_text(), "pw"),
                     Loader=Loader)
    assert data == {f"stack_tui_{k}": v for k, v in HOSTILE.items()}


def test_no_secret_in_any_file_vault_mode(tmp_path):
    assert_vaulted_without_a_plain_secret(compute_host(tmp_path), tmp_path / "out")


def test_every_task_handling_a_secret_is_no_log(exported):
    seen = {}
    for role in ("placement", "neutron", "nova", "cloud"):
        for t in tasks_of(exported, role):
            body = yaml.safe_dump(t)
            if handles_secret(t) or any(f"stack_tui_{n}" in body for n in HOSTILE):
                seen[role] = seen.get(role, 0) + 1
                assert t.get("no_log") is True, (role, t["name"])
    assert seen["placement"] >= 5 and seen["neutron"] >= 5 and seen["nova"] >= 5
    assert seen["cloud"] >= 8


def test_settings_are_the_engines_keys(exported):
    """Each file gets exactly the keys the service module builds, secrets as filters."""
    from tui.tasks.services import neutron, nova, placement

    ctx = source.context(compute_host(exported.parent))
    for role, path, want in (
            ("placement", placement.PLACEMENT_CONF, placement._settings(ctx)),
            ("nova", nova.NOVA_CONF, nova.settings(ctx)),
            *(("neutron", p, v) for p, v, _g in neutron._files(ctx))):
        assert set(ini_keys(exported, role, path)) == set(want), path
    conf = ini_keys(exported, "nova", nova.NOVA_CONF)
    assert conf[("spice", "enabled")] == "false"
    assert conf[("neutron", "metadata_proxy_shared_secret")] == \
        "{{ stack_tui_metadata_secret | stack_tui_oslo_value }}"
    assert conf[("DEFAULT", "transport_url")].startswith(
        "rabbit://openstack:{{ stack_tui_rabbit_password | stack_tui_url_quote }}@")
    assert conf[("api_database", "connection")].startswith(
        "mysql+pymysql://nova:{{ stack_tui_nova_db_password | stack_tui_db_url_password }}@")
    assert conf[("api_database", "connection")].endswith("/nova_api?charset=utf8mb4")
    agent = ini_keys(exported, "neutron", neutron.OVS_CONF)
    assert agent[("ovs", "datapath_type")] == "netdev"
    assert agent[("ovs", "bridge_mappings")] == "provider:br-provider"


def test_filters_quote_as_the_engine(exported):
    from tui.tasks import inifile

    ns: dict = {}
    exec((exported / "filter_plugins/stack_tui.py").read_text(), ns)
    f = ns["FilterModule"]().filters()
    for v in HOSTILE.values():
        # transport_url: the engine quotes the password, then oslo-quotes the whole URL
        url = "rabbit://openstack:" + f["stack_tui_url_quote"](v) + "@h:5672/"
        assert url == inifile.oslo_value(
            f"rabbit://openstack:{urllib.parse.quote(v, safe='')}@h:5672/")
        assert f["stack_tui_oslo_value"](v) == inifile.oslo_value(v)


def test_open_vswitch_traps_kept(exported):
    from tui.tasks.services import neutron, ovs

    tasks = tasks_of(exported, "neutron")
    dropin = next(t for t in tasks if t.get("ansible.builtin.copy", {}).get("dest")
                  == ovs.VSWITCHD_DROPIN)["ansible.builtin.copy"]
    assert dropin["content"] == ovs.VSWITCHD_DROPIN_BODY
    assert "userspace-tso-enable=true" in dropin["content"]
    unit = next(t for t in tasks if t.get("ansible.builtin.copy", {}).get("dest")
                == neutron.PROVIDER_UNIT_PATH)["ansible.builtin.copy"]["content"]
    assert "datapath_type=netdev" in unit
    # the drop-in is written before the provider unit starts Open vSwitch
    names = [t["name"] for t in tasks]
    assert names.index(next(n for n in names if n.startswith("ovs-vswitchd drop-in"))) < \
        names.index(next(n for n in names if n.endswith("enabled and started")))


def test_distro_placement_unit_disabled_only_while_not_masked(exported):
    """A second run changes nothing: systemd_service would disable the masked unit again
    (its init script's rc.d links read as enabled), so it is left alone once masked."""
    tasks = tasks_of(exported, "placement")
    off = next(t for t in tasks if t.get("ansible.builtin.systemd_service", {}).get("enabled")
               is False)
    assert off["when"] == "stack_tui_pl_distro.stdout | trim != 'masked'"
    mask = next(t for t in tasks if t.get("ansible.builtin.systemd_service", {}).get("masked"))
    assert tasks.index(off) < tasks.index(mask)


def test_engine_markers_and_discovery(exported):
    """The schemas run when the engine's marker differs, and record it (apply finds them
    done); the host is mapped into cell1 only when it is not yet."""
    for role, marker in (("placement", "placement.db_sync"), ("neutron", "neutron.schema"),
                         ("nova", "nova.schema")):
        tasks = tasks_of(exported, role)
        rec = next(t for t in tasks if t["name"] == f"Record {marker}")
        assert rec["ansible.builtin.copy"]["dest"] == f"/var/lib/stack-tui/{marker}"
    nova_tasks = tasks_of(exported, "nova")
    cells = next(t for t in nova_tasks if "cell_v2 map_cell0" in str(t))
    assert "create_cell --name=cell1" in script(cells)
    disc = next(t for t in nova_tasks if "ansible.builtin.command" in t
                and "discover_hosts" in script(t) and "map_cell0" not in script(t))
    assert disc["when"] == "stack_tui_mapped.stdout | trim == '0'"


def test_uwsgi_inis_get_the_engines_lines(exported):
    """The engine's uWSGI values (catalog.uwsgi_run), each key once: few processes, and
    nova's `Connection: close`; a line of the key with another value is removed first."""
    import re

    from tui.tasks.services import neutron, nova

    for role, inis in (("nova", nova.UWSGI_INIS), ("neutron", neutron.UWSGI_INIS)):
        tasks = tasks_of(exported, role)
        for path, values in inis.items():
            edits = [t["ansible.builtin.lineinfile"] for t in tasks
                     if t.get("ansible.builtin.lineinfile", {}).get("path") == path]
            assert [e["line"] for e in edits if "line" in e] == [
                f"{k} = {v}" for k, v in values.items()]
            for key, value in values.items():
                gone = next(e["regexp"] for e in edits if e.get("state") == "absent"
                            and key in e["regexp"].replace("\\", ""))
                assert re.search(gone, f"{key} = other") and not re.search(gone,
                                                                          f"{key} = {value}")
    assert nova.UWSGI_INIS["/etc/nova/nova-api-uwsgi.ini"]["add-header"] == "Connection: close"


def test_every_command_has_a_time_limit_on_the_host(exported):
    assert assert_every_command_is_bounded_on_the_host(exported) >= 20


def test_nova_user_granted_its_three_databases(exported):
    dbs = yaml.safe_load((exported / "roles/mariadb/vars/main.yml").read_text())[
        "stack_tui_databases"]
    nova = next(d for d in dbs if d["name"] == "nova")
    assert nova["priv"] == "nova_api.*:ALL/nova.*:ALL/nova_cell0.*:ALL"
    tasks = tasks_of(exported, "mariadb")
    made = next(t for t in tasks if "community.mysql.mysql_db" in t)["loop"]
    assert {"nova_api", "nova", "nova_cell0", "placement", "neutron"} <= set(made)


def test_cloud_objects_and_a_kept_verified_server(exported):
    from tui.tasks.services import cloudobjects as co

    tasks = tasks_of(exported, "cloud")
    mods = {k.split(".")[-1]: t for t in tasks for k in t if k.startswith("openstack.cloud.")}
    assert mods["compute_flavor"]["openstack.cloud.compute_flavor"]["name"] == co.FLAVOR
    srv = mods["server"]["openstack.cloud.server"]
    assert (srv["name"], srv["network"], srv["state"]) == (co.SERVER, co.NET, "present")
    assert srv["auth"] == "{{ stack_tui_os_auth_demo }}"   # as demo, like the engine
    ping = next(t for t in tasks if "ping" in str(t.get("ansible.builtin.command")))
    assert ping["changed_when"] is False and ping["until"] == "stack_tui_ping.rc == 0"
    key = mods["keypair"]["openstack.cloud.keypair"]["public_key"]
    gen = next(t for t in tasks if "ssh-keygen" in str(t.get("ansible.builtin.command")))
    assert gen["ansible.builtin.command"]["creates"] == "{{ playbook_dir }}/demo-key"
    assert key == "{{ lookup('file', playbook_dir ~ '/demo-key.pub') }}"   # no nested {{ }}
    auth = yaml.safe_load((exported / "group_vars/all/main.yml").read_text())[
        "stack_tui_os_auth_demo"]
    assert auth["password"] == "{{ stack_tui_demo_password }}"


def test_no_cloud_role_without_demo(tmp_path):
    p = compute_host(tmp_path)
    p.openstack.demo = False
    dest = tmp_path / "out"
    exp.export(p, dest)
    assert "cloud" not in yaml.safe_load((dest / "site.yml").read_text())[0]["roles"]
    assert not (dest / "roles/cloud").exists()


def test_refuses_compute_on_several_hosts_and_horizon(tmp_path):
    p = compute_host(tmp_path)
    p.hosts = [HostConfig(name="ctl", address="10.9.0.2", roles=["controller"]),
               HostConfig(name="cmp1", address="10.9.0.3", roles=["compute"])]
    why = "; ".join(exp.refusals(p))   # several hosts: with a controller that computes
    assert "placement, neutron, nova with a controller that computes" in why
    p = compute_host(tmp_path)
    p.openstack.services = [*p.openstack.services, "horizon"]
    assert exp.refusals(p) == [exp.refusals(p)[0]] and "horizon" in exp.refusals(p)[0]
    p = compute_host(tmp_path)
    p.openstack.platform = "debian-12"
    assert any("debian-12" in w for w in exp.refusals(p))
    assert exp.refusals(compute_host(tmp_path)) == []


def test_no_template_inside_a_template(exported):
    """A "{{" inside an open "{{ ... }}" is text to Jinja, never templated (a lookup's path
    written so would name a file called "{{ playbook_dir }}/...")."""
    import re

    nested = re.compile(r"\{\{(?:(?!\}\}).)*\{\{", re.S)

    def strings(node):
        if isinstance(node, str):
            yield node
        elif isinstance(node, dict):
            for v in node.values():
                yield from strings(v)
        elif isinstance(node, list):
            for v in node:
                yield from strings(v)
    for p in exported.rglob("*.yml"):
        for s in strings(yaml.load(p.read_text(), Loader=Loader)):
            assert not nested.search(s), (p, s)
