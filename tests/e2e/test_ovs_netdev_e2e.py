"""Open vSwitch's userspace datapath (netdev) on a real Debian 13 sandbox without the
openvswitch kernel module: what Neutron on Debian 13 rests on (services/ovs.py,
docs/compute.md).  Debian's units start ovs-vswitchd without the module; internal ports moved
into network namespaces (the DHCP and router ports) pass traffic; a frame a virtio guest leaves
with a partial checksum (through QEMU's tap, with its offload header) is lost unless
ovs-vswitchd runs with userspace-tso-enable, which stack-tui's drop-in sets; with it a veth's
UDP passes too."""

from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path

import pytest

from tui.tasks import sandbox
from tui.tasks.services import ovs

pytestmark = pytest.mark.e2e

# Writes UDP frames into a tap the way QEMU does for a virtio guest with checksum offload
# (IFF_VNET_HDR, virtio_net_hdr NEEDS_CSUM, only the pseudo-header sum in the UDP checksum),
# and the same frame fully checksummed, once the tap is a port of a bridge.
TAP_WRITER = r'''
import fcntl, os, socket, struct, sys, time
name, dst_mac = sys.argv[1], bytes.fromhex(sys.argv[2].replace(":", ""))
fd = os.open("/dev/net/tun", os.O_RDWR)
fcntl.ioctl(fd, 0x400454ca, struct.pack("16sH", name.encode(), 0x0002 | 0x1000 | 0x4000))
fcntl.ioctl(fd, 0x400454d8, struct.pack("i", 10))      # TUNSETVNETHDRSZ
fcntl.ioctl(fd, 0x400454d0, 0x01)                       # TUNSETOFFLOAD TUN_F_CSUM
os.system(f"ip link set {name} up")
while os.system(f"ovs-vsctl port-to-br {name} >/dev/null 2>&1"):
    time.sleep(0.2)
time.sleep(1)
def fold(b):
    b += b"\0" * (len(b) % 2)
    s = sum(struct.unpack(f"!{len(b) // 2}H", b))
    while s >> 16:
        s = (s & 0xffff) + (s >> 16)
    return s
src, dst = socket.inet_aton("10.6.0.9"), socket.inet_aton("10.6.0.2")
def frame(payload, partial):
    ulen = 8 + len(payload)
    pseudo = src + dst + struct.pack("!BBH", 0, 17, ulen)
    udp = struct.pack("!HHHH", 40000, 5556, ulen, 0) + payload
    c = fold(pseudo) if partial else ((~fold(pseudo + udp)) & 0xffff or 0xffff)
    udp = udp[:6] + struct.pack("!H", c) + udp[8:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + ulen, 1, 0, 64, 17, 0, src, dst)
    ip = ip[:10] + struct.pack("!H", (~fold(ip)) & 0xffff) + ip[12:]
    return dst_mac + bytes.fromhex("fa163e000099") + b"\x08\x00" + ip + udp
for _ in range(3):
    os.write(fd, struct.pack("=BBHHHH", 0, 0, 0, 0, 0, 0) + frame(b"full", False))
    os.write(fd, struct.pack("=BBHHHH", 1, 0, 0, 0, 34, 6) + frame(b"partial", True))
    time.sleep(0.3)
'''

RECEIVER = r'''
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", int(sys.argv[1]))); s.settimeout(float(sys.argv[2]))
got = set()
try:
    while True:
        got.add(s.recv(100).decode())
except socket.timeout:
    pass
print(" ".join(sorted(got)) or "nothing")
'''


