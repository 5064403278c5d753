"""Neutron (networking): service user, endpoints, neutron.conf, ML2 (a flat provider network
on a local veth pair and VXLAN self-service networks), the L3, DHCP and metadata agents,
schema and services.

The mechanism is ``layout(plat).mechanism``, per platform: ``linuxbridge`` where Neutron
still has it (Debian 12, Zed: experimental there, enabled explicitly; these kernels have bridge
and vxlan but no openvswitch module), ``openvswitch`` with Open vSwitch's userspace datapath
(``ovs_datapath = "netdev"``: ovs-vswitchd switches in userspace over tap devices and packet
sockets, no kernel module) where Linux bridge is gone (Debian 13, Epoxy).  OVN can be a third.
The provider network is a veth pair made at boot by a small unit: the host keeps
``PROVIDER_GATEWAY`` on one end, the agent takes the other (in Open vSwitch: a port of
``PROVIDER_BRIDGE``), so floating IPs answer from the host without touching its management
interface.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .. import inifile
from ..engine import Phase, Step, StepError
from ..platforms import Platform
from . import ovs, ovs_tunnel
from .base import PerPlatform, Port, Rule, Secret, Service, SummaryLine
from .catalog import (UWSGI, authtoken, endpoints_ok, ensure_endpoints, messaging,
                      service_auth, service_url, uwsgi_ok, uwsgi_run)
from .common import SERVICE as SERVICE_LIMIT
from .common import one_line_settings
from .common import (LOOK, SERVICE_ROLES, db_url, ensure_service, ensure_user, ini_target,
                     marker_check, marker_set, mgmt, pkg_version, platform_of, put_file, q,
                     read_remote, service_ok, wait_http)

PORT = 9696
NEUTRON_CONF = "/etc/neutron/neutron.conf"
ML2_CONF = "/etc/neutron/plugins/ml2/ml2_conf.ini"
LB_CONF = "/etc/neutron/plugins/ml2/linuxbridge_agent.ini"
OVS_CONF = ovs.OVS_CONF
L3_CONF = "/etc/neutron/l3_agent.ini"
DHCP_CONF = "/etc/neutron/dhcp_agent.ini"
META_CONF = "/etc/neutron/metadata_agent.ini"

PHYSNET = "provider"
PROVIDER_IF, PROVIDER_PEER = "stk-ext", "stk-ext-p"
# DevStack's public range.  Not a documentation range: our machines resolve their package
# mirror into 203.0.113.0/24, which a provider network there took away from apt.
PROVIDER_CIDR, PROVIDER_GATEWAY = "172.24.4.0/24", "172.24.4.1"
PROVIDER_POOL = ("172.24.4.100", "172.24.4.199")
PROVIDER_UNIT = "stack-tui-provider.service"
PROVIDER_UNIT_PATH = f"/etc/systemd/system/{PROVIDER_UNIT}"
PROVIDER_BRIDGE = ovs.PROVIDER_BRIDGE  # Open vSwitch only: the bridge mapped to PHYSNET


@dataclass(frozen=True)
class Layout:
    # The ML2 mechanism ("linuxbridge", "openvswitch"; OVN later; "" none), Open vSwitch's
    # datapath ("netdev": userspace, no kernel module), whether linuxbridge must be enabled
    # as experimental, and the API server's units.
    mechanism: str = "linuxbridge"
    ovs_datapath: str = "system"
    linuxbridge_experimental: bool = False
    server_units: tuple[str, ...] = ("neutron-server",)


_SPLIT_SERVER = ("neutron-api", "neutron-rpc-server")
LAYOUT: PerPlatform[Layout] = PerPlatform(
    deb=Layout(), rpm=Layout(),
    overrides={
        # Neutron 26 (2025.1) removed the Linux bridge driver and agent (Debian's
        # neutron-linuxbridge-agent is an empty leftover: no /usr/bin/neutron-linuxbridge-agent),
        # and these kernels have no openvswitch module: Open vSwitch's userspace datapath.
        "debian-13": {"mechanism": "openvswitch", "ovs_datapath": "netdev",
                      "server_units": _SPLIT_SERVER},
        # Neutron 21 (Zed) already calls linuxbridge experimental: the server refuses the
        # mechanism ("has to be explicitly enabled in 'cfg.CONF.experimental'") unless enabled.
        "debian-12": {"linuxbridge_experimental": True, "server_units": _SPLIT_SERVER},
    })
PACKAGES = PerPlatform(
    deb=("neutron-server", "neutron-linuxbridge-agent", "neutron-dhcp-agent", "neutron-l3-agent",
         "neutron-metadata-agent",
         "iputils-ping"),  # the verification pings a floating IP from the host
    # not verified: RDO's names for the same pieces
    rpm=("openstack-neutron", "openstack-neutron-ml2", "openstack-neutron-linuxbridge"),
    overrides={
        "debian-13": ("neutron-server", "neutron-openvswitch-agent", "neutron-dhcp-agent",
                      "neutron-l3-agent", "neutron-metadata-agent", "iputils-ping"),
    })

# per mechanism: the L2 agent's unit, its agent_type in neutron.agents and its config file
AGENTS = {"linuxbridge": ("neutron-linuxbridge-agent", "Linux bridge agent", LB_CONF),
          "openvswitch": ("neutron-openvswitch-agent", "Open vSwitch agent", OVS_CONF)}


def layout(plat: Platform) -> Layout:
    return LAYOUT(plat)


def network_url(ctx) -> str:
    return service_url(ctx, PORT)


def _user_check(ctx) -> bool:
    return ensure_user(ctx, "neutron", ctx.secrets["neutron_password"], "service", SERVICE_ROLES,
                       check_only=True)


def _user_run(ctx) -> None:
    ensure_user(ctx, "neutron", ctx.secrets["neutron_password"], "service", SERVICE_ROLES)


def _endpoints_check(ctx) -> bool:
    return endpoints_ok(ctx, "network", network_url(ctx))


def _endpoints_run(ctx) -> None:
    ensure_endpoints(ctx, "neutron", "network", "OpenStack Networking", network_url(ctx))


# -- the provider network's veth pair -------------------------------------------------------

PROVIDER_UNIT_BODY = f"""# Written by stack-tui: the local end of Neutron's flat provider network
[Unit]
Description=stack-tui provider network ({PROVIDER_IF} <-> {PROVIDER_PEER})
Before=neutron-linuxbridge-agent.service
After=network.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/bin/sh -c 'ip link show {PROVIDER_IF} >/dev/null 2>&1 || ip link add {PROVIDER_IF} type veth peer name {PROVIDER_PEER}; ip addr flush dev {PROVIDER_IF}; ip addr add {PROVIDER_GATEWAY}/24 dev {PROVIDER_IF}; ip link set {PROVIDER_IF} up; ip link set {PROVIDER_PEER} up'

