"""Neutron's Open vSwitch pieces (``neutron.LAYOUT`` mechanism ``openvswitch``): the agent's
settings, the provider bridge and what ovs-vswitchd needs for the userspace datapath.

With ``datapath_type = netdev`` ovs-vswitchd switches in userspace, without the openvswitch
kernel module: its internal ports (the DHCP and router namespaces' ports) are tap devices it
opens itself, other ports (the provider veth, the guests' taps made by libvirt) it reads with
packet sockets.  Measured on a Debian 13 host without the module (docs/compute.md):

- Debian's ``ovs-ctl start`` skips the missing module ("Skipping modprobe") and starts.
- Frames a kernel leaves with a partial checksum (checksum offload: a virtio guest through
  QEMU's tap, a veth) are forwarded unfinished, and the receiving kernel drops them: ICMP and
  DHCP (checksummed in software) pass, TCP and UDP do not.  ``userspace-tso-enable`` makes
  ovs-vswitchd read those ports with their offload header and finish the checksums; it is
  read once when ovs-vswitchd starts, so a drop-in sets it before every start.
- Restarting ovs-vswitchd cuts off the internal ports already moved into namespaces (it makes
  new taps of the same name): the modules restart it only when they first write the drop-in,
  which on a fresh install comes before its first start.
"""

from __future__ import annotations

from .common import LOOK, put_file, read_remote
from .common import SERVICE as SERVICE_LIMIT

OVS_CONF = "/etc/neutron/plugins/ml2/openvswitch_agent.ini"
PROVIDER_BRIDGE = "br-provider"  # the bridge mapped to the flat provider network
VSWITCHD = "ovs-vswitchd.service"
VSWITCHD_DROPIN = "/etc/systemd/system/ovs-vswitchd.service.d/stack-tui.conf"
VSWITCHD_DROPIN_BODY = """# Written by stack-tui: Neutron runs Open vSwitch's userspace datapath (netdev).  Without
# its userspace offloads ovs-vswitchd forwards the frames a guest (virtio) or a veth leaves
# with a partial checksum as they are, and the receiver drops them: ping and DHCP work, TCP
# and UDP do not.  ovs-vswitchd reads the setting once at start: set it before each start.
[Service]
ExecStartPre=/usr/bin/ovs-vsctl --no-wait --timeout=30 set Open_vSwitch . other_config:userspace-tso-enable=true
"""


def agent_values(datapath: str, physnet: str, local_ip: str) -> dict:
    """openvswitch_agent.ini: br-int and br-tun on ``datapath``, the provider bridge, VXLAN
    from the management address, and Open vSwitch's own conntrack firewall (the iptables one
    needs a Linux bridge and a veth pair per port)."""
    return {
        ("ovs", "datapath_type"): datapath,
        ("ovs", "bridge_mappings"): f"{physnet}:{PROVIDER_BRIDGE}",
        ("ovs", "local_ip"): local_ip,
        ("agent", "tunnel_types"): "vxlan",
        ("agent", "l2_population"): "true",
        ("securitygroup", "enable_security_group"): "true",
        ("securitygroup", "firewall_driver"): "openvswitch",
    }


def provider_unit(iface: str, peer: str, gateway: str, datapath: str) -> str:
    """The provider veth pair, its peer a port of PROVIDER_BRIDGE (the agent refuses to start
    while a mapped bridge is missing, and would not make it on the right datapath)."""
    return f"""# Written by stack-tui: the local end of Neutron's flat provider network
[Unit]
Description=stack-tui provider network ({iface} <-> {peer} on {PROVIDER_BRIDGE})
Wants=openvswitch-switch.service
After=network.target openvswitch-switch.service
Before=neutron-openvswitch-agent.service

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/bin/sh -c 'ip link show {iface} >/dev/null 2>&1 || ip link add {iface} type veth peer name {peer}; ip addr flush dev {iface}; ip addr add {gateway}/24 dev {iface}; ip link set {iface} up; ip link set {peer} up'
ExecStart=/usr/bin/ovs-vsctl --timeout=30 --may-exist add-br {PROVIDER_BRIDGE} -- set bridge {PROVIDER_BRIDGE} datapath_type={datapath} -- --may-exist add-port {PROVIDER_BRIDGE} {peer}

[Install]
WantedBy=multi-user.target
"""


def vswitchd_ok(ctx) -> bool:
    """The drop-in is there and its setting in the database."""
    if read_remote(ctx, VSWITCHD_DROPIN) != VSWITCHD_DROPIN_BODY:
        return False
    r = ctx.sh("ovs-vsctl --timeout=10 get Open_vSwitch . other_config:userspace-tso-enable "
               "2>/dev/null", check=False, quiet=True, timeout=LOOK)
    return r.stdout.split() == ['"true"']


def provider_ok(ctx, peer: str) -> bool:
    """The drop-in is there, the setting is in the database, the peer is on the bridge."""
    if read_remote(ctx, VSWITCHD_DROPIN) != VSWITCHD_DROPIN_BODY:
        return False
    r = ctx.sh("ovs-vsctl --timeout=10 get Open_vSwitch . other_config:userspace-tso-enable "
               f"2>/dev/null; ovs-vsctl --timeout=10 port-to-br {peer} 2>/dev/null",
               check=False, quiet=True, timeout=LOOK)
    return r.stdout.split() == ['"true"', PROVIDER_BRIDGE]


def ensure_vswitchd(ctx) -> None:
    """Write the drop-in.  On a fresh install ovs-vswitchd has not run yet (package installs
    start no service); one already running is restarted once so the setting takes effect."""
    if not put_file(ctx, VSWITCHD_DROPIN, VSWITCHD_DROPIN_BODY):
        return
    ctx.sh("systemctl daemon-reload", quiet=True, timeout=SERVICE_LIMIT)
    if ctx.sh(f"systemctl is-active -q {VSWITCHD}", check=False, quiet=True, timeout=LOOK).ok:
        ctx.sh(f"systemctl restart {VSWITCHD}", quiet=True, timeout=SERVICE_LIMIT)
