"""Preflight: find what would make the install fail, before anything on the host changes.

UI-free.  ``run_checks(ctx)`` gathers the facts in two or three SSH round
trips (one batched shell script, then the package/repository probes, and a
lock wait only when another package manager is busy) and returns a list of
``Result``: ok / warning / blocking, one sentence of why, and a fix where one
exists.  Fixes run only on the user's say-so (``--fix``, the TUI's Fix key, or
``fix_hosts = true`` in the profile for /etc/hosts).

The ``preflight.checks`` step (first in every plan) runs them all and fails
with the blocking ones and their fixes, before a single package is installed.
"""

from __future__ import annotations

import re
import shlex
import socket
import threading
import urllib.parse
from dataclasses import dataclass
from typing import Callable

from .engine import Context, Notice, Phase, Step, StepError
from .platforms import PLATFORMS, Platform, describe, detect
from .pkglock import LOCK_HOLDERS_SH, lock_wait_seconds, run_lock_wait
from .services import REGISTRY

q = shlex.quote
OK, WARNING, BLOCKING = "ok", "warning", "blocking"
GiB = 1024 ** 3

# port -> (component that needs it, process names that may hold it, what it is)
PORTS: dict[int, tuple[str, frozenset, str]] = {
    p.port: (s.id, p.holders, p.label) for s in REGISTRY for p in s.ports}

# ---------------------------------------------------------------------------
# results

@dataclass
class Result:
    id: str
    level: str                  # ok | warning | blocking
    title: str
    why: str                    # one sentence
    fix: Callable[[Context], None] | None = None   # stack-tui can repair it
    fix_hint: str = ""          # what the fix does, or what the user should do

    @property
    def blocking(self) -> bool:
        return self.level == BLOCKING

    def lines(self) -> list[str]:
        out = [f"{self.level.upper() if self.level != OK else 'ok':8s} {self.title}: {self.why}"]
        if self.level != OK and self.fix_hint:
            out.append(f"{'':8s} fix: {self.fix_hint}"
                       + (" [stack-tui can do this: --fix]" if self.fix else ""))
        return out

    def to_dict(self) -> dict:
        return {"id": self.id, "level": self.level, "title": self.title, "why": self.why,
                "fix": self.fix_hint, "fixable": self.fix is not None}


# ---------------------------------------------------------------------------
# fact gathering (one round trip)

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


def _release_url(uri: str, suite: str) -> str:
    if suite.endswith("/"):
        return f"{uri.rstrip('/')}/{suite.lstrip('./')}InRelease"
    return f"{uri.rstrip('/')}/dists/{suite}/InRelease"


def repo_urls(one_line: str, deb822: str = "") -> list[str]:
    """One index URL per repository host from APT sources (both formats), http(s) only."""
    urls = []
    for line in one_line.splitlines():
        parts = line.split("#", 1)[0].split()
        if not parts or parts[0] != "deb":
            continue
        parts = parts[1:]
        if parts and parts[0].startswith("["):
            while parts and not parts[0].endswith("]"):
                parts.pop(0)
            parts = parts[1:]
        if len(parts) >= 2:
            urls.append(_release_url(parts[0], parts[1]))
    for para in re.split(r"\n\s*\n", deb822):
        fields: dict[str, str] = {}
        key = None
        for ln in para.splitlines():
            if ln.startswith("#"):
                continue
            if ln[:1] in (" ", "\t") and key:
                fields[key] += " " + ln.strip()
            elif ":" in ln:
                key, val = ln.split(":", 1)
                key = key.strip().lower()
                fields[key] = val.strip()
        if "deb" not in fields.get("types", "").split():
            continue
        if fields.get("enabled", "yes").strip().lower() == "no":
            continue
        for uri in fields.get("uris", "").split():
            for suite in fields.get("suites", "").split():
                urls.append(_release_url(uri, suite))
    seen, out = set(), []
    for u in urls:
        p = urllib.parse.urlsplit(u)
        if p.scheme not in ("http", "https") or (p.scheme, p.netloc) in seen:
            continue
        seen.add((p.scheme, p.netloc))
        out.append(u)
    return out


