"""Several hosts on Open vSwitch's userspace datapath (Debian 13): the VXLAN tunnel endpoint.

With ``datapath_type = netdev`` ovs-vswitchd encapsulates VXLAN itself and sends the frames out
through one of its own ports, chosen by its own routing table (``ovs-appctl ovs/route/show``,
copied from the kernel's) and neighbour table (``ovs-appctl tnl/arp/show``, learned from the
ARP that crosses its bridges).  The kernel's interface holding the tunnel address must then be
an internal port of an Open vSwitch bridge that also holds the physical port (Open vSwitch's
howto/userspace-tunneling): ``br-phy`` (netdev) with the management interface (``mgmt0`` in a
sandbox) as its port, and the management address moved from that interface to ``br-phy``.

The address stays the same, so what is bound to it (MariaDB, RabbitMQ and memcached on the
controller) keeps its listening sockets: Linux binds a socket to an address of the host, not
of an interface.  The move is a small unit, ``stack-tui-tunnel.service``, made like the
provider network's: it runs at every boot after Open vSwitch (whose database keeps the bridge
and its port) and again whenever ovs-vswitchd restarts (which makes ``br-phy``'s tap device
anew, without the address), before the Open vSwitch agent.

Only for several hosts: one host has no VXLAN peer, and gets no ``br-phy``.  A management
interface that carries other routes than its subnet's (a default route) is refused: only the
address is moved.
"""

from __future__ import annotations

import re

from ..engine import Step, StepError
from . import ovs
from .common import LOOK, controller_mgmt, ensure_service, mgmt, put_file, q, read_remote
from .common import SERVICE as SERVICE_LIMIT
from .common import service_ok

BRIDGE = "br-phy"
UNIT = "stack-tui-tunnel.service"
UNIT_PATH = f"/etc/systemd/system/{UNIT}"
RABBITMQ_PORT = 5672   # what a compute host must reach on the controller over the tunnel path
_IFACE = re.compile(r"[A-Za-z0-9_.@-]{1,15}")


def needed(profile, lay) -> bool:
    """Several hosts on the userspace datapath: VXLAN between them needs ``br-phy``."""
    return (len(profile.hosts) > 1 and lay.mechanism == "openvswitch"
            and lay.ovs_datapath == "netdev")


def unit_body(iface: str, addr: str, prefix: str) -> str:
    return f"""# Written by stack-tui: the VXLAN tunnel endpoint of Open vSwitch's userspace datapath.
# {addr}/{prefix} moves from {iface} to {BRIDGE} (netdev), which holds {iface} as its port:
# ovs-vswitchd then routes and resolves the tunnels' peers itself.
[Unit]
Description=stack-tui tunnel endpoint ({addr}/{prefix} on {BRIDGE}, {iface} its port)
Wants=openvswitch-switch.service
After=network.target openvswitch-switch.service ovs-vswitchd.service
PartOf=ovs-vswitchd.service
Before=neutron-openvswitch-agent.service nova-compute.service

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/bin/ovs-vsctl --timeout=30 --may-exist add-br {BRIDGE} -- set bridge {BRIDGE} datapath_type=netdev -- --may-exist add-port {BRIDGE} {iface}
ExecStart=/bin/sh -c 'ip link set {iface} up && ip link set {BRIDGE} up && ip addr replace {addr}/{prefix} dev {BRIDGE} && {{ ip addr del {addr}/{prefix} dev {iface} 2>/dev/null; true; }}'

[Install]
WantedBy=multi-user.target
"""


# -- what the host has --------------------------------------------------------------------------

LOOK_SH = (f"ip -o -4 addr show 2>/dev/null; echo --; ovs-vsctl --timeout=10 list-ports {BRIDGE} "
           f"2>/dev/null; echo --; ovs-vsctl --timeout=10 get bridge {BRIDGE} datapath_type "
           "2>/dev/null")


def _look(ctx, addr: str) -> tuple[list[tuple[str, str]], list[str], str]:
    """(the interfaces holding ``addr``, with its prefix length), br-phy's ports, its
    datapath type ("" no such bridge)."""
    r = ctx.sh(LOOK_SH, check=False, quiet=True, timeout=LOOK)
    parts = (r.stdout + "\n--\n--\n").split("--\n")
    holders = []
    for ln in parts[0].splitlines():
        f = ln.split()
        if len(f) >= 4 and f[2] == "inet" and f[3].split("/")[0] == addr:
            holders.append((f[1].split("@")[0], f[3].partition("/")[2] or "32"))
    ports = [p for p in parts[1].split() if p]
    return holders, ports, parts[2].strip().strip('"')


def _iface(holders, ports) -> str | None:
    """The management interface: br-phy's port once it has one, else the interface that
    holds the address."""
    if len(ports) == 1:
        return ports[0]
    others = [i for i, _p in holders if i != BRIDGE]
    return others[0] if len(others) == 1 and not ports else None


