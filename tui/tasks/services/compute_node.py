"""Several hosts (issue 16): the steps of a compute-only host, and the controller's side of
them.

A compute host runs nova-compute (with libvirt) and Neutron's L2 agent, nothing else: no
database, no API, no token validation.  Every address its services use but its own is the
controller's management address (``common.controller_mgmt``): the queue, Glance, Keystone
(and Placement and Neutron through the catalog's internal endpoints, which ``catalog``
registers on that address).  The tenant network is the demo project's self-service (VXLAN)
network, routed on the controller, so a compute host has no provider interface: only VXLAN
from its own management address.

Its name in Nova and in Neutron is the profile's host name (``[DEFAULT] host`` in both
files), whatever the system's host name is: the controller discovers and waits for the
hosts by those names (``controller_phases``), and admin boots a server on each by them.

The settings are the controller's own builders (``nova.settings``, ``neutron.neutron_values``,
``neutron.agent_file``) asked for a compute node; libvirt is ``nova.libvirt_*`` as is.
"""

from __future__ import annotations

import time

from ..engine import Phase, Step, StepError
from ..platforms import Platform
from ..profile_schema import CONTROLLER
from . import neutron, nova, ovs_tunnel
from .base import PerPlatform
from .common import (LOOK, SQL, admin_session, controller_mgmt, ensure_service, forward,
                     ini_target, one_line_settings, platform_of, put_file, q, service_ok,
                     sql_literal)

PACKAGES = PerPlatform(
    # nova-compute-kvm pulls qemu-system-x86 only; libvirt comes with nova-compute
    deb=("nova-compute", "nova-compute-kvm", "neutron-linuxbridge-agent"),
    # not verified: RDO's names for the same pieces
    rpm=("openstack-nova-compute", "openstack-neutron-linuxbridge"),
    overrides={"debian-13": ("nova-compute", "nova-compute-kvm", "neutron-openvswitch-agent")})

MODULES_LOAD = "/etc/modules-load.d/stack-tui-neutron.conf"   # as the preflight's fix
MODULES_LOAD_BODY = "br_netfilter\n"
SYSCTL_CONF = "/etc/sysctl.d/stack-tui-neutron.conf"
SYSCTL_BODY = ("# Written by stack-tui: Neutron's security groups (iptables) must see bridged "
               "traffic\nnet.bridge.bridge-nf-call-iptables = 1\n"
               "net.bridge.bridge-nf-call-ip6tables = 1\n")
BRIDGE_NF = ("/proc/sys/net/bridge/bridge-nf-call-iptables",
             "/proc/sys/net/bridge/bridge-nf-call-ip6tables")
DISCOVER_TIMEOUT = 240
AGENTS_TIMEOUT = 120


def unsupported(profile, plat: Platform) -> str | None:
    """Why stack-tui cannot install this profile's hosts on ``plat`` (None: it can).  Said
    before the plan is built: a profile of one host is never refused here."""
    others = [h.name for h in profile.hosts if CONTROLLER not in h.roles]
    if len(profile.hosts) < 2:
        return None
    svc = set(profile.openstack.services)
    if others and not {"nova", "neutron"} <= svc:
        return (f"the compute hosts ({', '.join(others)}) need Nova and Neutron: select both, "
                "or remove those hosts")
    lay = neutron.layout(plat)
    if lay.mechanism not in ("linuxbridge", "openvswitch"):
        return (f"several hosts are not supported on {plat.name}: stack-tui knows no network "
                "mechanism for them there; install several hosts on Debian 13 or 12")
    return None


def controller_packages(profile, plat: Platform) -> tuple[str, ...]:
    """The controller's Nova packages (``nova.packages``): no nova-compute on a controller
    without the compute role."""
    return nova.packages(profile, plat)


def compute_hosts(profile) -> list[str]:
    """The names of the hosts that compute and are not the controller."""
    return [h.name for h in profile.hosts if "compute" in h.roles and CONTROLLER not in h.roles]


# -- the kernel: bridged traffic through iptables ----------------------------------------------

def _kernel_check(ctx) -> bool:
    if (ctx.transport.read_file(MODULES_LOAD), ctx.transport.read_file(SYSCTL_CONF)) != \
            (MODULES_LOAD_BODY, SYSCTL_BODY):
        return False
    r = ctx.sh(f"cat {' '.join(BRIDGE_NF)} 2>/dev/null", check=False, quiet=True, timeout=LOOK)
    return r.stdout.split() == ["1", "1"]