def yum_urls(text: str) -> list[str]:
    out, seen = [], set()
    for line in text.splitlines():
        val = line.split("=", 1)[1].strip().split()[0] if "=" in line and line.split("=", 1)[1].strip() else ""
        p = urllib.parse.urlsplit(val)
        if p.scheme in ("http", "https") and p.netloc and p.netloc not in seen:
            seen.add(p.netloc)
            out.append(f"{p.scheme}://{p.netloc}/")
    return out


def _probe_sh(urls: list[str], family: str) -> str:
    if not urls:
        return ""
    lines = ["t=$(mktemp -d)"]
    for i, u in enumerate(urls):
        if family == "deb":
            cmd = (f"timeout 8 /usr/lib/apt/apt-helper -o APT::Sandbox::User=root "
                   f"-o Acquire::Retries=0 -o Acquire::http::Timeout=5 -o Acquire::https::Timeout=5 "
                   f"download-file {q(u)} $t/f{i}")
        else:
            cmd = f"timeout 8 curl -sS -o /dev/null --max-time 6 {q(u)}"
        lines.append(f"( out=$({cmd} 2>&1); rc=$?; "
                     f"echo \"probe {i} $rc $(echo \"$out\" | grep -v '^Ign' | tail -n 2 | tr '\\n' ' ')\" "
                     f"> $t/r{i} ) &")
    lines += ["wait", "cat $t/r*", "rm -rf $t"]
    return "echo @@probes\n" + "\n".join(lines) + "\n"


def _wanted_packages(ctx: Context, plat: Platform) -> list[str]:
    return plat.packages_for(ctx.profile.openstack.services)


def _mem_bytes(text: str) -> int | None:
    vals = []
    for tok in text.split():
        if tok.isdigit():
            vals.append(int(tok))
    vals = [v for v in vals if v > 0 and v < 1 << 60]
    return min(vals) if vals else None


def _fmt_gib(n: int) -> str:
    return f"{n / GiB:.1f} GiB"


# ---------------------------------------------------------------------------
# the checks

def _platform(ctx: Context, os_text: str) -> tuple[Result, Platform | None]:
    name = describe(os_text)
    found = detect(os_text)
    forced = ctx.profile.openstack.platform
    title = "Distribution and release"
    if forced != "auto":
        plat = PLATFORMS[forced]
        if found is None or found.id != forced:
            return Result("platform", WARNING, title,
                          f"{name} is treated as {plat.name} because the profile forces it "
                          f"(OpenStack {plat.openstack}); this combination is not tested",
                          fix_hint="remove [openstack] platform from the profile to use detection"
                          ), plat
        found = plat
    if found is None:
        return Result("platform", BLOCKING, title,
                      f"{name} is not supported (stack-tui installs on Debian 13 and 12, "
                      "Ubuntu 22.04/24.04 and Rocky/Alma/CentOS Stream 9)",
                      fix_hint="use a supported release, or force [openstack] platform in the "
                               "profile at your own risk"), None
    if not found.verified:
        return Result("platform", WARNING, title,
                      f"{name} is supported as {found.name}, which gets OpenStack "
                      f"{found.openstack}, but has not yet been proven end to end on a real host",
                      fix_hint="expect rough edges; Debian 13 (and 12) are the verified platforms"), found
    if not found.maintained:
        # Works and is verified, but a new cloud should not start on it.
        return Result("platform", WARNING, title,
                      f"{name} is Debian oldstable; it gets OpenStack {found.openstack}, which "
                      "is past upstream maintenance (no more fixes from OpenStack)",
                      fix_hint="for a new cloud use Debian 13, which gets OpenStack 2025.1 "
                               "(Epoxy); this install goes ahead"), found
    return Result("platform", OK, title,
                  f"{name} is supported; it gets OpenStack {found.openstack} "
                  f"({found.name})"), found


