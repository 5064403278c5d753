"""`stack-tui export ansible` for a profile of several Debian 13 hosts with the compute cloud
(a controller that computes and compute-only hosts): the plays in the engine's order, each
compute host's files with exactly the keys services/compute_node.py builds, the br-phy tunnel
with the engine's own unit, discovery changed only when it maps a host, one kept test server
per computing host, no secret in any file, every task time-limited, and what is still
refused.  The playbook itself runs in tests/e2e/test_ansible_e2e.py (two hosts)."""

from __future__ import annotations

import urllib.parse
from pathlib import Path

import pytest
import yaml

from tests.test_export_ansible import Loader, all_text, handles_secret
from tests.test_export_compute import (HOSTILE, assert_every_command_is_bounded_on_the_host,
                                       assert_vaulted_without_a_plain_secret, compute_host,
                                       ini_keys, script, tasks_of)
from tui.tasks.export import ansible as exp
from tui.tasks.export import source
from tui.tasks.profile import HostConfig


def hosts_profile(tmp_path: Path, n: int = 3):
    p = compute_host(tmp_path)
    p.hosts = [HostConfig(name="ctl", address="10.9.0.2", roles=["controller", "compute"],
                          mgmt_address="192.168.50.2"),
               *(HostConfig(name=f"cmp{k}", address=f"10.9.0.{k + 2}", roles=["compute"],
                            mgmt_address=f"192.168.50.{k + 2}") for k in range(1, n))]
    return p


@pytest.fixture
def exported(tmp_path, monkeypatch):
    for k, v in HOSTILE.items():
        monkeypatch.setenv(f"STACK_TUI_{k.upper()}", v)
    dest = tmp_path / "out"
    exp.export(hosts_profile(tmp_path), dest)
    return dest


def plays_of(dest: Path) -> list[dict]:
    return yaml.safe_load((dest / "site.yml").read_text())


def test_plays_in_the_engines_order(exported):
    """prepare on every host at once (each installs its packages at the same time), the
    controller's services (the tunnel before Neutron), then the compute-only hosts' own
    steps, then on the controller their discovery, the cloud and finish."""
    plays = plays_of(exported)
    assert [p["hosts"] for p in plays] == ["controller:compute", "controller",
                                           "compute:!controller", "controller"]
    assert plays[0]["roles"] == ["prepare"]
    assert plays[1]["roles"] == ["mariadb", "rabbitmq", "memcached", "keystone", "glance",
                                 "placement", "tunnel", "neutron", "nova"]
    assert plays[2]["roles"] == ["tunnel", "compute_node"]
    assert plays[3]["roles"] == ["computes", "cloud", "finish"]
    for play in plays:   # no task waits forever on a host
        assert play["timeout"] == exp.TASK_LIMIT
    inv = yaml.safe_load((exported / "inventory.yml").read_text())["all"]["children"]
    assert list(inv["compute"]["hosts"]) == ["ctl", "cmp1", "cmp2"]
    assert list(inv["controller"]["hosts"]) == ["ctl"]
    for p in exported.rglob("*.yml"):
        assert yaml.load(p.read_text(), Loader=Loader) is not None, p


def test_one_host_keeps_its_single_play(tmp_path, monkeypatch):
    for k, v in HOSTILE.items():
        monkeypatch.setenv(f"STACK_TUI_{k.upper()}", v)
    exp.export(compute_host(tmp_path), tmp_path / "one")
    [play] = plays_of(tmp_path / "one")
    assert "tunnel" not in play["roles"] and "computes" not in play["roles"]
    assert not (tmp_path / "one/roles/compute_node").exists()


