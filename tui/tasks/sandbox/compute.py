"""What the test host needs to run a cloud that boots VMs (Nova's libvirt/QEMU and Neutron's
linuxbridge agents) inside systemd-nspawn, and why each piece is there.

- ``/dev/kvm`` is bound in only when ``STACK_TUI_SANDBOX_KVM=1``: on our machines (a
  paravirtual, nested KVM) the device opens, but a real guest stops at once with "KVM internal
  error. Suberror: 1" (emulation failure, in SYSLINUX and in the kernel alike).  Without the
  device Nova uses ``virt_type = qemu`` (TCG): the tiny test guest boots to DHCP in ~7 s.
- ``/dev/net/tun`` (tap devices for the guests) is given to every container by nspawn already.
- The host runs no systemd, so nspawn installs no device cgroup policy (``--keep-unit``,
  ``--register=no``): bound devices are usable as they are.
- Capabilities: nspawn keeps CAP_SYS_ADMIN (``ip netns add`` mounts /run/netns) but drops
  CAP_NET_ADMIN even with a network namespace of our own (``--network-namespace-path``):
  without it no bridge, vxlan, tap or iptables rule can be made.  CAP_IPC_LOCK lets QEMU lock
  guest memory when asked to.  (CAP_SYS_RESOURCE is not needed: libvirt started its domain
  without it; our machines' bounding set does not even have it.)
- /proc/sys is read-only in the container; ``SYSTEMD_NSPAWN_API_VFS_WRITABLE=network`` makes
  /proc/sys/net writable (the container's own network namespace only): the L3 agent turns
  on forwarding inside its router namespaces, the agents set bridge and ARP sysctls.
- libvirt cannot create cgroups inside the container (the cgroup v1 hierarchies are read-only
  there): the service modules set ``cgroup_controllers = [ ]`` in ``/etc/libvirt/qemu.conf``.
"""

from __future__ import annotations

import os


def kvm_usable(path: str = "/dev/kvm") -> bool:
    """A KVM device we can open read-write (the kernel may list one that is unusable)."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except OSError:
        return False
    os.close(fd)
    return True


CAPABILITIES = ("CAP_NET_ADMIN", "CAP_IPC_LOCK")


def compute_env() -> dict[str, str]:
    """Extra environment of systemd-nspawn for a host that runs guests."""
    return {"SYSTEMD_NSPAWN_API_VFS_WRITABLE": "network"}


def compute_args(env: dict | None = None) -> list[str]:
    """Extra systemd-nspawn arguments for a host that runs guests."""
    env = os.environ if env is None else env
    args = [f"--capability={','.join(CAPABILITIES)}"]
    if env.get("STACK_TUI_SANDBOX_KVM") == "1" and kvm_usable():
        args.append("--bind=/dev/kvm")
    return args