def _sudo(ctx: Context, uid: str) -> Result:
    title = "Root access without a TTY"
    mode = getattr(ctx.transport, "sudo_mode", None)
    user = ctx.profile.host.user
    if uid.strip() != "0":
        return Result("sudo", BLOCKING, title,
                      f"commands run as uid {uid.strip() or '?'}, not as root, so nothing can "
                      "be installed",
                      fix_hint=f"allow {user} to use sudo (e.g. add it to the sudo group)")
    why = {"root": f"logged in as {user}" if user == "root" else f"{user} is root (uid 0)",
           "nopasswd": f"sudo works for {user} without a password prompt or a TTY",
           "password": f"sudo works for {user} with the given password, without a TTY"}.get(
        mode or "", "commands run as root")
    return Result("sudo", OK, title, why)


def _memory(mem: int | None) -> Result:
    title = "Memory"
    if mem is None:
        return Result("memory", WARNING, title, "could not read the host's memory size")
    if mem < 2 * GiB:
        return Result("memory", BLOCKING, title,
                      f"the host has {_fmt_gib(mem)}; MariaDB, RabbitMQ, Keystone and Glance "
                      "need at least 2 GiB together or they are killed or fail to start",
                      fix_hint="give the host at least 4 GiB of memory")
    if mem < 4 * GiB:
        return Result("memory", WARNING, title,
                      f"the host has {_fmt_gib(mem)}; it works, but under 4 GiB the services "
                      "are slow and may run out of memory under load",
                      fix_hint="4 GiB or more is recommended")
    return Result("memory", OK, title, f"{_fmt_gib(mem)}")


def _disk(avail: int | None) -> Result:
    title = "Free disk in /var"
    if avail is None:
        return Result("disk", WARNING, title, "could not read the free space in /var")
    if avail < 2 * GiB:
        return Result("disk", BLOCKING, title,
                      f"only {_fmt_gib(avail)} free; the packages, databases and images need "
                      "more than that",
                      fix_hint="free space in /var or grow the disk (10 GiB or more)")
    if avail < 10 * GiB:
        return Result("disk", WARNING, title,
                      f"{_fmt_gib(avail)} free; enough to install, but images and logs fill "
                      "it quickly under 10 GiB",
                      fix_hint="free space in /var or grow the disk")
    return Result("disk", OK, title, f"{_fmt_gib(avail)} free")


def _hostname(ctx: Context, name: str, resolved: list[str], have: list[str]) -> Result:
    title = "Host name resolves to this host"
    good = [a for a in resolved if a in have and not a.startswith("127.")]
    if good:
        return Result("hostname", OK, title, f"{name} resolves to {good[0]}, an address of "
                                             "this host")
    real = [a for a in have if not a.startswith("127.")]
    addr = ctx.profile.host.address if ctx.profile.host.address in have else (real[0] if real else "")
    why = (f"{name} resolves to {', '.join(resolved) or 'nothing'}, not to an address of this host "
           f"({', '.join(real) or 'none'}); RabbitMQ's node rabbit@{name} cannot start (epmd)")
    if not addr:
        return Result("hostname", BLOCKING, title, why,
                      fix_hint="give the host a non-loopback IPv4 address")

    def fix(c: Context, name=name, addr=addr) -> None:
        from .services.common import fix_hosts_file

        c.output(f"mapping {name} to {addr} in /etc/hosts")
        fix_hosts_file(c, name, addr)

    return Result("hostname", BLOCKING, title, why, fix=fix,
                  fix_hint=f"map {name} to {addr} in /etc/hosts (other lines are kept)"
                  + ("; apply does this by itself (fix_hosts = true in the profile)"
                     if ctx.profile.openstack.fix_hosts else ""))


