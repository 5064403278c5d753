"""`stack-tui sandbox up --hosts 3`: three Debian 13 hosts that see each other.

Through the command line, as a user would: the group boots (each host on its own /30 from this
machine, as a single sandbox is), host 1 pings hosts 2 and 3 by name over the management
network (an ICMP echo from python3: the base rootfs has no ping), a frame crosses the provider
bridge (throwaway TEST-NET addresses on prov0 for the test only). The group's profile describes
the three hosts with their management addresses, and `stack-tui check` on host 1 finds its name
on its management address. Then `sandbox down` removes the group and its profile, and nothing of
it is left: namespaces, links, nft tables, claims, processes, dirs.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.test_sandbox import nothing_left, ssh

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
BUDGET = 60.0

# One ICMP echo to argv[1] (a name, resolved through /etc/hosts); prints the address that answered.
PING_PY = r"""
import socket, struct, sys
def csum(b):
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    s = (s >> 16) + (s & 0xffff); s += s >> 16
    return ~s & 0xffff
dst = socket.gethostbyname(sys.argv[1])
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
s.settimeout(3)
# (an even length: the checksum sums 16-bit words)
body = struct.pack("!BBHHH", 8, 0, 0, 0x5354, 1) + b"stack-tui-host"
s.sendto(body[:2] + struct.pack("!H", csum(body)) + body[4:], (dst, 0))
while True:
    data, (src, _) = s.recvfrom(2048)
    if src == dst and data[(data[0] & 15) * 4] == 0:
        print("REPLY", src); break
