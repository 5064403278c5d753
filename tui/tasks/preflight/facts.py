"""The facts preflight reads from the host in one round trip, and their parsers (pure)."""

from __future__ import annotations

import re

from ..pkglock import LOCK_HOLDERS_SH
from ..pkgmgr import PackageManager, repo_urls, yum_urls  # noqa: F401 - repo_urls: public here too

FACTS_SH = LOCK_HOLDERS_SH + r"""
echo @@os; cat /etc/os-release 2>/dev/null
echo @@uid; id -u
echo @@mem; awk '/^MemTotal:/ {print $2 * 1024}' /proc/meminfo
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
echo @@end
"""


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
    vals = []
    for tok in text.split():
        if tok.isdigit():
            vals.append(int(tok))
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
