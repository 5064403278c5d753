"""The facts preflight reads from the host in one round trip, and their parsers (pure)."""

from __future__ import annotations

import re

from ..pkglock import LOCK_HOLDERS_SH
from ..pkgmgr import PackageManager, repo_urls, yum_urls  # noqa: F401 - repo_urls: public here too
from ..services.neutron import PROVIDER_UNIT_PATH

# Kernel pieces the compute checks ask about: module name -> (its CONFIG_ symbol, a function
# of it in /proc/kallsyms: present when built in or loaded, where /sys/module may not show it).
KMODS = {"bridge": ("BRIDGE", "br_dev_xmit"), "vxlan": ("VXLAN", "vxlan_xmit"),
         "br_netfilter": ("BRIDGE_NETFILTER", "br_nf_pre_routing"),
         "tun": ("TUN", "tun_chr_open"), "openvswitch": ("OPENVSWITCH", "ovs_vport_receive")}
# Nova's own decision (nova.virt_type): the preflight asks the very same question.
KVM_TEST = "test -c /dev/kvm && test -r /dev/kvm && test -w /dev/kvm"
_NAMES = "|".join(KMODS)
_SYMS = "|".join(sym for _c, sym in KMODS.values())
_CFG = "|".join(["MODULES", "NET_NS"] + [c for c, _s in KMODS.values()])
# Read only: which modules are loaded (/sys/module with initstate, /proc/modules), built in
# (/sys/module without, modules.builtin, CONFIG_=y, a kallsyms symbol) or loadable (a .ko file).
KERNEL_SH = rf"""echo @@kernel
stk_kr=$(uname -r)
for m in {" ".join(KMODS)}; do
  if test -e /sys/module/$m/initstate; then echo "loaded $m"; elif test -d /sys/module/$m; then echo "builtin $m"; fi
done
test -r /proc/modules && awk '{{print "loaded " $1}}' /proc/modules | grep -E ' ({_NAMES})$'
if test -d /lib/modules/$stk_kr; then
  echo moddir
  sed -n -E 's#(^|.*/)({_NAMES})\.ko$#builtin \2#p' /lib/modules/$stk_kr/modules.builtin 2>/dev/null
  find /lib/modules/$stk_kr -name '*.ko*' 2>/dev/null | sed -n -E 's#.*/({_NAMES})\.ko(\.[a-z0-9]+)?$#file \1#p'
fi
{{ zcat /proc/config.gz 2>/dev/null || cat /boot/config-$stk_kr 2>/dev/null; }} | grep -E '^(# )?CONFIG_({_CFG})[= ]'
awk '$3 ~ /^({_SYMS})$/ {{print "sym " $3}}' /proc/kallsyms 2>/dev/null | sort -u
test -e /sys/class/misc/tun && echo "live tun"
test -d /proc/sys/net/bridge && echo "live br_netfilter"
echo @@kvm
if {KVM_TEST}; then echo kvm=usable; elif test -e /dev/kvm; then echo kvm=unusable; else echo kvm=absent; fi
grep -m1 -owE 'vmx|svm' /proc/cpuinfo 2>/dev/null | head -n 1 | sed 's/^/cpu=/'
echo @@netcaps
grep '^CapEff:' /proc/self/status
test -e /proc/self/ns/net && echo netns=kernel
ip netns list >/dev/null 2>&1 && echo netns=ip
test -w /proc/sys/net/ipv4/ip_forward && echo sysnet=rw
if test -c /dev/net/tun && test -r /dev/net/tun && test -w /dev/net/tun; then echo tundev=usable; elif test -e /dev/net/tun; then echo tundev=unusable; else echo tundev=absent; fi
echo @@net
ip -o -4 addr show 2>/dev/null | awk '{{print "addr " $2 " " $4}}'
ip -4 route show 2>/dev/null | sed 's/^/route /'
ip -o link show 2>/dev/null | awk -F': ' '{{print "link " $2}}'
head -n 1 {PROVIDER_UNIT_PATH} 2>/dev/null | sed 's/^/unit /'
"""