"""


def cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tui.cli", *args], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, cwd=ROOT, timeout=timeout)


def ping(info, target: str) -> subprocess.CompletedProcess:
    return ssh(info, "python3", "-", target, stdin=PING_PY)


def run(info, script: str) -> str:
    r = ssh(info, "sh", "-ec", shlex.quote(script))  # ssh joins its arguments into one line
    assert r.returncode == 0, f"{info.name}: {script}: {r.stderr}"
    return r.stdout


def test_three_hosts_share_a_management_and_a_provider_network(sandbox_factory, stack_home):
    from tui.tasks import profile, sandbox
    from tui.tasks.sandbox import group

    name = f"hst{os.getpid()}"
    hosts = [f"{name}-{k}" for k in (1, 2, 3)]
    start = time.monotonic()
    try:
        up = cli("sandbox", "up", "--hosts", "3", "--name", name)
        assert up.returncode == 0, up.stdout + up.stderr
        assert f"Group {name}: 3 Debian 13 hosts" in up.stdout, up.stdout
        gi = group.load_group(name)
        infos = [sandbox._load_info(h) for h in hosts]
        assert gi is not None and gi.hosts == hosts and all(infos)
        mgmt = [group.mgmt_address(gi.index, k) for k in (1, 2, 3)]

        status = cli("sandbox", "status", "--name", name)
        assert status.returncode == 0 and all(h in status.stdout for h in hosts), status.stdout
        assert status.stdout.count("NOT running") == 0 and status.stdout.count(" running") == 3

        # The group's profile: host 1 the controller, each host with its SSH and management address.
        grp = profile.load(name)
        assert [(h.name, h.address, h.key_file, h.mgmt_address) for h in grp.hosts] == \
            [(i.name, i.address, i.key_file, m) for i, m in zip(infos, mgmt)]
        assert grp.host.name == hosts[0] and [h.roles for h in grp.hosts][1:] == [["compute"]] * 2
        # `check` on host 1 (its own profile) judges its name against its management address.
        chk = cli("check", hosts[0], timeout=180)
        assert f"Preflight for root@{infos[0].address}" in chk.stdout, chk.stdout + chk.stderr
        row = [ln.strip() for ln in chk.stdout.splitlines() if "Host name resolves" in ln]
        assert len(row) == 1 and row[0].startswith("ok ") and \
            f"{hosts[0]} resolves to {mgmt[0]}, the management address" in row[0], chk.stdout

        # up again: the running group is kept (same hosts, same slots), not rebuilt.
        again = cli("sandbox", "up", "--hosts", "3", "--name", name)
        assert again.returncode == 0 and f"group {name!r} already running" in again.stdout, again.stdout
        assert [sandbox._load_info(h).pid for h in hosts] == [i.pid for i in infos]
        # One host of the group is not removed alone.
        single = cli("sandbox", "down", "--name", hosts[1])
        assert single.returncode != 0 and f"down --name {name}" in single.stderr, \
            single.stdout + single.stderr

        for info, host, addr in zip(infos, hosts, mgmt):
            # Reached from this machine as a single sandbox is; named after itself on the management net.
            assert run(info, "hostname").strip() == host
            assert run(info, f"getent hosts {host}").split()[0] == addr
            assert f"inet {addr}/24" in run(info, "ip -4 -o addr show dev mgmt0")
            assert "inet " not in run(info, "ip -4 -o addr show dev prov0")  # provider: no address

        # Two separate segments in the group's own namespace: each host has one port on each bridge.
        for bridge, kind in (("br-mgmt", "m"), ("br-prov", "p")):
            ports = subprocess.run(["ip", "-n", gi.netns, "-o", "link", "show", "master", bridge],
                                   capture_output=True, text=True).stdout
            assert sorted(x.split(":")[1].strip().split("@")[0] for x in ports.splitlines()) == \
                [f"{kind}{k}" for k in (1, 2, 3)], ports

        h1 = infos[0]
        for host, addr in zip(hosts[1:], mgmt[1:]):
            assert "dev mgmt0" in run(h1, f"ip route get {addr}")
            r = ping(h1, host)
            assert r.returncode == 0 and f"REPLY {addr}" in r.stdout, r.stdout + r.stderr

        # A frame across the provider bridge: throwaway addresses on prov0, for this test only.
        run(h1, "ip addr add 192.0.2.1/24 dev prov0")
        run(infos[2], "ip addr add 192.0.2.3/24 dev prov0")
        assert "dev prov0" in run(h1, "ip route get 192.0.2.3")
        r = ping(h1, "192.0.2.3")
        assert r.returncode == 0 and "REPLY 192.0.2.3" in r.stdout, r.stdout + r.stderr
        up_time = time.monotonic() - start

        indexes = [i.index for i in infos]
        down = cli("sandbox", "down", "--name", name)
        assert down.returncode == 0 and f"Group {name} removed" in down.stdout, down.stdout + down.stderr
        assert f"Profile {name} removed" in down.stdout, down.stdout
        assert name not in profile.list_profiles() and set(hosts) <= set(profile.list_profiles())
    finally:
        sandbox.group_down(name)  # after a failure part-way; a no-op after `sandbox down`
    total = time.monotonic() - start
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split()
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    machines = subprocess.run(["machinectl", "list", "--no-legend"], capture_output=True, text=True).stdout
    left = [x for i in indexes for x in nothing_left(i)]
    left += [f"netns {gi.netns}"] if gi.netns in netns else []
    left += [f"link {n}" for n in ("br-mgmt", "br-prov", "mgmt0", "prov0", "m1", "p1")
             if f": {n}:" in links or f": {n}@" in links]
    left += [f"machine {h}" for h in hosts if h in machines]
    left += [f"dir {p}" for p in (group._group_path(name), *map(sandbox._sandbox_path, hosts)) if p.exists()]
    left += [f"claim {group._group_claim_dir(gi.index)}"] if group._group_claim_dir(gi.index).exists() else []
    assert not left, left
    assert not sandbox.group_exists(name) and sandbox.group_status(name) is None
    print(f"group up + checks {up_time:.1f} s, with down {total:.1f} s")
    assert total < BUDGET, f"{total:.1f} s (budget {BUDGET:.0f} s)"
