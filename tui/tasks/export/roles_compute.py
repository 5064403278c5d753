"""The exported roles for the compute cloud on the controller, which computes too (alone, or
with compute-only hosts: roles_hosts.py):
Placement (under the Apache that serves Keystone), Neutron (Open vSwitch, userspace datapath:
the ovs-vswitchd drop-in, the provider veth pair on br-provider) and Nova (its databases,
cells, libvirt, the services, host discovery).  Each mirrors the engine's steps of the same
name in tui/tasks/services/, with the settings those modules build themselves."""

from __future__ import annotations

import re
from pathlib import Path

from ..services import neutron, nova, ovs, placement
from ..services.common import SERVICE_ROLES
from ..services.units import url_host
from . import source as src
from .roles_api import _ini, token_check, user_tasks
from .roles_base import restart, role, service_up

OS_ = "openstack.cloud."
MARKERS = "/var/lib/stack-tui"


def catalog(name: str, stype: str, description: str, url: str, region: str) -> list[dict]:
    """The service entity and its three endpoints (one host: the same URL on each)."""
    return [
        {"name": f"Service {name} ({stype})", OS_ + "catalog_service": {
            "name": name, "type": stype, "description": description, "is_enabled": True,
            "state": "present"}, "no_log": True},
        {"name": f"The {stype} endpoints", OS_ + "endpoint": {
            "service": name, "endpoint_interface": "{{ item }}", "url": url,
            "region": region, "state": "present"},
         "loop": ["public", "internal", "admin"], "no_log": True},
    ]


def marker_block(marker: str, package: str, what: str, script: str) -> list[dict]:
    """``script`` when the engine's marker (package version, management address) differs;
    the marker is then the engine's, so `stack-tui apply` finds the step done, and the other
    way round."""
    path, key = f"{MARKERS}/{marker}", marker.replace(".", "_")
    want = ("{{ stack_tui_installed['%s'] }} "
            "{{ (stack_tui_mgmt_address | hash('sha256'))[:12] }}" % package)
    return [
        {"name": f"The {marker} marker: package version and management address",
         "ansible.builtin.set_fact": {f"stack_tui_{key}_want": want}},
        {"name": f"What {marker} last recorded", "ansible.builtin.slurp": {"src": path},
         "register": f"stack_tui_{key}_have", "failed_when": False},
        {"name": what, "when": f"(stack_tui_{key}_have.content | default('') | b64decode "
                              f"| trim) != stack_tui_{key}_want",
         "block": [
             {"name": what, "ansible.builtin.shell": {"cmd": "set -e\n" + script,
                                                      "executable": "/bin/bash"}},
             {"name": f"Record {marker}", "ansible.builtin.copy": {
                 "dest": path, "content": "{{ stack_tui_%s_want }}\n" % key, "mode": "0644"}},
         ]},
    ]


def uwsgi_tasks(settings: dict[str, dict[str, str]], handler: str) -> list[dict]:
    """Each uWSGI ini that exists sets each of the engine's keys once, to its value
    (catalog.uwsgi_run: few processes, and nova's `Connection: close`)."""
    out = []
    for path, values in settings.items():
        name, reg = Path(path).name, "stack_tui_" + Path(path).stem.replace("-", "_")
        out.append({"name": f"Is there {name}", "ansible.builtin.stat": {"path": path},
                    "register": reg})
        for key, value in values.items():
            k, v = re.escape(key), re.escape(value)
            out += [
                {"name": f"{name}: no other {key} line", "ansible.builtin.lineinfile": {
                    "path": path, "regexp": rf"^\s*{k}\s*=(?!\s*{v}\s*$)", "state": "absent"},
                 "notify": handler, "when": f"{reg}.stat.exists"},
                {"name": f"{name}: {key} = {value}", "ansible.builtin.lineinfile": {
                    "path": path, "regexp": rf"^\s*{k}\s*=", "line": f"{key} = {value}"},
                 "notify": handler, "when": f"{reg}.stat.exists"},
            ]
    return out


def key_value_lines(path: str, values: dict[str, str], handler) -> list[dict]:
    """libvirt's `key = value` files (catalog.with_lines): one line per key."""
    return [{"name": f"{Path(path).name}: {k} = {v}", "ansible.builtin.lineinfile": {
        "path": path, "regexp": rf"^\s*{k}\s*=", "line": f"{k} = {v}"}, "notify": handler}
        for k, v in values.items()]


# -- Placement -------------------------------------------------------------------------------