FACTS_SH = LOCK_HOLDERS_SH + r"""
echo @@os; cat /etc/os-release 2>/dev/null
echo @@uid; id -u
echo @@mem; awk '/^MemTotal:/ {printf "%.0f\n", $2 * 1024}' /proc/meminfo
cat /sys/fs/cgroup/memory.max /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null
echo @@disk; df -P -B1 /var 2>/dev/null | awk 'NR == 2 {print $4}'
echo @@hostname; hostname
echo @@resolved; timeout 5 getent ahostsv4 "$(hostname)" | awk '{print $1}' | sort -u
echo @@addrs; ip -o -4 addr show | awk '{split($4, a, "/"); print a[1]}'
echo @@ss; ss -Hltnp 2>/dev/null || echo '@@noss'
echo @@time; timedatectl show -p NTPSynchronized -p NTP -p CanNTP 2>/dev/null
echo "virt=$(systemd-detect-virt -c 2>/dev/null)"
systemctl list-unit-files --no-legend systemd-timesyncd.service chrony.service \
  chronyd.service ntp.service ntpsec.service 2>/dev/null | awk '{print "unit=" $1}'
echo @@sources; cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null
echo @@sources822; cat /etc/apt/sources.list.d/*.sources 2>/dev/null
echo @@yum; grep -h -E '^(baseurl|mirrorlist|metalink) *=' /etc/yum.repos.d/*.repo 2>/dev/null
echo @@lock; stk_lock_holders
echo @@pm; pgrep -a -x 'dnf|yum|packagekitd|unattended-upgr' 2>/dev/null
""" + KERNEL_SH + "echo @@end\n"


def _sections(text: str) -> dict[str, str]:
    out: dict[str, list[str]] = {}
    cur = None
    for line in text.splitlines():
        if line.startswith("@@") and re.fullmatch(r"@@[a-z0-9]+", line.strip()):
            cur = line.strip()[2:]
            out[cur] = []
        elif cur is not None:
            out[cur].append(line)
    return {k: "\n".join(v) for k, v in out.items()}


def parse_ss(text: str) -> dict[int, list[tuple[str, int | None]]]:
    """``ss -Hltnp`` -> {port: [(process name, pid), ...]} (name "" when not shown)."""
    out: dict[int, list[tuple[str, int | None]]] = {}
    for line in text.splitlines():
        f = line.split()
        if len(f) < 4 or f[0] != "LISTEN":
            continue
        local = f[3]
        m = re.search(r":(\d+)$", local)
        if not m:
            continue
        port = int(m.group(1))
        procs = [(n, int(p)) for n, p in re.findall(r'\("([^"]*)",pid=(\d+)', line)]
        lst = out.setdefault(port, [])
        for pr in procs or [("", None)]:
            if pr not in lst:
                lst.append(pr)
    return out


def _mem_bytes(text: str) -> int | None:
    """The smallest of MemTotal and the cgroup limits; mawk (Debian 12's awk) may have
    printed MemTotal as 2.52762e+10."""
    vals = []
    for tok in text.split():
        if tok.isdigit():
            vals.append(int(tok))
        elif re.fullmatch(r"\d+(\.\d+)?e\+\d+", tok):
            vals.append(int(float(tok)))
    vals = [v for v in vals if v > 0 and v < 1 << 60]
    return min(vals) if vals else None


def _probe_sh(urls: list[str], pm: PackageManager) -> str:
    """Fetch one index per repository in parallel; prints `probe I RC LAST-LINES`."""
    if not urls:
        return ""
    lines = ["t=$(mktemp -d)"]
    for i, u in enumerate(urls):
        cmd = pm.probe_cmd(u, f"$t/f{i}")
        lines.append(f"( out=$({cmd} 2>&1); rc=$?; "
                     f"echo \"probe {i} $rc $(echo \"$out\" | grep -v '^Ign' | tail -n 2 | tr '\\n' ' ')\" "
                     f"> $t/r{i} ) &")
    lines += ["wait", "cat $t/r*", "rm -rf $t"]
    return "echo @@probes\n" + "\n".join(lines) + "\n"


def parse_probes(text: str) -> dict[int, tuple[int, str]]:
    """`probe I RC TEXT` lines -> {I: (RC, TEXT)}."""
    probes = {}
    for ln in text.splitlines():
        m = re.match(r"probe (\d+) (\d+) ?(.*)", ln)
        if m:
            probes[int(m.group(1))] = (int(m.group(2)), m.group(3))
    return probes