[Install]
WantedBy=multi-user.target
"""


def provider_unit(lay: Layout) -> str:
    if lay.mechanism == "openvswitch":
        return ovs.provider_unit(PROVIDER_IF, PROVIDER_PEER, PROVIDER_GATEWAY, lay.ovs_datapath)
    return PROVIDER_UNIT_BODY


def _provider_check(ctx) -> bool:
    lay = layout(platform_of(ctx))
    if read_remote(ctx, PROVIDER_UNIT_PATH) != provider_unit(lay):
        return False
    r = ctx.sh(f"ip -o -4 addr show dev {PROVIDER_IF} 2>/dev/null",
               check=False, quiet=True, timeout=LOOK)
    if not (service_ok(ctx, PROVIDER_UNIT) and f"{PROVIDER_GATEWAY}/24" in r.stdout):
        return False
    return lay.mechanism != "openvswitch" or ovs.provider_ok(ctx, PROVIDER_PEER)


def _provider_run(ctx) -> None:
    lay = layout(platform_of(ctx))
    if lay.mechanism == "openvswitch":
        ovs.ensure_vswitchd(ctx)  # before the unit below starts Open vSwitch
    if put_file(ctx, PROVIDER_UNIT_PATH, provider_unit(lay)):
        ctx.sh("systemctl daemon-reload", quiet=True, timeout=SERVICE_LIMIT)
    ensure_service(ctx, PROVIDER_UNIT, restart=True)


# -- configuration ------------------------------------------------------------------------------

def neutron_values(ctx, controller: bool = True) -> dict:
    """neutron.conf's settings: the server's, or without ``controller`` a compute node's
    (its L2 agent only: the queue on the controller, no database, no token validation;
    its name in Neutron is the profile's host name, as nova-compute's, so ports bind)."""
    lay = layout(platform_of(ctx))
    if controller:
        v = {
            ("DEFAULT", "core_plugin"): "ml2",
            ("DEFAULT", "service_plugins"): "router",
            ("DEFAULT", "interface_driver"): lay.mechanism,
            ("DEFAULT", "auth_strategy"): "keystone",
            ("DEFAULT", "notify_nova_on_port_status_changes"): "true",
            ("DEFAULT", "notify_nova_on_port_data_changes"): "true",
            **messaging(ctx),
            ("database", "connection"): db_url(ctx, "neutron", "neutron_db_password"),
            **authtoken(ctx, "neutron", "neutron_password"),
        }
    else:
        v = {("DEFAULT", "host"): ctx.profile.host.name, **messaging(ctx)}
    v[("oslo_concurrency", "lock_path")] = "/var/lib/neutron/tmp"
    if controller:
        # one host: one RPC worker each, not one per CPU
        v[("DEFAULT", "rpc_workers")] = "1"
        v[("DEFAULT", "rpc_state_report_workers")] = "1"
        if "nova" in ctx.profile.openstack.services:
            v.update(service_auth(ctx, "nova", "nova", "nova_password"))
    if lay.mechanism == "linuxbridge" and lay.linuxbridge_experimental:
        v[("experimental", "linuxbridge")] = "true"
    return v


def agent_file(ctx, provider: bool = True) -> tuple[str, dict, str]:
    """(path, settings, group) of the L2 agent's file: VXLAN from this host's management
    address; with ``provider`` the flat provider network on PROVIDER_PEER (the controller;
    a compute node has no provider interface: its guests reach out through VXLAN)."""
    m = mgmt(ctx)
    lay = layout(platform_of(ctx))
    if lay.mechanism == "openvswitch":
        v = ovs.agent_values(lay.ovs_datapath, PHYSNET, m)
        if not provider:   # the agent refuses to start while a mapped bridge is missing
            v[("ovs", "bridge_mappings")] = ""
        return OVS_CONF, v, "neutron"
    v = ({("linux_bridge", "physical_interface_mappings"): f"{PHYSNET}:{PROVIDER_PEER}"}
         if provider else {})
    v.update({
        ("vxlan", "enable_vxlan"): "true",
        ("vxlan", "local_ip"): m,
        ("vxlan", "l2_population"): "true",
        ("securitygroup", "enable_security_group"): "true",
        ("securitygroup", "firewall_driver"):
            "neutron.agent.linux.iptables_firewall.IptablesFirewallDriver",
    })
    return LB_CONF, v, "neutron"


def _files(ctx) -> list[tuple[str, dict, str]]:
    """(path, settings, group) of every Neutron file stack-tui writes."""
    m = mgmt(ctx)
    secret = inifile.oslo_value(ctx.secrets["metadata_secret"])
    lay = layout(platform_of(ctx))
    return [
        (NEUTRON_CONF, neutron_values(ctx), "neutron"),
        (ML2_CONF, {
            ("ml2", "type_drivers"): "flat,vxlan",
            ("ml2", "tenant_network_types"): "vxlan",
            ("ml2", "mechanism_drivers"): f"{lay.mechanism},l2population",
            ("ml2", "extension_drivers"): "port_security",
            ("ml2_type_flat", "flat_networks"): PHYSNET,
            ("ml2_type_vxlan", "vni_ranges"): "1:1000",
        }, "neutron"),
        agent_file(ctx),
        (L3_CONF, {("DEFAULT", "interface_driver"): lay.mechanism}, "neutron"),
        (DHCP_CONF, {
            ("DEFAULT", "interface_driver"): lay.mechanism,
            ("DEFAULT", "dhcp_driver"): "neutron.agent.linux.dhcp.Dnsmasq",
            ("DEFAULT", "enable_isolated_metadata"): "true",
        }, "neutron"),
        (META_CONF, {
            ("DEFAULT", "nova_metadata_host"): m,
            ("DEFAULT", "metadata_proxy_shared_secret"): secret,
        }, "neutron"),
    ]


def _targets(ctx):
    for path, values, group in _files(ctx):
        old, new = ini_target(ctx, path, one_line_settings(path, values))
        yield path, old, new, group


# Debian's neutron-api runs 8 uWSGI processes of 32 threads; one host needs 2.  (Its ini
# says `Connection: close` itself.)
UWSGI_INIS = {"/etc/neutron/neutron-api-uwsgi.ini": {"processes": "2"}}


def _conf_check(ctx) -> bool:
    return (all(old == new for _p, old, new, _g in _targets(ctx))
            and uwsgi_ok(ctx, UWSGI_INIS))


def _conf_run(ctx) -> None:
    for path, old, new, group in _targets(ctx):
        if put_file(ctx, path, new, mode=0o640, owner="root", group=group, old=old):
            ctx.cache["neutron_conf_changed"] = True
    if uwsgi_run(ctx, UWSGI_INIS):
        ctx.cache["neutron_conf_changed"] = True


# -- schema -----------------------------------------------------------------------------------

def _schema_value(ctx) -> str:
    import hashlib

    return (f"{pkg_version(ctx, 'neutron-common')} "
            f"{hashlib.sha256(mgmt(ctx).encode()).hexdigest()[:12]}")


def _schema_check(ctx) -> bool:
    return marker_check(ctx, "neutron.schema", _schema_value(ctx))


def _schema_run(ctx) -> None:
    r = ctx.sh(f"runuser -u neutron -- neutron-db-manage --config-file {NEUTRON_CONF} "
               f"--config-file {ML2_CONF} upgrade head 2>&1", check=False, quiet=True,
               timeout=900)
    if not r.ok:
        raise StepError(f"neutron-db-manage upgrade head failed (exit {r.status}).", "",
                        "read the output below and /var/log/neutron/ on the host",
                        tail=r.lines[-20:])
    marker_set(ctx, "neutron.schema", _schema_value(ctx))


# -- services ---------------------------------------------------------------------------------

def _agent(plat: Platform) -> tuple[str, str, str]:
    return AGENTS[layout(plat).mechanism or "linuxbridge"]


def configs(plat: Platform) -> tuple[str, ...]:
    return (NEUTRON_CONF, ML2_CONF, _agent(plat)[2], L3_CONF, DHCP_CONF, META_CONF)


def units(plat: Platform) -> tuple[str, ...]:
    return layout(plat).server_units + (
        _agent(plat)[0], "neutron-dhcp-agent", "neutron-l3-agent", "neutron-metadata-agent")


def _services_check(ctx) -> bool:
    if ctx.cache.get("neutron_conf_changed"):
        return False
    return all(service_ok(ctx, u) for u in units(platform_of(ctx)))


def _services_run(ctx) -> None:
    restart = bool(ctx.cache.get("neutron_conf_changed"))
    for unit in units(platform_of(ctx)):
        active = ctx.sh(f"systemctl is-active -q {q(unit)}",
                        check=False, quiet=True, timeout=LOOK).ok
        ensure_service(ctx, unit, restart=restart and active)
    wait_http(ctx, f"http://127.0.0.1:{PORT}/", "Neutron API", units(platform_of(ctx))[0],
              "/var/log/neutron/neutron-api.log")


def _agents_ok(ctx) -> tuple[bool, list[str]]:
    r = ctx.sh("mysql --batch --skip-column-names -e \"SELECT agent_type, "
               "TIMESTAMPDIFF(SECOND, heartbeat_timestamp, UTC_TIMESTAMP()) FROM neutron.agents\" "
               "2>/dev/null", check=False, quiet=True, timeout=LOOK)
    alive = {ln.rsplit("\t", 1)[0] for ln in r.stdout.splitlines()
             if ln.rsplit("\t", 1)[-1].lstrip("-").isdigit() and int(ln.rsplit("\t", 1)[-1]) < 75}
    want = [AGENTS[layout(platform_of(ctx)).mechanism][1], "DHCP agent", "L3 agent",
            "Metadata agent"]
    return all(w in alive for w in want), [w for w in want if w not in alive]


def _agents_check(ctx) -> bool:
    return _agents_ok(ctx)[0]


def _agents_run(ctx) -> None:
    import time

    deadline = time.monotonic() + 90
    while True:
        ok, missing = _agents_ok(ctx)
        if ok:
            ctx.output(f"agents alive: {layout(platform_of(ctx)).mechanism}, DHCP, L3, "
                       "metadata")
            return
        if time.monotonic() > deadline:
            tail = ctx.sh("grep -hE 'ERROR|CRITICAL' /var/log/neutron/*.log | tail -n 12",
                          check=False, quiet=True, timeout=LOOK).lines
            raise StepError(f"Neutron agents did not report in: {', '.join(missing)}.",
                            "an agent failed to start or cannot reach RabbitMQ",
                            "read the agents' logs below (/var/log/neutron/)", tail=tail)
        ctx.cancel.wait(2)


def _no_mechanism(ctx) -> None:
    plat = platform_of(ctx)
    raise StepError(f"Neutron cannot be installed on {plat.name} by stack-tui yet.",
                    f"stack-tui knows no network mechanism (Linux bridge, Open vSwitch) for "
                    f"OpenStack {plat.openstack} on this platform",
                    "deselect Neutron and Nova, or install compute on Debian 13 or 12")


def _no_mechanism_phases(plat: Platform) -> list[Phase]:
    # A platform whose layout names no mechanism (none today): one explained stop.
    return [Phase("neutron", "Neutron (networking)", [
        Step("neutron.mechanism", "Neutron needs a network mechanism on this platform",
             run=_no_mechanism, check=None,
             detail=f"{plat.name}: no network mechanism known for OpenStack {plat.openstack}; "
                    "stops here with an explanation"),
    ])]


def phases(profile, plat: Platform) -> list[Phase]:
    lay = layout(plat)
    if not lay.mechanism:
        return _no_mechanism_phases(plat)
    conf_files = [*configs(plat), *UWSGI_INIS]
    exp = (" ([experimental] linuxbridge = true: experimental on this release)"
           if lay.linuxbridge_experimental else "")
    ovs_ = lay.mechanism == "openvswitch"
    if ovs_:
        exp = (f" (datapath {lay.ovs_datapath}"
               + (": userspace, no kernel module)" if lay.ovs_datapath == "netdev" else ")"))
    # several hosts on the userspace datapath: the VXLAN endpoint first (ovs_tunnel)
    tunnel = [ovs_tunnel.step("neutron")] if ovs_tunnel.needed(profile, lay) else []
    return [Phase("neutron", "Neutron (networking)", [
        *tunnel,
        Step("neutron.user", "User neutron with roles admin and service on project service",
             run=_user_run, check=_user_check,
             detail="keystoneauth1: user neutron, password ********, admin+service on service"),
        Step("neutron.endpoints", f"Service network and its three endpoints on {PORT}",
             run=_endpoints_run, check=_endpoints_check,
             detail=f"service neutron (type network); http://<endpoint host>:{PORT}"),
        Step("neutron.provider", f"Provider network link {PROVIDER_IF} ({PROVIDER_GATEWAY}/24)",
             run=_provider_run, check=_provider_check,
             files=[PROVIDER_UNIT_PATH, *([ovs.VSWITCHD_DROPIN] if ovs_ else [])],
             detail=f"a veth pair made at boot by {PROVIDER_UNIT}: the host keeps "
                    f"{PROVIDER_GATEWAY} on {PROVIDER_IF}, the agent bridges {PROVIDER_PEER}"
                    + (f" (a port of {PROVIDER_BRIDGE}); ovs-vswitchd drop-in: "
                       "userspace-tso-enable (finishes offloaded checksums)" if ovs_ else "")),
        Step("neutron.config", f"neutron.conf, ML2 and agents: {lay.mechanism}{exp}",
             run=_conf_run, check=_conf_check, files=conf_files,
             detail="ML2 flat (physnet provider) + VXLAN self-service, l2population, "
                    f"port security; L3/DHCP interface_driver {lay.mechanism}; metadata shared "
                    "secret; transport_url with quorum queues on RabbitMQ 4"),
        Step("neutron.schema", "Create the Neutron database schema", run=_schema_run,
             check=_schema_check,
             detail="runuser -u neutron -- neutron-db-manage upgrade head"),
        Step("neutron.services", "Start neutron server and agents", run=_services_run,
             check=_services_check,
             detail="systemctl enable --now " + ", ".join(units(plat))
                    + f"; wait until :{PORT} answers"),
        Step("neutron.agents", "Neutron agents report alive", run=_agents_run,
             check=_agents_check,
             detail=f"neutron.agents heartbeats: {lay.mechanism}, DHCP, L3, metadata"),
    ])]


def summary(profile, facts) -> tuple[SummaryLine, ...]:
    """The end of a run: the networks the verification made and left for the user (the
    fact cloud.objects records as it finds them)."""
    found = facts.get("networks")
    if "neutron" not in profile.openstack.services or not isinstance(found, dict):
        return ()
    v = {k: str(found.get(k) or "") for k in ("provider", "floating", "network", "cidr",
                                               "router")}
    out = []
    if v["provider"]:
        out.append(SummaryLine("Provider", f"network {v['provider']}, floating IPs "
                               f"{v['floating'] or 'none'}",
                               cli=f"Provider network: {v['provider']}, floating IPs "
                                   f"{v['floating'] or 'none'}"))
    if v["network"]:
        net = " ".join(x for x in (v["network"], v["cidr"]) if x)
        router = f", router {v['router']}" if v["router"] else ""
        out.append(SummaryLine("Demo", f"network {net}{router}",
                               cli=f"Demo network: {net}{router} (project demo; made by the "
                                   "verification and kept for your servers)"))
    return tuple(out)

RULES = (
    Rule("neutron-experimental",
         re.compile(r"Feature '\w+' is experimental and has to be explicitly enabled", re.I),
         "error",
         "Neutron refuses a mechanism its release calls experimental (linuxbridge) unless "
         "[experimental] enables it",
         "Retry the neutron.config step (it writes [experimental] linuxbridge = true), then "
         "neutron.services"),
)


# Open vSwitch mechanism only: ovsdb-server's manager (ptcp:6640:127.0.0.1, made by the agent)
# and the agent's own OpenFlow controller (of_listen_port, 127.0.0.1:6633).
OVS_PORTS = (Port(6640, frozenset({"ovsdb-server"}), "Open vSwitch database (OVSDB manager)"),
             Port(6633, frozenset({"neutron-openvsw", "neutron-openvswitch-agent"}),
                  "OpenFlow controller of the Open vSwitch agent"))


SERVICE = Service(
    "neutron", "Neutron", "networking", phases,
    requires=("keystone", "mariadb", "memcached", "rabbitmq"),
    secrets=(Secret("neutron_db_password", "MariaDB user 'neutron'", "database"),
             Secret("neutron_password", "Keystone 'neutron' service user", "keystone"),
             Secret("metadata_secret", "Shared secret of Nova's metadata proxy")),
    ports=(Port(PORT, UWSGI | {"neutron-server", "neutron-api"}, "Neutron API"), *OVS_PORTS),
    database="neutron",
    default=False,
    rules=RULES,
    configs=configs,
    units=units,
    logs=lambda plat: ("/var/log/neutron/neutron-api.log",
                       f"/var/log/neutron/{_agent(plat)[0]}.log",
                       "/var/log/neutron/neutron-l3-agent.log",
                       "/var/log/neutron/neutron-dhcp-agent.log"),
    packages=PACKAGES,
    summary=summary,
)