def test_compute_files_are_the_engines_keys(exported):
    """nova.conf and the agent's file of each compute host: exactly the keys compute_node
    builds for it (its name the inventory's), the controller's address in every URL."""
    from tui.tasks.services import compute_node, neutron, nova

    prof = hosts_profile(exported.parent)
    for name in compute_node.compute_hosts(prof):
        ctx = source.context(prof.on(name))
        want = nova.settings(ctx, controller=False)
        got = ini_keys(exported, "compute_node", nova.NOVA_CONF)
        assert set(got) == set(want), name
        for key, value in want.items():
            if key == ("DEFAULT", "host"):
                assert value == name and got[key] == "{{ inventory_hostname }}"
            elif not source.has_secret(value):
                assert got[key] == value, key
        for path, values, _group in compute_node._neutron_files(ctx):
            got = ini_keys(exported, "compute_node", path)
            assert set(got) == set(values), path
    conf = ini_keys(exported, "compute_node", nova.NOVA_CONF)
    assert ("database", "connection") not in conf    # no database on a compute host
    assert conf[("DEFAULT", "transport_url")].startswith(
        "rabbit://openstack:{{ stack_tui_rabbit_password | stack_tui_url_quote }}@"
        "192.168.50.2:")
    assert conf[("glance", "api_servers")] == "http://192.168.50.2:9292"
    agent = ini_keys(exported, "compute_node", neutron.OVS_CONF)
    assert agent[("ovs", "bridge_mappings")] == ""   # no provider bridge on a compute host
    assert agent[("ovs", "local_ip")] == "{{ stack_tui_mgmt_address }}"
    units = [t for t in tasks_of(exported, "compute_node")
             if t.get("ansible.builtin.systemd_service", {}).get("state") == "started"]
    assert units[-1]["loop"] == ["nova-compute", "neutron-openvswitch-agent"]
    main = yaml.safe_load((exported / "group_vars/all/main.yml").read_text())
    assert main["stack_tui_controller_mgmt"] == "192.168.50.2"


def test_compute_hosts_get_their_own_packages(exported):
    from tui.tasks.services import host_packages

    prof = hosts_profile(exported.parent)
    want = host_packages(prof.on("cmp1"), source.PLATFORM)
    got = yaml.safe_load((exported / "roles/prepare/vars/main.yml").read_text())[
        "stack_tui_host_packages"]
    assert got == {"controller": host_packages(prof, source.PLATFORM), "compute": want}
    assert "nova-compute" in want and "nova-api" not in want and "mariadb-server" not in want
    tasks = tasks_of(exported, "prepare")
    pick = tasks[0]["ansible.builtin.set_fact"]["stack_tui_packages"]
    assert "'controller' if 'controller' in group_names else 'compute'" in pick
    keystone = [t for t in tasks if "keystone" in t["name"].lower()
                or "keystone" in str(t.get("ansible.builtin.systemd_service", ""))]
    assert len(keystone) == 3   # the unmask, disable and mask: on the controller only
    assert all(t["when"] == "'controller' in group_names" for t in keystone)


def test_tunnel_is_the_engines_unit(exported):
    from tui.tasks.services import ovs, ovs_tunnel

    tasks = tasks_of(exported, "tunnel")
    unit = next(t for t in tasks if t.get("ansible.builtin.copy", {}).get("dest")
                == ovs_tunnel.UNIT_PATH)["ansible.builtin.copy"]["content"]
    assert unit == ovs_tunnel.unit_body("{{ stack_tui_tunnel[0] }}",
                                        "{{ stack_tui_mgmt_address }}",
                                        "{{ stack_tui_tunnel[1] }}")
    dropin = next(t for t in tasks if t.get("ansible.builtin.copy", {}).get("dest")
                  == ovs.VSWITCHD_DROPIN)
    assert tasks.index(dropin) < tasks.index(next(t for t in tasks if "content" in
                                                  t.get("ansible.builtin.copy", {})
                                                  and t["ansible.builtin.copy"]["dest"]
                                                  == ovs_tunnel.UNIT_PATH))
    restart = next(t for t in tasks if t.get("ansible.builtin.systemd_service", {})
                   .get("state") == "restarted")
    # restarted only when written or the address is not moved yet: a second run changes nothing
    assert restart["when"] == ("stack_tui_tunnel_unit is changed or "
                               "stack_tui_tunnel_on.stdout_lines != ['br-phy']")
    assert any(t.get("ansible.builtin.wait_for", {}).get("port") == 5672 for t in tasks)
    look = next(t for t in tasks if t.get("register") == "stack_tui_tunnel_look")
    assert look["changed_when"] is False


