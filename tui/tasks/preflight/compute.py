"""The compute checks (Nova, Neutron): CPU virtualization, memory for an all-in-one compute
cloud, the kernel facilities the Neutron mechanism needs, and the provider network.

Facts in (the sections ``kernel``, ``kvm``, ``netcaps``, ``net`` and ``mem`` of the one facts
round trip), Results out; nothing here runs a command or changes the host.  A facility that is
missing blocks; one that cannot be determined warns.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field

from ..engine import Context
from ..platforms import Platform
from ..services import neutron
from .checks import _sized
from .facts import KMODS
from .result import BLOCKING, GiB, OK, WARNING, Result

# Memory an all-in-one compute cloud needs (bytes): under the first it cannot work (services
# killed, the guest cannot start), under the second it works but swaps or runs out under load.
# Measured (bench/bench.py --compute, Debian 13, 2 CPUs, 2026-12-05): 4.4 GiB in use after the
# install (sum of PSS of every process; stack-tui 4503 MiB, the straight script 4484 MiB), the
# test guest included; the process counts grow with the CPUs.  So 5 GiB is the floor (the
# footprint plus the kernel and page cache) and 8 GiB leaves room for guests.  Adjust here,
# nowhere else.  The control-plane thresholds are checks.MEM_MIN / MEM_GOOD.
COMPUTE_MEM_MIN, COMPUTE_MEM_GOOD = 5 * GiB, 8 * GiB
COMPUTE_MEASURED = "4.4 GiB in use after an all-in-one install on 2 CPUs"
COMPUTE_RUNS = ("MariaDB, RabbitMQ, Keystone, Glance, Placement, Nova, Neutron, libvirt/QEMU "
                "and the guest")

CAP_NET_ADMIN, CAP_SYS_ADMIN = 12, 21
# what each kernel module is for, per mechanism
NEEDS = {"bridge": "Neutron's Linux bridge agent (a bridge per network)",
         "vxlan": "Neutron's self-service (VXLAN) networks",
         "br_netfilter": "Neutron's security groups (iptables must see bridged traffic; "
                         "without it the Linux bridge agent only logs a warning and the "
                         "rules filter nothing)",
         "openvswitch": "Open vSwitch's kernel datapath",
         "tun": ""}


def _kv(text: str) -> dict[str, str]:
    return dict(ln.strip().split("=", 1) for ln in text.splitlines() if "=" in ln)


# -- CPU virtualization -------------------------------------------------------------------

def _kvm(text: str) -> Result:
    """What nova.virt_type decides (the same test of /dev/kvm), said before the install."""
    kv = _kv(text)
    title = "CPU virtualization (KVM)"
    if kv.get("kvm") == "usable":
        return Result("kvm", OK, title, "KVM: guests run at native speed (/dev/kvm is usable)")
    state = ("/dev/kvm exists but cannot be opened read-write" if kv.get("kvm") == "unusable"
             else "there is no /dev/kvm")
    why = (f"{state}, so Nova uses virt_type = qemu: guests run under QEMU emulation (TCG), "
           "much slower than with KVM; the install goes ahead")
    flag = kv.get("cpu", "")
    if flag in ("vmx", "svm"):
        mod = "kvm_intel" if flag == "vmx" else "kvm_amd"
        hint = (f"the CPU has {flag} ({'Intel VT-x' if flag == 'vmx' else 'AMD-V'}): load "
                f"the module (modprobe {mod}), or pass /dev/kvm into the container or VM "
                "(nested virtualization), then run again")
    else:
        hint = ("the CPU shows no vmx/svm here: enable virtualization (VT-x/AMD-V) in the "
                "firmware, or nested virtualization for this VM; fine as it is for testing")
    return Result("kvm", WARNING, title, why, fix_hint=hint)


def _memory(mem: int | None) -> Result:
    return _sized("memory-compute", "Memory for compute", mem,
                  "could not read the host's memory size", [
        (COMPUTE_MEM_MIN, BLOCKING, "the host has {size}; an all-in-one compute cloud runs "
         f"{COMPUTE_RUNS} on it ({COMPUTE_MEASURED}), which need at least "
         f"{COMPUTE_MEM_MIN // GiB} GiB or services are killed and the guest cannot start",
         f"give the host at least {COMPUTE_MEM_GOOD // GiB} GiB of memory, or deselect "
         "Nova and Neutron"),
        (COMPUTE_MEM_GOOD, WARNING, "the host has {size}; " + COMPUTE_RUNS + " fit, but "
         f"under {COMPUTE_MEM_GOOD // GiB} GiB they swap or run out of memory under load",
         f"{COMPUTE_MEM_GOOD // GiB} GiB or more is recommended for compute"),
    ], "{size}, enough for " + COMPUTE_RUNS)


# -- kernel facilities --------------------------------------------------------------------

@dataclass
class Kernel:
    loaded: set = field(default_factory=set)
    builtin: set = field(default_factory=set)
    files: set = field(default_factory=set)
    live: set = field(default_factory=set)        # a kallsyms symbol or a sysfs/proc trace
    config: dict = field(default_factory=dict)    # BRIDGE -> y | m | n
    moddir: bool = False                          # /lib/modules/<release> is there

    @classmethod
    def parse(cls, text: str) -> "Kernel":
        k = cls()
        syms = {sym: name for name, (_c, sym) in KMODS.items()}
        for ln in text.splitlines():
            f = ln.split()
            m = re.fullmatch(r"(# )?CONFIG_(\w+)(=(\w+)| is not set)", ln.strip())
            if m:
                k.config[m.group(2)] = m.group(4) or "n"
            elif f == ["moddir"]:
                k.moddir = True
            elif len(f) == 2 and f[0] in ("loaded", "builtin", "file", "live"):
                getattr(k, {"file": "files"}.get(f[0], f[0])).add(f[1])
            elif len(f) == 2 and f[0] == "sym" and f[1] in syms:
                k.live.add(syms[f[1]])
        return k

    def state(self, name: str) -> str:
        """loaded | builtin | present (in the kernel, how unknown) | loadable | absent | unknown."""
        cfg = self.config.get(KMODS[name][0])
        if name in self.loaded:
            return "loaded"
        if name in self.builtin or cfg == "y":
            return "builtin"
        if name in self.live:
            return "present"
        if name in self.files:
            return "loadable"
        if cfg == "n" or self.moddir:
            return "absent"   # the kernel says so, or its whole module tree has no such file
        return "unknown"


def _module_row(k: Kernel, name: str, need: str, fix: str) -> Result | None:
    """A problem row for one module, or None when it is there (or the kernel loads it)."""
    state = k.state(name)
    title = f"Kernel: {name}"
    if state in ("loaded", "builtin", "present"):
        return None
    if state == "loadable":
        if name != "br_netfilter":
            return None   # the kernel loads it when the first such link is made
        return Result(f"kernel-{name}", WARNING, title,   # the agent starts without it
                      f"br_netfilter is a loadable module but not loaded; {need}",
                      fix=_load_br_netfilter,
                      fix_hint="load it now and at every boot (modprobe br_netfilter; "
                               "/etc/modules-load.d/stack-tui-neutron.conf)")
    if state == "absent":
        return Result(f"kernel-{name}", BLOCKING, title,
                      f"this kernel has no {name} (not built in, no module); {need}", fix_hint=fix)
    cfg = k.config.get(KMODS[name][0])
    how = ("it is built as a module (=m) but not loaded, and this host has no module tree to "
           "load it from (a container?)" if cfg == "m" else
           "neither /sys/module, /proc/modules, the module tree nor the kernel config show it")
    return Result(f"kernel-{name}", WARNING, title,
                  f"could not tell whether the kernel has {name}: {how}; {need}",
                  fix_hint=f"on the machine that runs this kernel: modprobe {name} (or check "
                           "that it is built in), then run again")


def _load_br_netfilter(ctx: Context) -> None:
    ctx.output("loading br_netfilter now and at every boot")
    ctx.sh("modprobe br_netfilter && echo br_netfilter > /etc/modules-load.d/stack-tui-neutron.conf",
           timeout=60)


def _caps(text: str) -> set[int]:
    m = re.search(r"^CapEff:\s*([0-9a-fA-F]+)\s*$", text, re.M)
    if not m:
        return set()
    bits = int(m.group(1), 16)
    return {b for b in (CAP_NET_ADMIN, CAP_SYS_ADMIN) if bits >> b & 1}


def _nspawn_hint(what: str) -> str:
    return (f"{what} (systemd-nspawn: {{}}; Docker/Podman: {{}}), or install on a VM or "
            "machine of its own")


def _netcaps_rows(text: str, neutron_on: bool) -> tuple[list[Result], list[str]]:
    """Capabilities, namespaces and /proc/sys/net: (problem rows, what is fine)."""
    flags, caps = {ln.strip() for ln in text.splitlines()}, _caps(text)
    out, fine = [], []
    if "CapEff:" not in text:
        out.append(Result("kernel-caps", WARNING, "Kernel: capabilities",
                          "could not read root's capabilities (/proc/self/status); bridges, "
                          "veths and taps need CAP_NET_ADMIN",
                          fix_hint="check `grep CapEff /proc/self/status` as root on the host"))
    elif CAP_NET_ADMIN not in caps:
        out.append(Result("kernel-net-admin", BLOCKING, "Kernel: CAP_NET_ADMIN",
                          "root here runs without CAP_NET_ADMIN (a container that drops it), so "
                          "Neutron and libvirt cannot make bridges, veths, taps or firewall rules",
                          fix_hint=_nspawn_hint("give the container CAP_NET_ADMIN").format(
                              "--capability=CAP_NET_ADMIN", "--cap-add NET_ADMIN")))
    else:
        fine.append("CAP_NET_ADMIN")
    if not neutron_on:
        return out, fine
    need = "Neutron's DHCP and L3 agents run in network namespaces (qdhcp-, qrouter-)"
    if "netns=kernel" not in flags and "CapEff:" in text:
        out.append(Result("kernel-netns", BLOCKING, "Kernel: network namespaces",
                          f"the kernel has no network namespaces (/proc/self/ns/net); {need}",
                          fix_hint="use a kernel built with CONFIG_NET_NS (every distribution "
                                   "kernel is)"))
    elif "netns=ip" not in flags:
        out.append(Result("kernel-netns", WARNING, "Kernel: network namespaces",
                          f"`ip netns list` does not work here; {need}",
                          fix_hint="install iproute2 on the host"))
    elif caps and CAP_SYS_ADMIN not in caps:
        out.append(Result("kernel-netns", BLOCKING, "Kernel: network namespaces",
                          f"root here runs without CAP_SYS_ADMIN, which `ip netns add` needs; "
                          f"{need}", fix_hint=_nspawn_hint("give the container CAP_SYS_ADMIN")
                          .format("keeps it by default", "--cap-add SYS_ADMIN")))
    elif caps:
        fine.append("network namespaces")
    if "sysnet=rw" in flags:
        fine.append("writable /proc/sys/net")
    elif "CapEff:" in text:
        out.append(Result("kernel-sysctl", BLOCKING, "Kernel: /proc/sys/net writable",
                          "/proc/sys/net is read-only here (a container); the L3 agent turns on "
                          "forwarding in its router namespaces (net.ipv4.ip_forward)",
                          fix_hint=_nspawn_hint("make /proc/sys/net writable").format(
                              "SYSTEMD_NSPAWN_API_VFS_WRITABLE=network", "--privileged")))
    return out, fine


def _tun_rows(k: Kernel, text: str, need: str) -> tuple[list[Result], list[str]]:
    dev = _kv(text).get("tundev")
    title = "Kernel: /dev/net/tun"
    if dev == "absent":
        return [Result("kernel-tun", BLOCKING, title, f"there is no /dev/net/tun; {need}",
                       fix_hint="in a container pass the device in (systemd-nspawn has it; "
                                "Docker/Podman: --device /dev/net/tun), or modprobe tun")], []
    if dev == "unusable":
        return [Result("kernel-tun", BLOCKING, title, "/dev/net/tun cannot be opened "
                       f"read-write by root; {need}",
                       fix_hint="allow the device to the container (device cgroup) or fix its "
                                "permissions (crw-rw-rw-)")], []
    row = _module_row(k, "tun", need, "use a kernel with CONFIG_TUN (every distribution kernel "
                                      "has it)")
    if row is not None or dev is None:
        return [row or Result("kernel-tun", WARNING, title,
                              f"could not tell whether /dev/net/tun is usable; {need}")], []
    return [], [f"/dev/net/tun (tun {_said(k.state('tun'))})"]


def _said(state: str) -> str:
    return {"builtin": "built in", "present": "in the kernel"}.get(state, state)


def _kernel(ctx: Context, plat: Platform, s: dict[str, str]) -> list[Result]:
    """The kernel facilities the mechanism (and the guests' taps) need; only reads."""
    svc = set(ctx.profile.openstack.services)
    k, text = Kernel.parse(s.get("kernel", "")), s.get("netcaps", "")
    lay = neutron.layout(plat)
    mods: list[str] = []
    if "neutron" in svc and lay.mechanism == "linuxbridge":
        mods = ["bridge", "vxlan", "br_netfilter"]
    elif "neutron" in svc and lay.mechanism == "openvswitch" and lay.ovs_datapath != "netdev":
        mods = ["openvswitch", "vxlan"]
    out, fine = [], []
    for name in mods:
        row = _module_row(k, name, f"{NEEDS[name]} needs it",
                          f"use a kernel built with CONFIG_{KMODS[name][0]} (Debian's own "
                          "kernels have it; a minimal or custom kernel may not); a container "
                          "uses the kernel of the machine that runs it")
        if row is not None:
            out.append(row)
        else:
            fine.append(f"{name} ({_said(k.state(name))})")
    netdev = "neutron" in svc and lay.mechanism == "openvswitch" and lay.ovs_datapath == "netdev"
    if netdev or "nova" in svc:
        users = (["Open vSwitch's userspace datapath (its ports are tap devices)"] if netdev
                 else []) + (["the guests' network devices (taps)"] if "nova" in svc else [])
        rows, ok = _tun_rows(k, text, " and ".join(users) + " need it")
        out, fine = out + rows, fine + ok
    rows, ok = _netcaps_rows(text, "neutron" in svc)
    out, fine = out + rows, fine + ok
    if fine:
        extra = (" (userspace datapath: no openvswitch module needed)" if netdev else "")
        out.append(Result("kernel-net", OK, "Kernel facilities for compute",
                          ", ".join(fine) + extra))
    return out


# -- the provider network -----------------------------------------------------------------

def _routes(lines: list[str]) -> list[tuple[str, str]]:
    """``route ...`` lines -> (destination, device); the default route left out."""
    out = []
    for ln in lines:
        f = ln.split()[1:]
        if f and f[0] in ("unreachable", "blackhole", "prohibit", "throw", "local", "broadcast"):
            f = f[1:] + ["dev", f[0]]
        if not f or f[0] == "default":
            continue
        dev = f[f.index("dev") + 1] if "dev" in f[:-1] else "?"
        out.append((f[0], dev))
    return out


def _provider_clash(lines: list[str]) -> list[Result]:
    """An address or route of another interface in (or around) the provider /24."""
    net = ipaddress.ip_network(neutron.PROVIDER_CIDR)
    title = f"Provider network {neutron.PROVIDER_CIDR}"
    hint = (f"stack-tui's provider network is fixed at {neutron.PROVIDER_CIDR} (on its own "
            f"veth {neutron.PROVIDER_IF}): move that address or route off this host's "
            f"{{}}, or install on another host")
    out, seen = [], set()
    for ln in lines:
        f = ln.split()
        if len(f) != 3 or f[0] != "addr" or f[1] == neutron.PROVIDER_IF:
            continue
        try:
            addr = ipaddress.ip_interface(f[2])
        except ValueError:
            continue
        if addr.network.overlaps(net):
            seen.add(f[1])
            out.append(Result("provider-subnet", BLOCKING, title,
                              f"{f[1]} already has {addr}, in the range stack-tui gives the "
                              f"provider network ({neutron.PROVIDER_GATEWAY}/24 on "
                              f"{neutron.PROVIDER_IF}): floating IPs and that network would clash",
                              fix_hint=hint.format(f[1])))
    for dest, dev in _routes(lines):
        try:
            rnet = ipaddress.ip_network(dest if "/" in dest else dest + "/32", strict=False)
        except ValueError:
            continue
        if dev in seen or dev == neutron.PROVIDER_IF or not rnet.overlaps(net):
            continue
        seen.add(dev)
        if rnet.prefixlen >= net.prefixlen:
            out.append(Result("provider-subnet", BLOCKING, title,
                              f"this host already routes {rnet} via {dev}, inside the provider "
                              "network's range: that traffic and the floating IPs would clash",
                              fix_hint=hint.format(dev)))
        else:
            out.append(Result("provider-subnet", WARNING, title,
                              f"{net} lies inside {rnet}, which this host reaches via {dev}; "
                              f"after the install it reaches {net} through "
                              f"{neutron.PROVIDER_IF} instead",
                              fix_hint="fine unless this host needs hosts in that range"))
    return out


def _provider(plat: Platform, text: str) -> list[Result]:
    """The provider subnet is free on this host, and the interface names free or ours."""
    lines = text.splitlines()
    ours = any(ln.startswith("unit # Written by stack-tui") for ln in lines)
    links = {ln.split()[1].split("@")[0] for ln in lines if ln.startswith("link ") and
             len(ln.split()) > 1}
    names = [neutron.PROVIDER_IF, neutron.PROVIDER_PEER]
    if neutron.layout(plat).mechanism == "openvswitch":
        names.append(neutron.PROVIDER_BRIDGE)
    out = _provider_clash(lines)
    taken = [n for n in names if n in links]
    if taken and not ours:
        out.append(Result("provider-names", BLOCKING, "Provider network interfaces",
                          f"{', '.join(taken)} already exist{'s' if len(taken) == 1 else ''} "
                          f"but {neutron.PROVIDER_UNIT} (stack-tui's) is not installed: "
                          "another program's interface would be taken over",
                          fix_hint=f"remove or rename {', '.join(taken)} (`ip link show "
                                   f"{taken[0]}` shows it), then run again"))
    if not any(r.level == BLOCKING for r in out) and "link " not in text and "addr " not in text:
        return out + [Result("provider-net", WARNING, "Provider network interfaces",
                             "could not read the host's interfaces (`ip -o link`)")]
    if not out:
        state = ("already stack-tui's" if taken else "free")
        out.append(Result("provider-net", OK, f"Provider network {neutron.PROVIDER_CIDR}",
                          f"no other interface or route uses it; {', '.join(names)} {state}"))
    return out


# -- the mechanism, and the entry ---------------------------------------------------------

def _mechanism(ctx: Context, plat: Platform) -> list[Result]:
    """Neutron needs a network mechanism on the platform (neutron.layout: Linux bridge, or
    Open vSwitch's userspace datapath where Linux bridge is gone): say so before any package
    is installed when the platform's data names none."""
    if "neutron" not in ctx.profile.openstack.services or neutron.layout(plat).mechanism:
        return []
    return [Result("neutron-mechanism", BLOCKING, "Neutron network mechanism",
                   f"stack-tui knows no Neutron network mechanism (Linux bridge, Open vSwitch) "
                   f"for {plat.name}, which gets OpenStack {plat.openstack}",
                   fix_hint="deselect Neutron and Nova, or install compute on Debian 13 or 12")]


def unused_ports(plat: Platform | None) -> set[int]:
    """Declared ports this platform's Neutron never opens (Open vSwitch's without it)."""
    if plat is not None and neutron.layout(plat).mechanism == "openvswitch":
        return set()
    return {p.port for p in neutron.OVS_PORTS}


def compute_checks(ctx: Context, plat: Platform, s: dict[str, str],
                   mem: int | None) -> list[Result]:
    """Every compute row, when Nova and/or Neutron are selected (none otherwise)."""
    svc = set(ctx.profile.openstack.services)
    if not svc & {"nova", "neutron"}:
        return []
    out = []
    if "nova" in svc:
        out += [_kvm(s.get("kvm", "")), _memory(mem)]
    blocked = _mechanism(ctx, plat)
    if blocked:
        return out + blocked
    out += _kernel(ctx, plat, s)
    if "neutron" in svc and "controller" in ctx.profile.host.roles:
        out += _provider(plat, s.get("net", ""))   # the provider network is the controller's
    return out
