"""The sandbox as a compute host: what nspawn is given (unit), and on a real sandbox that the
tiny guest image boots under QEMU with its banner and a DHCP address, that libvirt starts a
domain with a tap device, and that the network plumbing Neutron's linuxbridge agents use works
(network namespaces with forwarding, bridges, vxlan, tap)."""

from __future__ import annotations

import os
import shlex
import subprocess
import time
from pathlib import Path

import pytest

from tui.tasks import sandbox
from tui.tasks.sandbox import compute, guest


def test_nspawn_gets_net_admin_and_kvm_only_when_asked(monkeypatch):
    monkeypatch.setattr(compute, "kvm_usable", lambda path="/dev/kvm": True)
    args = compute.compute_args({})
    assert args == ["--capability=CAP_NET_ADMIN,CAP_IPC_LOCK"]
    assert "--bind=/dev/kvm" in compute.compute_args({"STACK_TUI_SANDBOX_KVM": "1"})
    monkeypatch.setattr(compute, "kvm_usable", lambda path="/dev/kvm": False)
    assert "--bind=/dev/kvm" not in compute.compute_args({"STACK_TUI_SANDBOX_KVM": "1"})
    assert compute.compute_env() == {"SYSTEMD_NSPAWN_API_VFS_WRITABLE": "network"}


def test_kvm_usable_is_false_for_a_missing_device(tmp_path):
    assert compute.kvm_usable(str(tmp_path / "kvm")) is False


def test_the_guest_image_is_cached_per_release_and_version():
    a, b = guest.guest_image_path("13"), guest.guest_image_path("12")
    assert a != b and a.parent == b.parent
    assert f"v{guest.GUEST_VERSION}" in a.name and a.suffix == ".qcow2"


def test_the_build_script_installs_nothing_and_prints_the_banner():
    script = guest.BUILD_SCRIPT.read_text()
    assert "apt-get download" in script and "apt-get install" not in script
    assert "$BANNER" in script and "udhcpc" in script


def _ssh(info, command: str, timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run(sandbox._ssh_argv(info, "bash -c " + shlex.quote(command), timeout=10),
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout)


@pytest.mark.e2e
def test_the_sandbox_runs_a_guest_and_the_agents_plumbing(sandbox_factory):
    info = sandbox_factory(f"cmp-{os.getpid()}")
    image = guest.guest_image(info)
    assert image.stat().st_size < 32 * 1024 * 1024
    dest = Path(info.rootfs) / "root/guest.qcow2"
    dest.write_bytes(image.read_bytes())

    net = _ssh(info, "set -e; ip netns add t1; ip netns exec t1 sysctl -qw net.ipv4.ip_forward=1; "
                     "ip netns exec t1 cat /proc/sys/net/ipv4/ip_forward; ip netns del t1; "
                     "ip link add brt type bridge; ip link add vxt type vxlan id 7 dstport 4789 "
                     f"local {info.address} dev $(ip -o -4 route show default | awk '{{print $5}}'); "
                     "ip link set vxt master brt; ip tuntap add tapt mode tap; "
                     "ip link set tapt master brt; bridge link | wc -l; "
                     "ip link del tapt; ip link del vxt; ip link del brt")
    assert net.returncode == 0, net.stderr
    assert net.stdout.split() == ["1", "2"]

    apt = _ssh(info, "DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "
                     "qemu-system-x86 libvirt-daemon-system libvirt-clients >/dev/null 2>&1; echo $?",
               timeout=900)
    assert apt.stdout.strip() == "0"
    start = time.monotonic()
    boot = _ssh(info, "cd /root; qemu-system-x86_64 -m 256 -display none -no-reboot -daemonize "
                      "-pidfile /tmp/q.pid -serial file:/tmp/q.log "
                      "-drive file=guest.qcow2,if=virtio -nic user,model=virtio-net-pci; "
                      "for i in $(seq 180); do "
                      "grep -aq 'stack-tui-guest: address' /tmp/q.log && break; sleep 0.5; done; "
                      "kill $(cat /tmp/q.pid); grep -a 'stack-tui-guest' /tmp/q.log", timeout=150)
    took = time.monotonic() - start
    assert guest.GUEST_BANNER in boot.stdout
    assert "stack-tui-guest: address 10.0.2.15" in boot.stdout, boot.stdout
    print(f"guest booted to DHCP under TCG in {took:.1f} s")

    domain = _ssh(info, """set -e
sed -i 's/^#\\? *cgroup_controllers = \\[.*\\]\\s*$/cgroup_controllers = [ ]/' /etc/libvirt/qemu.conf
systemctl restart libvirtd
cp /root/guest.qcow2 /var/lib/libvirt/images/t.qcow2
cat > /tmp/d.xml <<EOF
<domain type="qemu"><name>t1</name><memory unit="MiB">128</memory><vcpu>1</vcpu>
<os><type arch="x86_64">hvm</type><boot dev="hd"/></os><devices>
<disk type="file" device="disk"><driver name="qemu" type="qcow2"/>
<source file="/var/lib/libvirt/images/t.qcow2"/><target dev="vda" bus="virtio"/></disk>
<interface type="ethernet"><target dev="tapt1"/><model type="virtio"/></interface>
<serial type="file"><source path="/tmp/t1.log"/></serial></devices></domain>
EOF
virsh -q define /tmp/d.xml >/dev/null; virsh -q start t1 >/dev/null
for i in $(seq 120); do grep -aq 'stack-tui-guest: booted' /tmp/t1.log && break; sleep 0.5; done
virsh -q domstate t1; grep -ac 'stack-tui-guest: booted' /tmp/t1.log; ip -br link show tapt1 | wc -l
virsh -q destroy t1 >/dev/null; virsh -q undefine t1 >/dev/null""", timeout=150)
    assert domain.returncode == 0, domain.stderr
    assert domain.stdout.split() == ["running", "1", "1"]


def test_module_dependencies_come_from_modinfo_in_load_order(tmp_path):
    import lzma
    import sys

    kdir = tmp_path / "kernel" / "drivers"
    kdir.mkdir(parents=True)
    (kdir / "virtio_net.ko.xz").write_bytes(lzma.compress(b"\x7fELF..\0depends=net_failover\0"))
    (kdir / "net_failover.ko").write_bytes(b"\x7fELF..\0depends=failover\0vermagic=6.1\0")
    (kdir / "failover.ko").write_bytes(b"\x7fELF..\0depends=\0")
    (kdir / "unrelated.ko").write_bytes(b"\x7fELF..\0depends=failover\0")
    script = tmp_path / "moddeps.py"
    script.write_text(guest.MODDEPS_PY)
    out = subprocess.run([sys.executable, str(script), str(tmp_path), "virtio_pci", "virtio_net"],
                         capture_output=True, text=True, check=True).stdout.split("\n")
    assert [ln.split()[0] for ln in out if ln] == ["failover", "net_failover", "virtio_net"]