def _ssh(info, command: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run(sandbox._ssh_argv(info, "bash -c " + shlex.quote(command), timeout=10),
                          stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=timeout)


def _tap_frames(info, tap: str) -> str:
    """What a namespace port receives of the full and the partial-checksum frame."""
    r = _ssh(info, f"""set -e
        mac=$(ip -n n2 -br link show r2 | awk '{{print $3}}')
        ip netns exec n2 python3 /root/recv.py 5556 6 > /root/got & sleep 1
        python3 /root/tapw.py {tap} $mac & sleep 1
        ovs-vsctl add-port br-t {tap}; wait; ovs-vsctl del-port br-t {tap}; cat /root/got""",
             timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def test_the_userspace_datapath_needs_no_module_and_finishes_checksums_with_tso(sandbox_factory):
    info = sandbox_factory(f"ovsnd-{os.getpid()}", release="13")
    r = _ssh(info, "export DEBIAN_FRONTEND=noninteractive; apt-get update -q >/dev/null && "
                   "apt-get install -y -q --no-install-recommends openvswitch-switch python3 iputils-ping "
                   ">/dev/null && systemctl is-active ovs-vswitchd; "
                   "test -e /sys/module/openvswitch || echo no-module",
             timeout=900)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.split() == ["active", "no-module"], r.stdout
    for path, text in (("/root/tapw.py", TAP_WRITER), ("/root/recv.py", RECEIVER)):
        (Path(info.rootfs) / path.lstrip("/")).write_text(text)

    # internal ports of a netdev bridge, moved into namespaces: ping and TCP
    r = _ssh(info, """set -e
        ovs-vsctl add-br br-t -- set bridge br-t datapath_type=netdev
        ovs-appctl dpctl/show | head -n 1
        for i in 1 2; do
            ovs-vsctl add-port br-t r$i -- set interface r$i type=internal
            ip netns add n$i; ip link set r$i netns n$i; ip -n n$i link set r$i up
            ip -n n$i addr add 10.6.0.$i/24 dev r$i
        done
        ip netns exec n2 python3 -c 'import socket; s = socket.socket(); s.bind(("", 5555)); s.listen(); s.settimeout(8); print(s.accept()[0].recv(9).decode())' & sleep 1
        ip netns exec n1 ping -c 1 -W 3 10.6.0.2 | grep -c 'bytes from'
        ip netns exec n1 python3 -c 'import socket; socket.create_connection(("10.6.0.2", 5555), timeout=5).send(b"tcp-works")'
        wait""",
             timeout=60)
    assert r.returncode == 0 and r.stdout.split() == ["netdev@ovs-netdev:", "1", "tcp-works"], \
        r.stdout + r.stderr

    # a virtio guest's offloaded checksum: lost without userspace TSO ...
    assert _tap_frames(info, "tapv1") == "full"
    # ... and finished with stack-tui's drop-in (restart: new internal port for the receiver)
    r = _ssh(info, f"""set -e
        mkdir -p {os.path.dirname(ovs.VSWITCHD_DROPIN)}
        printf %s {shlex.quote(ovs.VSWITCHD_DROPIN_BODY)} > {ovs.VSWITCHD_DROPIN}
        systemctl daemon-reload; systemctl restart ovs-vswitchd
        ovs-vsctl get Open_vSwitch . other_config:userspace-tso-enable
        ip netns del n2; ip netns add n2
        ovs-vsctl del-port br-t r2; ovs-vsctl add-port br-t r2 -- set interface r2 type=internal
        ip link set r2 netns n2; ip -n n2 link set r2 up; ip -n n2 addr add 10.6.0.2/24 dev r2
        ip link add v3 type veth peer name v3p; ip netns add n3; ip link set v3p netns n3
        ip -n n3 link set v3p up; ip -n n3 addr add 10.6.0.3/24 dev v3p; ip link set v3 up
        ovs-vsctl add-port br-t v3; sleep 2
        ip netns exec n2 python3 /root/recv.py 5557 5 & sleep 1
        ip netns exec n3 python3 -c 'import socket; socket.socket(2, 2).sendto(b"veth-udp", ("10.6.0.2", 5557))'
        wait""", timeout=120)
    assert r.returncode == 0 and r.stdout.split() == ['"true"', "veth-udp"], r.stdout + r.stderr
    assert _tap_frames(info, "tapv2") == "full partial"