def placement_role(profile) -> dict:
    ap = src.placement_apache(profile)
    web = src.PLATFORM.web_service
    url = f"http://{url_host(profile.endpoint_host)}:{placement.PORT}"
    unit = ap["distro_unit"]
    tasks = [
        *user_tasks("placement", "service", SERVICE_ROLES),
        *catalog("placement", "placement", "Placement API", url, profile.openstack.region),
        *_ini(placement.PLACEMENT_CONF, src.placement_settings(profile), "placement",
              f"restart {web}"),
        *marker_block("placement.db_sync", placement.PACKAGES(src.PLATFORM)[0],
                      "Create the Placement database schema",
                      "runuser -u placement -- placement-manage db sync"),
        # systemd_service's enabled=false on a masked unit that has an init script too
        # reads it as enabled (the rc.d links) and disables it again on every run
        {"name": f"Is {unit} masked", "ansible.builtin.command": f"systemctl is-enabled {unit}",
         "register": "stack_tui_pl_distro", "changed_when": False, "failed_when": False},
        {"name": f"The packaged uWSGI {unit} unit stays off (Apache serves Placement)",
         "ansible.builtin.systemd_service": {"name": unit, "enabled": False,
                                             "state": "stopped"},
         "when": "stack_tui_pl_distro.stdout | trim != 'masked'"},
        {"name": f"Mask {unit}", "ansible.builtin.systemd_service": {"name": unit,
                                                                   "masked": True}},
        {"name": "Placement's WSGI script", "ansible.builtin.copy": {
            "dest": ap["script"][0], "content": ap["script"][1], "mode": "0644"},
         "notify": f"restart {web}"},
        {"name": f"Placement's vhost on port {placement.PORT}", "ansible.builtin.template": {
            "src": "placement-vhost.conf.j2", "dest": ap["vhost"][0], "mode": "0644"},
         "notify": f"restart {web}"},
        {"name": "Placement's site enabled", "ansible.builtin.command": {
            "cmd": ap["enable"], "creates": "/etc/apache2/sites-enabled/placement.conf"},
         "notify": f"restart {web}"},
        *service_up(web),
        {"name": f"Placement answers on {placement.PORT}", "ansible.builtin.uri": {
            "url": f"http://127.0.0.1:{placement.PORT}/"}, "register": "stack_tui_pl_up",
         "until": "stack_tui_pl_up.status == 200", "retries": 60, "delay": 1},
        token_check("admin", "admin", "stack_tui_pl_admin", expect=(201,)),
        {"name": "Placement lists resource providers", "ansible.builtin.uri": {
            "url": f"http://127.0.0.1:{placement.PORT}/resource_providers",
            "headers": {"X-Auth-Token": "{{ stack_tui_pl_admin.x_subject_token }}",
                        "OpenStack-API-Version": "placement 1.0"}},
         "no_log": True},
    ]
    # the Apache restart is Keystone's handler (Placement requires Keystone)
    return role(tasks, templates={"placement-vhost.conf.j2": ap["vhost"][1]})


# -- Neutron ---------------------------------------------------------------------------------

def _provider_tasks() -> list[dict]:
    """neutron.provider: the ovs-vswitchd drop-in first (before Open vSwitch ever starts on a
    fresh host; a running one restarted once), then the unit making the veth pair and
    br-provider (datapath netdev)."""
    lay = neutron.layout(src.PLATFORM)
    return [
        {"name": "ovs-vswitchd's drop-in directory", "ansible.builtin.file": {
            "path": str(Path(ovs.VSWITCHD_DROPIN).parent), "state": "directory",
            "mode": "0755"}},
        {"name": "ovs-vswitchd drop-in: userspace-tso-enable before each start (the "
                 "userspace datapath then finishes offloaded checksums: TCP and UDP pass)",
         "ansible.builtin.copy": {"dest": ovs.VSWITCHD_DROPIN,
                                  "content": ovs.VSWITCHD_DROPIN_BODY, "mode": "0644"},
         "register": "stack_tui_vswitchd_dropin"},
        {"name": "Reload systemd; restart a running ovs-vswitchd once for the setting",
         "ansible.builtin.shell": "systemctl daemon-reload; if systemctl is-active -q "
                                  f"{ovs.VSWITCHD}; then systemctl restart {ovs.VSWITCHD}; fi",
         "when": "stack_tui_vswitchd_dropin is changed"},
        {"name": f"The provider network's unit ({neutron.PROVIDER_IF} <-> "
                 f"{neutron.PROVIDER_PEER} on {neutron.PROVIDER_BRIDGE})",
         "ansible.builtin.copy": {"dest": neutron.PROVIDER_UNIT_PATH,
                                  "content": neutron.provider_unit(lay), "mode": "0644"},
         "register": "stack_tui_provider_unit"},
        {"name": f"{neutron.PROVIDER_UNIT} (re)started when written",
         "ansible.builtin.systemd_service": {"name": neutron.PROVIDER_UNIT,
                                             "state": "restarted", "daemon_reload": True},
         "when": "stack_tui_provider_unit is changed"},
        {"name": f"{neutron.PROVIDER_UNIT} enabled and started",
         "ansible.builtin.systemd_service": {"name": neutron.PROVIDER_UNIT, "enabled": True,
                                             "state": "started"}},
    ]