def _ports(ctx: Context, ss_text: str) -> list[Result]:
    svc = set(ctx.profile.openstack.services)
    wanted = {p: v for p, v in PORTS.items() if v[0] in svc}
    if not wanted:
        return []
    if ss_text.strip() == "@@noss":
        return [Result("ports", WARNING, "Ports", "`ss` is not available; the ports could not be "
                       "checked", fix_hint="install iproute2")]
    listening = parse_ss(ss_text)
    out, fine, ours = [], [], []
    for port, (_, owners, what) in sorted(wanted.items()):
        procs = listening.get(port, [])
        if not procs:
            fine.append(str(port))
            continue
        names = {n for n, _ in procs}
        if names and names <= owners:
            ours.append(f"{port} ({'/'.join(sorted(names))})")
            continue
        strangers = [(n, p) for n, p in procs if n not in owners]
        who = ", ".join(f"{n} (pid {p})" if n else "an unknown process" for n, p in strangers)
        out.append(Result(
            f"port-{port}", BLOCKING, f"Port {port} ({what})",
            f"port {port} is already in use by {who}, so {what} could not listen on it",
            fix_hint=f"stop {strangers[0][0] or 'that process'} or move it to another port "
                     f"(`ss -ltnp 'sport = :{port}'` and `systemctl status "
                     f"{strangers[0][1] or ''}` on the host show what it is), then run again"))
    if not out:
        why = []
        if fine:
            why.append(f"free: {', '.join(fine)}")
        if ours:
            why.append(f"held by the expected service: {', '.join(ours)}")
        out.append(Result("ports", OK, "Ports", "; ".join(why)))
    return out


def _time(ctx: Context, text: str) -> Result:
    title = "Time synchronized"
    kv = dict(ln.split("=", 1) for ln in text.splitlines() if "=" in ln)
    units = [v for k, v in (ln.split("=", 1) for ln in text.splitlines() if "=" in ln) if k == "unit"]
    if kv.get("NTPSynchronized") == "yes":
        return Result("time", OK, title, "the clock is synchronized (NTP)")
    if "NTPSynchronized" not in kv:
        return Result("time", WARNING, title, "timedatectl cannot tell whether the clock is "
                      "synchronized", fix_hint="make sure chrony or systemd-timesyncd runs")
    virt = kv.get("virt", "").strip()
    if virt and virt != "none":
        return Result("time", WARNING, title,
                      f"not synchronized here, but this is a container ({virt}) whose clock is "
                      "the host's; Keystone tokens need a correct clock",
                      fix_hint="make sure the machine running the container synchronizes its "
                               "time")
    why = ("the clock is not synchronized; Keystone tokens and RabbitMQ rely on a correct clock "
           "(tokens that look expired or not yet valid)")
    if "systemd-timesyncd.service" in units:
        def fix(c: Context) -> None:
            c.sh("timedatectl set-ntp true", timeout=60)
        return Result("time", WARNING, title, why, fix=fix,
                      fix_hint="enable systemd-timesyncd (timedatectl set-ntp true)")
    for unit in ("chrony.service", "chronyd.service", "ntpsec.service", "ntp.service"):
        if unit in units:
            def fix(c: Context, unit=unit) -> None:
                c.sh(f"systemctl enable --now {unit}", timeout=60)
            return Result("time", WARNING, title, why, fix=fix,
                          fix_hint=f"enable and start {unit}")
    return Result("time", WARNING, title, why + "; no time service is installed",
                  fix_hint="install chrony or systemd-timesyncd")


def _repos(ctx, plat: Platform, urls: list[str], probes: dict[int, tuple[int, str]],
           missing: list[str]) -> Result:
    title = "Package repositories reachable"
    if not urls:
        return Result("repos", WARNING, title, "no http(s) package repository is configured",
                      fix_hint="check /etc/apt/sources.list" if plat.family == "deb"
                      else "check /etc/yum.repos.d/")
    bad = []
    for i, u in enumerate(urls):
        rc, out = probes.get(i, (1, "no answer"))
        if rc == 0 or re.search(r"\b(404|403)\b|Not Found", out):
            continue  # the server answered
        bad.append((urllib.parse.urlsplit(u).netloc, out.strip() or f"exit {rc}"))
    hosts = ", ".join(urllib.parse.urlsplit(u).netloc for u in urls)
    if not bad:
        return Result("repos", OK, title, f"{hosts} answer")
    detail = "the package repository " + "; ".join(f"{h} ({o})" for h, o in bad)
    hint = ("check the host's DNS (/etc/resolv.conf), proxy (Acquire::http::Proxy) and "
            "outbound network, e.g. `apt-get update` on the host")
    if not missing:
        return Result("repos", WARNING, title,
                      f"cannot reach {detail}; not needed now, every package is installed",
                      fix_hint=hint)
    level = BLOCKING if len(bad) == len(urls) else WARNING
    return Result("repos", level, title, f"cannot reach {detail}, so packages cannot be "
                  "downloaded" if level == BLOCKING else f"cannot reach {detail}",
                  fix_hint=hint)


