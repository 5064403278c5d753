"""The exported roles for several hosts on Debian 13 (the engine's services/compute_node.py,
services/ovs_tunnel.py and the controller's computes.* steps):

- ``tunnel``: the VXLAN endpoint of Open vSwitch's userspace datapath, ``br-phy`` with the
  management interface as its port and the management address moved onto it
  (stack-tui-tunnel.service, the engine's own unit text), on the controller before Neutron
  and on each compute-only host first;
- ``prepare`` on every host at once (each host its own packages; the Keystone unit's tasks on
  the controller only), in a play of its own before the controller's services;
- ``compute_node``: nova.conf and the Open vSwitch agent of a compute node (the engine's
  builders asked for one), libvirt as on the controller, nova-compute and the agent started;
- ``computes``: on the controller, each compute host mapped into cell1 (changed only when
  something was mapped) and its agent alive."""

from __future__ import annotations

from ..services import compute_node, neutron, nova, ovs_tunnel
from . import source as src
from .roles_api import _ini
from .roles_base import prepare, restart, role
from .roles_compute import _libvirt_tasks, _provider_tasks

TUNNEL_LOOK = r"""set -e
addr={{ stack_tui_mgmt_address }}
ports=$(ovs-vsctl --timeout=10 list-ports %(bridge)s 2>/dev/null || true)
holders=$(ip -o -4 addr show | awk -v a="$addr" '{split($4, p, "/"); if (p[1] == a) {sub(/@.*/, "", $2); print $2, (p[2] == "" ? 32 : p[2]) } }')
if [ "$(printf '%%s\n' "$ports" | grep -c .)" = 1 ]; then iface=$ports
elif [ -z "$ports" ]; then iface=$(printf '%%s\n' "$holders" | awk '$1 != "%(bridge)s" {print $1}')
else iface=""; fi
prefix=$(printf '%%s\n' "$holders" | awk 'NR == 1 {print $2}')
if [ -z "$iface" ] || [ "$(printf '%%s\n' "$iface" | wc -l)" != 1 ] || [ -z "$prefix" ] || ! printf '%%s' "$iface" | grep -Eqx '[A-Za-z0-9_.@-]{1,15}'; then
  echo "no single interface holds the management address $addr to make %(bridge)s with (holders: ${holders:-none}; %(bridge)s's ports: ${ports:-none})" >&2; exit 1
fi
extra=$(ip -4 route show dev "$iface" 2>/dev/null | grep -v 'proto kernel' | grep . || true)
if [ -n "$extra" ]; then
  echo "the management interface $iface carries routes that moving its address to %(bridge)s would lose: $extra; give the hosts a management network of its own" >&2; exit 1
fi
echo "$iface $prefix"
""" % {"bridge": ovs_tunnel.BRIDGE}

HOLDERS = ("ip -o -4 addr show | awk -v a='{{ stack_tui_mgmt_address }}' "
           "'{split($4, p, \"/\"); if (p[1] == a) {sub(/@.*/, \"\", $2); print $2} }'")


def tunnel_role(profile) -> dict:
    """ovs_tunnel.step: the ovs-vswitchd drop-in first, then the unit (the engine's text with
    the interface and prefix found on the host), started (restarted when it changed or the
    address is not on br-phy yet); the address then on br-phy alone, and RabbitMQ on the
    controller still answers through it."""
    br, unit = ovs_tunnel.BRIDGE, ovs_tunnel.UNIT
    body = ovs_tunnel.unit_body("{{ stack_tui_tunnel[0] }}", src.MGMT,
                                "{{ stack_tui_tunnel[1] }}")
    tasks = [
        *_provider_tasks()[:3],   # the drop-in, a running ovs-vswitchd restarted once for it
        {"name": f"The management interface and its prefix ({br}'s port once it has one)",
         "ansible.builtin.shell": {"cmd": TUNNEL_LOOK, "executable": "/bin/bash"},
         "register": "stack_tui_tunnel_look", "changed_when": False},
        {"name": "Interface and prefix", "ansible.builtin.set_fact": {
            "stack_tui_tunnel": "{{ stack_tui_tunnel_look.stdout.split() }}"}},
        {"name": f"{unit}: {br} (netdev) with the management interface as its port, the "
                 "management address on it", "ansible.builtin.copy": {
                     "dest": ovs_tunnel.UNIT_PATH, "content": body, "mode": "0644"},
         "register": "stack_tui_tunnel_unit"},
        {"name": "Which interfaces hold the management address", "ansible.builtin.shell":
            HOLDERS, "register": "stack_tui_tunnel_on", "changed_when": False},
        {"name": f"{unit} (re)started when written or the address is not on {br} alone",
         "ansible.builtin.systemd_service": {"name": unit, "state": "restarted",
                                             "daemon_reload": True},
         "when": f"stack_tui_tunnel_unit is changed or stack_tui_tunnel_on.stdout_lines "
                 f"!= ['{br}']"},
        {"name": f"{unit} enabled and started", "ansible.builtin.systemd_service": {
            "name": unit, "enabled": True, "state": "started"}},
        {"name": f"The management address is on {br} alone, the interface its port",
         "ansible.builtin.shell": HOLDERS + f"; ovs-vsctl --timeout=10 list-ports {br}",
         "register": "stack_tui_tunnel_after", "changed_when": False,
         "failed_when": f"stack_tui_tunnel_after.stdout_lines != ['{br}', "
                        "stack_tui_tunnel[0]]"},
        {"name": f"RabbitMQ on the controller answers through {br} "
                 f"({ovs_tunnel.RABBITMQ_PORT})",
         "ansible.builtin.wait_for": {"host": "{{ stack_tui_controller_mgmt }}",
                                      "port": ovs_tunnel.RABBITMQ_PORT, "timeout": 60}},
    ]
    return role(tasks)