def _kernel_run(ctx) -> None:
    put_file(ctx, MODULES_LOAD, MODULES_LOAD_BODY)
    put_file(ctx, SYSCTL_CONF, SYSCTL_BODY)
    ctx.sh(f"test -e {BRIDGE_NF[0]} || modprobe br_netfilter 2>&1; true", check=False,
           quiet=True, timeout=LOOK)
    if not ctx.sh(f"test -e {BRIDGE_NF[0]}", check=False, quiet=True, timeout=LOOK).ok:
        raise StepError("br_netfilter is not loaded on this host and could not be loaded.",
                        "without it the Linux bridge agent's security groups filter nothing "
                        "(a container cannot load kernel modules)",
                        "on the machine that runs this kernel: modprobe br_netfilter, then Retry")
    ctx.sh(f"sysctl -q -p {SYSCTL_CONF}", quiet=True, timeout=LOOK)
    ctx.output("br_netfilter loaded (and at boot); bridge-nf-call-iptables/ip6tables = 1")


# -- nova.conf and neutron.conf of a compute node ------------------------------------------------

def _nova_check(ctx) -> bool:
    old, new = ini_target(ctx, nova.NOVA_CONF, nova.settings(ctx, controller=False))
    return old == new


def _nova_run(ctx) -> None:
    old, new = ini_target(ctx, nova.NOVA_CONF, nova.settings(ctx, controller=False))
    if put_file(ctx, nova.NOVA_CONF, new, mode=0o640, owner="root", group="nova", old=old):
        ctx.cache["nova_conf_changed"] = True


def _neutron_files(ctx) -> list[tuple[str, dict, str]]:
    path, values, group = neutron.agent_file(ctx, provider=False)
    if path == neutron.LB_CONF:
        # none, said so: a mapping the package or an older run left would name an interface
        # this host does not have, and the agent would refuse to start
        values = {("linux_bridge", "physical_interface_mappings"): "", **values}
    return [(neutron.NEUTRON_CONF, neutron.neutron_values(ctx, controller=False), "neutron"),
            (path, values, group)]


def _neutron_targets(ctx):
    for path, values, group in _neutron_files(ctx):
        old, new = ini_target(ctx, path, one_line_settings(path, values))
        yield path, old, new, group


def _neutron_check(ctx) -> bool:
    return all(old == new for _p, old, new, _g in _neutron_targets(ctx))


def _neutron_run(ctx) -> None:
    for path, old, new, group in _neutron_targets(ctx):
        if put_file(ctx, path, new, mode=0o640, owner="root", group=group, old=old):
            ctx.cache["neutron_conf_changed"] = True


# -- services ---------------------------------------------------------------------------------

def _units(ctx) -> list[tuple[str, bool]]:
    """(unit, whether a change of this run asks it to restart)."""
    agent = neutron.AGENTS[neutron.layout(platform_of(ctx)).mechanism][0]
    return [("nova-compute", bool(ctx.cache.get("nova_conf_changed")
                                  or ctx.cache.get("nova_compute_restart"))),
            (agent, bool(ctx.cache.get("neutron_conf_changed")))]


def _services_check(ctx) -> bool:
    return all(not changed and service_ok(ctx, unit) for unit, changed in _units(ctx))


def _services_run(ctx) -> None:
    for unit, changed in _units(ctx):
        active = ctx.sh(f"systemctl is-active -q {q(unit)}", check=False, quiet=True,
                        timeout=LOOK).ok
        ensure_service(ctx, unit, restart=changed and active)