def _lock(ctx: Context, holders: str, missing: list[str], plat: Platform | None) -> Result:
    title = "No other package manager running"
    if not holders:
        return Result("pkg-lock", OK, title, "the package manager lock is free")
    if not missing:
        return Result("pkg-lock", OK, title, f"{holders} holds the package manager lock, but "
                      "every package is already installed")
    return Result("pkg-lock", WARNING, title,
                  f"{holders} still holds the package manager lock; the packages step waits up "
                  f"to {lock_wait_seconds()} s for it, then explains",
                  fix_hint="let it finish (often unattended-upgrades after boot), or stop it")


def _endpoint(ctx: Context) -> Callable[[], Result]:
    """Start the local TCP check now; the returned function collects it."""
    title = "Endpoint host reachable from here"
    host = ctx.profile.endpoint_host
    box: dict = {}
    if host == ctx.profile.host.address:
        return lambda: Result("endpoint", OK, title,
                              f"{host} is the SSH host itself, reached already")

    def probe():
        try:
            socket.create_connection((host, 22), timeout=1.5).close()
            box["ok"] = True
        except ConnectionRefusedError:
            box["ok"] = True  # the host answered (nothing on 22)
        except OSError as exc:
            box["err"] = exc.strerror or str(exc) or type(exc).__name__

    t = threading.Thread(target=probe, daemon=True)
    t.start()

    def collect() -> Result:
        t.join(2.0)
        if box.get("ok"):
            return Result("endpoint", OK, title, f"{host} answers from this machine")
        return Result("endpoint", WARNING, title,
                      f"{host} does not answer from this machine ({box.get('err', 'timed out')});"
                      " verification will go through the SSH port forward instead",
                      fix_hint="clients elsewhere need a route to the endpoint host")
    return collect


def run_checks(ctx: Context, *, wait_for_lock: bool = True) -> list[Result]:
    """All preflight checks; changes nothing on the host."""
    endpoint = _endpoint(ctx)
    r = ctx.sh(FACTS_SH, check=False, quiet=True, timeout=60)
    s = _sections(r.stdout)
    results: list[Result] = []
    plat_res, plat = _platform(ctx, s.get("os", ""))
    results.append(plat_res)
    results.append(_sudo(ctx, s.get("uid", "")))
    results.append(_memory(_mem_bytes(s.get("mem", ""))))
    disk = s.get("disk", "").strip()
    results.append(_disk(int(disk) if disk.isdigit() else None))
    name = s.get("hostname", "").strip()
    results.append(_hostname(ctx, name, s.get("resolved", "").split(), s.get("addrs", "").split()))
    results += _ports(ctx, s.get("ss", ""))
    results.append(_time(ctx, s.get("time", "")))

    holders = s.get("lock", "").strip()
    if plat is not None:
        pkgs = _wanted_packages(ctx, plat)
        urls = (repo_urls(s.get("sources", ""), s.get("sources822", "")) if plat.family == "deb"
                else yum_urls(s.get("yum", "")))
        script = "echo @@pkgs\n" + plat.installed_check_cmd(pkgs) + "\n" + _probe_sh(urls, plat.family)
        r2 = ctx.sh(script, check=False, quiet=True, timeout=60)
        s2 = _sections(r2.stdout)
        if plat.family == "deb":
            have = {ln.split()[0] for ln in s2.get("pkgs", "").splitlines()
                    if ln.strip().endswith(" installed")}
        else:
            have = {p for p in pkgs if any(ln.startswith(p + "-") for ln in s2.get("pkgs", "").splitlines())}
        missing = [p for p in pkgs if p not in have]
        probes = {}
        for ln in s2.get("probes", "").splitlines():
            m = re.match(r"probe (\d+) (\d+) ?(.*)", ln)
            if m:
                probes[int(m.group(1))] = (int(m.group(2)), m.group(3))
        results.append(_repos(ctx, plat, urls, probes, missing))
        if plat.family == "rpm":
            pm = s.get("pm", "").strip()
            holders = ", ".join(f"{ln.split()[1]} (pid {ln.split()[0]})"
                                for ln in pm.splitlines() if len(ln.split()) > 1)
        if holders and missing and wait_for_lock and plat.family == "deb":
            wait = min(lock_wait_seconds(), 10)
            _, holders = run_lock_wait(ctx, wait, timeout=60)
        results.append(_lock(ctx, holders, missing, plat))
    results.append(endpoint())
    return results