def _agents_alive() -> dict:
    want = [neutron.AGENTS[neutron.layout(src.PLATFORM).mechanism][1], "DHCP agent",
            "L3 agent", "Metadata agent"]
    sql = ("SELECT agent_type FROM neutron.agents WHERE TIMESTAMPDIFF(SECOND, "
           "heartbeat_timestamp, UTC_TIMESTAMP()) < 75")
    return {"name": "Neutron agents report alive: " + ", ".join(want),
            "ansible.builtin.command": {
                "argv": ["mysql", "--batch", "--skip-column-names", "-e", sql]},
            "register": "stack_tui_agents", "changed_when": False,
            "until": " and ".join(f"'{w}' in stack_tui_agents.stdout_lines" for w in want),
            "retries": 45, "delay": 2}


def neutron_role(profile) -> dict:
    units = list(neutron.units(src.PLATFORM))
    url = f"http://{url_host(profile.endpoint_host)}:{neutron.PORT}"
    conf = []
    for path, items, group in src.neutron_files(profile):
        conf += _ini(path, items, group, "restart neutron")
    tasks = [
        *user_tasks("neutron", "service", SERVICE_ROLES),
        *catalog("neutron", "network", "OpenStack Networking", url, profile.openstack.region),
        *_provider_tasks(),
        *conf,
        *uwsgi_tasks(neutron.UWSGI_INIS, "restart neutron"),
        *marker_block("neutron.schema", "neutron-common", "Create the Neutron database schema",
                      f"runuser -u neutron -- neutron-db-manage --config-file "
                      f"{neutron.NEUTRON_CONF} --config-file {neutron.ML2_CONF} upgrade head"),
        # before the start: on a fresh host the restart is the first start (fast; a restart
        # of running uWSGI units waits for their stop timeouts)
        {"name": "Restart Neutron now if its configuration changed",
         "ansible.builtin.meta": "flush_handlers"},
        {"name": "Start and enable Neutron's server and agents",
         "ansible.builtin.systemd_service": {"name": "{{ item }}", "state": "started",
                                             "enabled": True}, "loop": units},
        {"name": f"Neutron answers on {neutron.PORT}", "ansible.builtin.uri": {
            "url": f"http://127.0.0.1:{neutron.PORT}/", "status_code": [200, 300, 401]},
         "register": "stack_tui_nt_up", "until": "stack_tui_nt_up.status in [200, 300, 401]", "retries": 90, "delay": 2},
        _agents_alive(),
    ]
    handler = {"name": "restart neutron", "ansible.builtin.systemd_service": {
        "name": "{{ item }}", "state": "restarted"}, "loop": units}
    return role(tasks, handlers=[handler])


# -- Nova --------------------------------------------------------------------------------------

CELLS = """runuser -u nova -- nova-manage api_db sync
cells=$(runuser -u nova -- nova-manage cell_v2 list_cells)
if [[ "$cells" != *" cell0 "* ]]; then runuser -u nova -- nova-manage cell_v2 map_cell0; fi
if [[ "$cells" != *" cell1 "* ]]; then runuser -u nova -- nova-manage cell_v2 create_cell --name=cell1 --verbose; fi
runuser -u nova -- nova-manage db sync"""

DISCOVER = ("for i in $(seq 60); do "
            "runuser -u nova -- nova-manage cell_v2 discover_hosts --verbose 2>&1 | tail -n 3; "
            "runuser -u nova -- nova-manage cell_v2 list_hosts 2>/dev/null | "
            "grep -q \" $(hostname) \" && exit 0; sleep 2; done; exit 1")