def prepare_hosts(profile) -> dict:
    """prepare on every host in one play, so a compute host installs its own packages
    (services.host_packages) while the controller installs its (as the engine overlaps
    them)."""
    return prepare(profile, compute_view=src.compute_view(profile))


def _agent() -> tuple[str, str, str]:
    return neutron.AGENTS[neutron.layout(src.PLATFORM).mechanism]


def compute_node_role(profile) -> dict:
    agent = _agent()[0]
    conf = _ini(nova.NOVA_CONF, src.compute_nova_settings(profile), "nova",
                "restart nova-compute")
    for path, items, group in src.compute_neutron_files(profile):
        conf += _ini(path, items, group, f"restart {agent}")
    units = [u for u, _changed in compute_node._units(src.context(src.compute_view(profile)))]
    tasks = [
        *conf,
        *_libvirt_tasks(),
        {"name": "Restart nova-compute and the agent now if their files changed",
         "ansible.builtin.meta": "flush_handlers"},
        {"name": f"Start and enable {' and '.join(units)}", "ansible.builtin.systemd_service": {
            "name": "{{ item }}", "state": "started", "enabled": True}, "loop": units},
    ]
    # libvirtd first: a restarted libvirtd restarts nova-compute after it
    return role(tasks, handlers=[restart("libvirtd"), restart("nova-compute"), restart(agent)])


def _sql(query: str) -> str:
    """mysql reading ``query`` from a quoted heredoc (nothing expanded by the shell)."""
    return f"mysql --batch --skip-column-names <<'SQL'\n{query}\nSQL"


def computes_role(profile) -> dict:
    """computes.discover and computes.agents on the controller."""
    names = compute_node.compute_hosts(profile)
    listed = compute_node._names_sql(names)
    mapped = f"SELECT host FROM nova_api.host_mappings WHERE host IN ({listed});"
    registered = ("SELECT COUNT(*) FROM nova.services WHERE `binary` = 'nova-compute' AND "
                  f"deleted = 0 AND host IN ({listed});")
    tries = compute_node.DISCOVER_TIMEOUT // 5
    discover = f"""set -e
mapped() {{
{_sql(mapped)}
}}
registered() {{
{_sql(registered)}
}}
by=""
for i in $(seq {tries}); do
  runuser -u nova -- nova-manage cell_v2 discover_hosts $by --verbose 2>&1 | tail -n 5 || true
  if [ "$(mapped | sort -u | wc -l)" = {len(names)} ]; then exit 0; fi
  # a compute node Nova marked mapped is skipped by the plain discovery: found by its service
  if [ "$(registered)" -gt 0 ]; then by=--by-service; fi
  sleep 5
done
echo "compute hosts not mapped into cell1 after {compute_node.DISCOVER_TIMEOUT // 60} minutes;" \\
  "on each: journalctl -u nova-compute, /var/log/nova/nova-compute.log" \\
  "(RabbitMQ at {{{{ stack_tui_controller_mgmt }}}}:5672)" >&2
exit 1"""
    agent_type = _agent()[1]
    alive = (f"SELECT DISTINCT host FROM neutron.agents WHERE agent_type = '{agent_type}' AND "
             f"host IN ({listed}) AND TIMESTAMPDIFF(SECOND, heartbeat_timestamp, "
             "UTC_TIMESTAMP()) < 75;")
    tasks = [
        {"name": f"Which compute hosts are mapped into cell1 ({', '.join(names)})",
         "ansible.builtin.shell": _sql(mapped), "register": "stack_tui_hosts_mapped",
         "changed_when": False},
        {"name": "Map the compute hosts into cell1 (nova-manage cell_v2 discover_hosts until "
                 "each is)",
         "ansible.builtin.shell": {"cmd": discover, "executable": "/bin/bash"},
         "when": f"stack_tui_hosts_mapped.stdout_lines | map('trim') | unique | length "
                 f"!= {len(names)}"},
        {"name": f"Their Neutron agents report alive ({agent_type} on each)",
         "ansible.builtin.shell": _sql(alive), "register": "stack_tui_hosts_agents",
         "changed_when": False,
         "until": f"stack_tui_hosts_agents.stdout_lines | map('trim') | unique | length "
                  f"== {len(names)}",
         "retries": compute_node.AGENTS_TIMEOUT // 3, "delay": 3},
    ]
    return role(tasks)


def wanted(profile) -> bool:
    """Several hosts with compute-only ones and the compute cloud: the plays of this module
    (without Nova and Neutron the compute hosts get nothing, as before)."""
    return (len(profile.hosts) > 1 and bool(compute_node.compute_hosts(profile))
            and {"nova", "neutron"} <= set(profile.openstack.services))


def tunnel_wanted(profile) -> bool:
    return ovs_tunnel.needed(profile, neutron.layout(src.PLATFORM))