def phases(view, plat: Platform) -> list[Phase]:
    """The steps of one compute-only host; ``view`` is the profile as seen from it
    (``profile.on(name)``)."""
    name = view.host.name
    lay = neutron.layout(plat)
    agent, _type, agent_conf = neutron.AGENTS[lay.mechanism]
    steps = []
    if ovs_tunnel.needed(view, lay):
        steps.append(ovs_tunnel.step("compute"))
    if lay.mechanism == "linuxbridge":
        steps.append(Step("compute.kernel", "br_netfilter for the security groups",
                          run=_kernel_run, check=_kernel_check,
                          files=[MODULES_LOAD, SYSCTL_CONF],
                          detail="modprobe br_netfilter (and at boot); "
                                 "net.bridge.bridge-nf-call-iptables/ip6tables = 1"))
    steps += [
        Step("compute.nova_config", "nova.conf of a compute node", run=_nova_run,
             check=_nova_check, files=[nova.NOVA_CONF],
             detail=f"[DEFAULT] host = {name}, my_ip and [vnc] on this host's management "
                    "address; transport_url, [glance], Keystone on the controller's; "
                    "[service_user], [placement], [neutron]; no database"),
        Step("compute.libvirt", "libvirt for nova-compute (KVM when usable, else QEMU)",
             run=nova.libvirt_run, check=nova.libvirt_check,
             files=[nova.NOVA_COMPUTE_CONF, nova.LIBVIRTD_CONF, nova.QEMU_CONF],
             detail="as on the controller: [libvirt] virt_type; libvirtd.conf socket group "
                    "libvirt, no polkit; in a container qemu.conf cgroup_controllers = [ ]"),
        Step("compute.neutron_config", f"neutron.conf and the {lay.mechanism} agent",
             run=_neutron_run, check=_neutron_check, files=[neutron.NEUTRON_CONF, agent_conf],
             detail=f"[DEFAULT] host = {name}, transport_url on the controller; VXLAN from "
                    "this host's management address, l2_population, security groups by "
                    + ("Open vSwitch's own firewall" if lay.mechanism == "openvswitch"
                       else "iptables") + "; no provider interface"),
        Step("compute.services", f"Start nova-compute and {agent}", run=_services_run,
             check=_services_check,
             detail="systemctl enable --now each; restarted only when its files changed"),
    ]
    return [Phase("compute", f"Compute host {name}", steps)]


# -- the controller's side: discover the hosts, wait for their agents ---------------------------

def _sql_rows(ctx, sql: str) -> list[list[str]]:
    r = ctx.sh(f"mysql --batch --skip-column-names -e {q(sql)} 2>/dev/null", check=False,
               quiet=True, timeout=SQL)
    return [ln.split("\t") for ln in r.stdout.splitlines() if ln.strip()] if r.ok else []


def _names_sql(names: list[str]) -> str:
    return ", ".join(sql_literal(n) for n in names)


def _mapped(ctx, names: list[str]) -> set[str]:
    """Those of ``names`` mapped into a cell (rows of nova_api.host_mappings)."""
    if not names:
        return set()
    rows = _sql_rows(ctx, "SELECT host FROM nova_api.host_mappings WHERE host IN "
                          f"({_names_sql(names)})")
    return {r[0] for r in rows} & set(names)


def _registered(ctx, names: list[str]) -> dict[str, str]:
    """Those of ``names`` with a nova-compute service record: seconds since its last report."""
    rows = _sql_rows(ctx, "SELECT host, TIMESTAMPDIFF(SECOND, updated_at, UTC_TIMESTAMP()) "
                          "FROM nova.services WHERE `binary` = 'nova-compute' AND deleted = 0 "
                          f"AND host IN ({_names_sql(names)})")
    return {r[0]: (r[1] if len(r) > 1 else "") for r in rows}


def _discover_check(ctx) -> bool:
    names = compute_hosts(ctx.profile)
    return _mapped(ctx, names) == set(names)


def _discover_run(ctx) -> None:
    names = compute_hosts(ctx.profile)
    deadline = time.monotonic() + DISCOVER_TIMEOUT
    by_service = ""
    while True:
        ctx.sh(f"runuser -u nova -- nova-manage cell_v2 discover_hosts{by_service} --verbose "
               "2>&1 | tail -n 5", check=False, quiet=True, timeout=120)
        missing = sorted(set(names) - _mapped(ctx, names))
        if not missing:
            ctx.output(f"mapped to cell1: {', '.join(names)}")
            return
        if time.monotonic() > deadline or ctx.cancel.is_set():
            raise _discover_error(ctx, missing)
        # A compute node Nova already marked mapped is skipped by the plain discovery (its
        # mapping lost, e.g. a cell rebuilt): a registered host is found by its service.
        by_service = " --by-service" if _registered(ctx, missing) else ""
        ctx.cancel.wait(5)