def apply_fixes(ctx: Context, results: list[Result], *, everything: bool = True) -> list[Result]:
    """Apply the fixes of non-ok results; ``everything=False``: only what the profile allows."""
    done = []
    for res in results:
        if res.level == OK or res.fix is None:
            continue
        if not everything and not (res.id == "hostname" and ctx.profile.openstack.fix_hosts):
            continue
        ctx.output(f"fixing: {res.title} - {res.fix_hint}")
        res.fix(ctx)
        done.append(res)
    return done


def report(ctx: Context, results: list[Result]) -> None:
    for res in results:
        for line in res.lines():
            ctx.output(line)
        if res.level == WARNING and ctx.engine is not None:
            ctx.engine.emit(Notice(ctx.redact(f"preflight warning: {res.title}: {res.why}"),
                                   ctx.step_id))
    ctx.facts["preflight"] = [r.to_dict() for r in results]


def fix_enabled(ctx: Context) -> bool:
    return bool(getattr(ctx, "options", {}).get("fix"))


def blocking_error(results: list[Result]) -> StepError:
    bad = [r for r in results if r.blocking]
    return StepError(
        f"Preflight: the host cannot take the install yet ({len(bad)} blocking: "
        + ", ".join(r.title for r in bad) + "). Nothing was installed.",
        " ".join(f"{r.title}: {r.why}." for r in bad),
        "; ".join(r.fix_hint for r in bad if r.fix_hint)
        + (" - then Retry" if bad else "")
        + ("; stack-tui can fix some of this itself: run with --fix (or "
           "`stack-tui check PROFILE --fix`)" if any(r.fix for r in bad) else ""),
        tail=[ln for r in results if r.level != OK for ln in r.lines()])


def _step_check(ctx: Context) -> bool:
    results = run_checks(ctx)
    ctx.cache["preflight"] = results
    report(ctx, results)
    if any(r.blocking for r in results):
        return False
    # Something a fix would improve and the user asked for fixes: do them in run().
    return not any(r.fix and r.level != OK and fix_enabled(ctx) for r in results)


def _step_run(ctx: Context) -> None:
    results = ctx.cache.pop("preflight", None) or run_checks(ctx)
    fixed = apply_fixes(ctx, results, everything=fix_enabled(ctx))
    if fixed:
        ctx.output("checking again after the fixes")
        results = run_checks(ctx)
        report(ctx, results)
    if any(r.blocking for r in results):
        raise blocking_error(results)


def phase() -> Phase:
    return Phase("preflight", "Preflight checks", [
        Step("preflight.checks", "Preflight: can this host take the install?",
             run=_step_run, check=_step_check,
             detail="distribution and release, root/sudo without a TTY, memory, free disk in "
                    "/var, host name resolution, ports " + ", ".join(str(p) for p in PORTS)
                    + ", time sync, package repositories and lock, endpoint reachable; changes "
                    "nothing unless fixes are allowed (--fix; fix_hosts for /etc/hosts)",
             files=["/etc/hosts (only with --fix or fix_hosts)"]),
    ])