def check(ctx) -> bool:
    addr = mgmt(ctx)
    holders, ports, datapath = _look(ctx, addr)
    if len(holders) != 1 or holders[0][0] != BRIDGE or len(ports) != 1 or datapath != "netdev":
        return False
    if read_remote(ctx, UNIT_PATH) != unit_body(ports[0], addr, holders[0][1]):
        return False
    return service_ok(ctx, UNIT) and ovs.vswitchd_ok(ctx)


def _refuse_routes(ctx, iface: str) -> None:
    r = ctx.sh(f"ip -4 route show dev {q(iface)} 2>/dev/null", check=False, quiet=True,
               timeout=LOOK)
    extra = [ln for ln in r.lines if ln.strip() and "proto kernel" not in ln]
    if extra:
        raise StepError(f"The management interface {iface} carries routes stack-tui would not "
                        "move to the tunnel bridge.",
                        f"VXLAN on Open vSwitch's userspace datapath needs the management "
                        f"address on {BRIDGE}; only the address moves, and these routes would "
                        "be lost: " + "; ".join(extra),
                        "give the hosts a management network of its own (no default route "
                        "on it), then Retry", tail=extra)


def _listeners(ctx, addr: str) -> list[int]:
    """The TCP ports listening on ``addr`` itself (MariaDB, RabbitMQ, memcached...)."""
    r = ctx.sh("ss -Hltn 2>/dev/null", check=False, quiet=True, timeout=LOOK)
    ports = set()
    for ln in r.lines:
        f = ln.split()
        if len(f) >= 4 and f[3].rpartition(":")[0] == addr and f[3].rpartition(":")[2].isdigit():
            ports.add(int(f[3].rpartition(":")[2]))
    return sorted(ports)


def _answers(ctx, addr: str, port: int) -> bool:
    return ctx.sh(f"timeout 5 bash -c {q(f'</dev/tcp/{addr}/{port}')} 2>/dev/null",
                  check=False, quiet=True, timeout=LOOK).ok


def _prove(ctx, targets: list[tuple[str, int]]) -> None:
    """Each (address, port) still accepts a TCP connection after the move."""
    dead = [f"{a}:{p}" for a, p in targets if not _answers(ctx, a, p)]
    if dead:
        raise StepError(f"After moving the management address to {BRIDGE}, {', '.join(dead)} "
                        "did not answer.",
                        "TCP does not cross Open vSwitch's userspace datapath (its port or "
                        "the tunnel bridge), or the service stopped",
                        f"on the host: ip addr show {BRIDGE}; ovs-vsctl show; "
                        "ovs-appctl ovs/route/show; then Retry")
    if targets:
        ctx.output("still answering: " + ", ".join(f"{a}:{p}" for a, p in targets))


def run(ctx) -> None:
    addr = mgmt(ctx)
    holders, ports, _dp = _look(ctx, addr)
    iface = _iface(holders, ports)
    if iface is None or not _IFACE.fullmatch(iface) or not holders:
        raise StepError(f"Found no single interface holding the management address {addr} to "
                        f"make the tunnel bridge {BRIDGE} with.",
                        f"holders: {', '.join(i for i, _p in holders) or 'none'}; "
                        f"{BRIDGE}'s ports: {', '.join(ports) or 'none'}",
                        f"on the host: ip -4 addr; ovs-vsctl show ({BRIDGE} should have exactly "
                        "the management interface as its port), then Retry")
    _refuse_routes(ctx, iface)
    prefix = holders[0][1]
    ctrl = controller_mgmt(ctx)
    local = _listeners(ctx, addr) if ctrl == addr else []
    ovs.ensure_vswitchd(ctx)   # the userspace offloads, before the bridge's first frame
    if put_file(ctx, UNIT_PATH, unit_body(iface, addr, prefix)):
        ctx.sh("systemctl daemon-reload", quiet=True, timeout=SERVICE_LIMIT)
    ensure_service(ctx, UNIT, restart=True)
    holders, ports, datapath = _look(ctx, addr)
    if [i for i, _p in holders] != [BRIDGE] or ports != [iface] or datapath != "netdev":
        raise StepError(f"{UNIT} ran, but {addr} is not on {BRIDGE} alone with {iface} its "
                        "port.", f"now on: {', '.join(i for i, _p in holders) or 'none'}",
                        f"journalctl -u {UNIT}; ovs-vsctl show; then Retry")
    ctx.output(f"{addr}/{prefix} on {BRIDGE} (netdev), {iface} its port")
    _prove(ctx, [(addr, p) for p in local] if ctrl == addr else [(ctrl, RABBITMQ_PORT)])


def step(prefix: str) -> Step:
    return Step(f"{prefix}.tunnel", f"VXLAN endpoint: the management address on {BRIDGE}",
                run=run, check=check, files=[UNIT_PATH, ovs.VSWITCHD_DROPIN],
                detail=f"{UNIT}: {BRIDGE} (datapath netdev) with the management interface as "
                       "its port, the management address moved onto it (the same address: "
                       "MariaDB, RabbitMQ, memcached keep answering); Open vSwitch's "
                       "userspace VXLAN routes through it")