def _discover_error(ctx, missing: list[str]) -> StepError:
    seen = _registered(ctx, missing)
    mq = f"{controller_mgmt(ctx)}:5672"
    why = "; ".join(
        f"{n}: nova-compute registered (last report {seen[n]} s ago) but is not mapped"
        if n in seen else
        f"{n}: no nova-compute service record (it never reached the conductor through "
        f"RabbitMQ at {mq})" for n in missing)
    tail = ctx.sh("grep -hE 'ERROR|CRITICAL' /var/log/nova/nova-conductor.log "
                  "/var/log/nova/nova-scheduler.log 2>/dev/null | tail -n 10",
                  check=False, quiet=True, timeout=LOOK).lines
    return StepError(f"Compute hosts not mapped into cell1 after {DISCOVER_TIMEOUT // 60} "
                     f"minutes: {', '.join(missing)}.", why,
                     f"on each: `journalctl -u nova-compute` and /var/log/nova/nova-compute.log "
                     f"(libvirt, RabbitMQ at {mq} over the management network), then Retry",
                     tail=tail)


def _agent_rows(ctx, name: str, agent_type: str) -> list[dict]:
    """Neutron's agents of ``agent_type`` on host ``name`` (admin, the API over a forward)."""
    import urllib.parse

    query = urllib.parse.urlencode({"host": name, "agent_type": agent_type})
    url = f"http://127.0.0.1:{forward(ctx, neutron.PORT)}/v2.0/agents?{query}"
    resp = admin_session(ctx).get(url, raise_exc=False, timeout=30)
    if resp.status_code != 200:
        raise StepError(f"GET /v2.0/agents answered {resp.status_code}.",
                        ctx.redact(resp.text[:300]), "read the Neutron API's log on the host")
    return resp.json().get("agents", [])


def _agents_state(ctx) -> dict[str, str]:
    """Each compute host's agent: "alive", "dead" (registered, heartbeat stopped) or
    "missing" (never registered)."""
    agent_type = neutron.AGENTS[neutron.layout(platform_of(ctx)).mechanism][1]
    out = {}
    for name in compute_hosts(ctx.profile):
        rows = _agent_rows(ctx, name, agent_type)
        out[name] = ("alive" if any(r.get("alive") for r in rows)
                     else "dead" if rows else "missing")
    return out


def _agents_check(ctx) -> bool:
    return all(s == "alive" for s in _agents_state(ctx).values())


def _agents_run(ctx) -> None:
    deadline = time.monotonic() + AGENTS_TIMEOUT
    while True:
        state = _agents_state(ctx)
        bad = {n: s for n, s in state.items() if s != "alive"}
        if not bad:
            ctx.output(f"agents alive on {', '.join(state) or 'no compute host'}")
            return
        if time.monotonic() > deadline or ctx.cancel.is_set():
            raise _agents_error(ctx, bad)
        ctx.cancel.wait(3)


def _agents_error(ctx, bad: dict[str, str]) -> StepError:
    unit = neutron.AGENTS[neutron.layout(platform_of(ctx)).mechanism][0]
    mq = f"{controller_mgmt(ctx)}:5672"
    why = "; ".join(f"{n}: registered, but its heartbeat stopped (the agent died or lost "
                    f"RabbitMQ)" if s == "dead" else
                    f"{n}: never registered (not started, or cannot reach RabbitMQ at {mq})"
                    for n, s in sorted(bad.items()))
    tail = ctx.sh("grep -hE 'ERROR|CRITICAL' /var/log/neutron/*.log 2>/dev/null | tail -n 10",
                  check=False, quiet=True, timeout=LOOK).lines
    return StepError(f"The Neutron agent of {', '.join(sorted(bad))} did not report alive "
                     f"within {AGENTS_TIMEOUT} s.", why,
                     f"on each: `journalctl -u {unit}` and /var/log/neutron/{unit}.log, then "
                     "Retry", tail=tail)


def controller_phases(profile, plat: Platform) -> list[Phase]:
    """The controller's steps once every compute host ran ``phases``."""
    names = ", ".join(compute_hosts(profile)) or "none"
    agent = neutron.AGENTS[neutron.layout(plat).mechanism][1]
    return [Phase("computes", "Compute hosts join the cloud", [
        Step("computes.discover", "Map the compute hosts into cell1", run=_discover_run,
             check=_discover_check,
             detail=f"nova-manage cell_v2 discover_hosts until nova_api.host_mappings has "
                    f"each of: {names}"),
        Step("computes.agents", "Their Neutron agents report alive", run=_agents_run,
             check=_agents_check,
             detail=f"GET /v2.0/agents?host=NAME: an alive {agent} on each of: {names}"),
    ])]