def _libvirt_tasks() -> list[dict]:
    """nova.libvirt: virt_type kvm when /dev/kvm opens, else qemu; libvirtd's socket for
    group libvirt without polkit; in a container no cgroup controllers of libvirt's own."""
    lines = {"unix_sock_group": '"libvirt"', "unix_sock_rw_perms": '"0770"',
             "auth_unix_rw": '"none"'}
    return [
        {"name": "Is /dev/kvm usable (else QEMU emulation, slower)", "ansible.builtin.shell":
            "test -c /dev/kvm && test -r /dev/kvm && test -w /dev/kvm && echo kvm || echo qemu",
         "register": "stack_tui_virt", "changed_when": False},
        {"name": "Does the host run in a container", "ansible.builtin.command":
            "systemd-detect-virt --container", "register": "stack_tui_container",
         "changed_when": False, "failed_when": False},
        # a restarted libvirtd: nova-compute restarted after it (the engine's
        # nova_compute_restart)
        *key_value_lines(nova.LIBVIRTD_CONF, lines, ["restart libvirtd", "restart nova-compute"]),
        {**key_value_lines(nova.QEMU_CONF, {"cgroup_controllers": "[ ]"},
                           ["restart libvirtd", "restart nova-compute"])[0],
         "when": "stack_tui_container.rc == 0 and stack_tui_container.stdout | trim "
                 "not in ['', 'none']"},
        {"name": "nova-compute.conf: [libvirt] virt_type", "community.general.ini_file": {
            "path": nova.NOVA_COMPUTE_CONF, "section": "libvirt", "option": "virt_type",
            "value": "{{ stack_tui_virt.stdout | trim }}", "owner": "root", "group": "nova",
            "mode": "0640"}, "notify": "restart nova-compute"},
        *service_up("libvirtd"),
    ]


def nova_role(profile) -> dict:
    units = list(nova.UNITS)
    url = f"http://{url_host(profile.endpoint_host)}:{nova.PORT}/v2.1"
    tasks = [
        *user_tasks("nova", "service", SERVICE_ROLES),
        *catalog("nova", "compute", "OpenStack Compute", url, profile.openstack.region),
        *_ini(nova.NOVA_CONF, src.nova_settings(profile), "nova", "restart nova"),
        {"name": f"Is there {nova.CONSOLE_DEFAULTS}", "ansible.builtin.stat": {
            "path": nova.CONSOLE_DEFAULTS}, "register": "stack_tui_console_defaults"},
        {"name": "nova-consoleproxy runs the noVNC proxy (Debian's default: spicehtml5)",
         "ansible.builtin.lineinfile": {"path": nova.CONSOLE_DEFAULTS,
                                        "regexp": "^NOVA_CONSOLE_PROXY_TYPE=",
                                        "line": "NOVA_CONSOLE_PROXY_TYPE=novnc"},
         "notify": "restart nova", "when": "stack_tui_console_defaults.stat.exists"},
        *uwsgi_tasks(nova.UWSGI_INIS, "restart nova"),
        *marker_block("nova.schema", "nova-common", "Nova schemas and cells (cell0, cell1)",
                      CELLS),
        *_libvirt_tasks(),
        {"name": "Restart Nova now if its configuration changed",
         "ansible.builtin.meta": "flush_handlers"},
        {"name": "Start and enable Nova's services", "ansible.builtin.systemd_service": {
            "name": "{{ item }}", "state": "started", "enabled": True}, "loop": units},
        {"name": f"Nova answers on {nova.PORT}", "ansible.builtin.uri": {
            "url": f"http://127.0.0.1:{nova.PORT}/", "status_code": [200, 300, 401]},
         "register": "stack_tui_nv_up", "until": "stack_tui_nv_up.status in [200, 300, 401]", "retries": 90, "delay": 2},
        {"name": "Is this host mapped into a cell", "ansible.builtin.shell":
            "mysql --batch --skip-column-names -e \"SELECT COUNT(*) FROM "
            "nova_api.host_mappings WHERE host = '$(hostname)'\"",
         "register": "stack_tui_mapped", "changed_when": False},
        {"name": "Map this compute host into cell1 (once nova-compute registered it)",
         "ansible.builtin.shell": DISCOVER, "when": "stack_tui_mapped.stdout | trim == '0'"},
    ]
    handlers = [
        {"name": "restart nova", "ansible.builtin.systemd_service": {
            "name": "{{ item }}", "state": "restarted"}, "loop": units},
        restart("libvirtd"),
        restart("nova-compute"),
    ]
    return role(tasks, handlers=handlers)