def test_discovery_changes_only_when_it_maps(exported):
    tasks = tasks_of(exported, "computes")
    look, disc, agents = tasks
    assert "nova_api.host_mappings WHERE host IN ('cmp1', 'cmp2')" in script(look)
    assert look["changed_when"] is False
    assert disc["when"] == "stack_tui_hosts_mapped.stdout_lines | map('trim') | unique | " \
                           "length != 2"
    cmd = script(disc)
    assert "nova-manage cell_v2 discover_hosts $by" in cmd and "--by-service" in cmd
    assert "for i in $(seq 48)" in cmd   # the engine's DISCOVER_TIMEOUT, then a failure
    assert agents["changed_when"] is False and "'Open vSwitch agent'" in script(agents)
    assert agents["retries"] * agents["delay"] <= 120


def test_every_command_of_every_host_has_a_time_limit_on_the_host(exported):
    assert assert_every_command_is_bounded_on_the_host(exported) >= 25


def test_a_kept_server_on_each_computing_host(exported):
    from tui.tasks.services import cloudobjects as co

    tasks = tasks_of(exported, "cloud")
    srv = next(t for t in tasks if "openstack.cloud.server" in t)
    # cloudobjects.targets: the controller by its system host name, the others by theirs
    assert srv["loop"] == [[f"{co.SERVER}-ctl", "{{ ansible_facts['hostname'] }}"],
                           [f"{co.SERVER}-cmp1", "cmp1"], [f"{co.SERVER}-cmp2", "cmp2"]]
    body = srv["openstack.cloud.server"]
    assert body["availability_zone"] == "nova:{{ item[1] }}"
    assert body["security_groups"] == [co.VERIFY_SG] and body["state"] == "present"
    assert "auth" not in body   # as admin (the play's defaults), like the engine
    assert srv["no_log"] is True
    sg = next(t for t in tasks if "openstack.cloud.security_group" in t)
    assert sg["openstack.cloud.security_group"]["name"] == co.VERIFY_SG
    ping = next(t for t in tasks if "ping" in str(t.get("ansible.builtin.command")))
    assert ping["changed_when"] is False and ping["loop"] == "{{ stack_tui_fips.results }}"
    rec = next(t for t in tasks if t.get("ansible.builtin.copy", {}).get("dest", "")
               .endswith("cloud.boot_hosts"))
    assert rec["ansible.builtin.copy"]["content"].endswith(
        " {{ ansible_facts['hostname'] }},cmp1,cmp2\n")


def test_no_secret_in_any_file(exported, tmp_path):
    for dest, text in ((exported, all_text(exported)),):
        for v in HOSTILE.values():
            assert v not in text and urllib.parse.quote(v, safe="") not in text, dest
    assert_vaulted_without_a_plain_secret(hosts_profile(tmp_path), tmp_path / "vaulted")


def test_every_task_handling_a_secret_is_no_log(exported):
    seen = 0
    for role in ("compute_node", "tunnel", "computes", "cloud", "prepare"):
        for t in tasks_of(exported, role):
            body = yaml.safe_dump(t)
            if handles_secret(t) or any(f"stack_tui_{n}" in body for n in HOSTILE):
                seen += 1
                assert t.get("no_log") is True, (role, t["name"])
    assert seen >= 5


def test_refusals_several_hosts(tmp_path):
    p = hosts_profile(tmp_path, 2)
    assert exp.refusals(p) == []
    p.hosts[0].roles = ["controller"]
    assert any("controller that computes" in w for w in exp.refusals(p))
    p = hosts_profile(tmp_path, 2)
    p.openstack.platform = "debian-12"
    assert any("debian-12" in w for w in exp.refusals(p))
    p = hosts_profile(tmp_path, 2)
    p.openstack.services = [s for s in p.openstack.services if s != "nova"]
    assert any("need Nova and Neutron" in w for w in exp.refusals(p))
