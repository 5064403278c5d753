"""The preflight checks, one function each: facts in, a Result out (they change nothing)."""

from __future__ import annotations

import re
import socket
import threading
import urllib.parse
from typing import Callable

from ..engine import Context
from ..pkglock import lock_wait_seconds
from ..platforms import Platform, by_id, describe, detect
from ..services import REGISTRY
from ..services.common import fix_hosts_file
from ..services.prepare import local_resolution, mgmt_missing
from .facts import parse_ss
from .result import BLOCKING, GiB, OK, WARNING, Result, _fmt_gib

# port -> (component that needs it, process names that may hold it, what it is)
PORTS: dict[int, tuple[str, frozenset, str]] = {
    p.port: (s.id, p.holders, p.label) for s in REGISTRY for p in s.ports}


def _sudo_mode(transport) -> str | None:
    """How the transport reaches root: its public ``sudo_mode`` when it has one."""
    mode = getattr(transport, "sudo_mode", None)
    return getattr(mode, "value", mode)


def _platform(ctx: Context, os_text: str) -> tuple[Result, Platform | None]:
    name = describe(os_text)
    found = detect(os_text)
    forced = ctx.profile.openstack.platform
    title = "Distribution and release"
    if forced != "auto":
        plat = by_id(forced)
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
    mode = _sudo_mode(ctx.transport)
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


# The sizes the host needs (bytes): under the first it cannot work, under the second it
# works slowly.  One source: the preflight and the Host screen read these.
MEM_MIN, MEM_GOOD = 2 * GiB, 4 * GiB
DISK_MIN, DISK_GOOD = 2 * GiB, 10 * GiB


def _sized(rid: str, title: str, value: int | None, unknown: str,
           levels: list[tuple[int, str, str, str]], ok: str) -> Result:
    """One size check: ``levels`` are (below, level, why, fix) in order; ``{size}`` in the
    texts is the value in GiB."""
    if value is None:
        return Result(rid, WARNING, title, unknown)
    size = _fmt_gib(value)
    for below, level, why, fix in levels:
        if value < below:
            return Result(rid, level, title, why.format(size=size), fix_hint=fix)
    return Result(rid, OK, title, ok.format(size=size))


def _memory(mem: int | None) -> Result:
    return _sized("memory", "Memory", mem, "could not read the host's memory size", [
        (MEM_MIN, BLOCKING, "the host has {size}; MariaDB, RabbitMQ, Keystone and Glance "
                            "need at least 2 GiB together or they are killed or fail to start",
         "give the host at least 4 GiB of memory"),
        (MEM_GOOD, WARNING, "the host has {size}; it works, but under 4 GiB the services "
                            "are slow and may run out of memory under load",
         "4 GiB or more is recommended"),
    ], "{size}")


def _disk(avail: int | None) -> Result:
    return _sized("disk", "Free disk in /var", avail, "could not read the free space in /var", [
        (DISK_MIN, BLOCKING, "only {size} free; the packages, databases and images need "
                             "more than that",
         "free space in /var or grow the disk (10 GiB or more)"),
        (DISK_GOOD, WARNING, "{size} free; enough to install, but images and logs fill "
                             "it quickly under 10 GiB",
         "free space in /var or grow the disk"),
    ], "{size} free")


def _hostname(ctx: Context, name: str, resolved: list[str], have: list[str]) -> Result:
    title = "Host name resolves to this host"
    mgmt = ctx.profile.host.mgmt_address
    if mgmt:
        return _hostname_mgmt(ctx, name, resolved, have, mgmt)
    good = local_resolution(resolved, have)
    if good:
        return Result("hostname", OK, title, f"{name} resolves to {good}, an address of "
                                             "this host")
    real = [a for a in have if not a.startswith("127.")]
    addr = ctx.profile.host.address if ctx.profile.host.address in have else (real[0] if real else "")
    why = (f"{name} resolves to {', '.join(resolved) or 'nothing'}, not to an address of this host "
           f"({', '.join(real) or 'none'}); RabbitMQ's node rabbit@{name} cannot start (epmd)")
    if not addr:
        return Result("hostname", BLOCKING, title, why,
                      fix_hint="give the host a non-loopback IPv4 address")
    return _hosts_fixable(ctx, title, why, name, addr)


def _hostname_mgmt(ctx: Context, name: str, resolved: list[str], have: list[str],
                   mgmt: str) -> Result:
    """The same check against the management address the profile gives: the name must
    resolve to it (and to no other non-loopback address), and the host must have it."""
    title = "Host name resolves to this host"
    if local_resolution(resolved, have, mgmt):
        return Result("hostname", OK, title, f"{name} resolves to {mgmt}, the management "
                                             "address the profile gives")
    real = [a for a in have if not a.startswith("127.")]
    if mgmt not in have:
        why, hint = mgmt_missing(mgmt, real)
        return Result("hostname", BLOCKING, title, why, fix_hint=hint)
    why = (f"{name} resolves to {', '.join(resolved) or 'nothing'}, not to {mgmt} alone, the "
           "management address the profile gives; RabbitMQ's node and the services would "
           "use another address")
    return _hosts_fixable(ctx, title, why, name, mgmt)


def _hosts_fixable(ctx: Context, title: str, why: str, name: str, addr: str) -> Result:
    def fix(c: Context, name=name, addr=addr) -> None:
        c.output(f"mapping {name} to {addr} in /etc/hosts")
        fix_hosts_file(c, name, addr)

    return Result("hostname", BLOCKING, title, why, fix=fix,
                  fix_hint=f"map {name} to {addr} in /etc/hosts (other lines are kept)"
                  + ("; apply does this by itself (fix_hosts = true in the profile)"
                     if ctx.profile.openstack.fix_hosts else ""))


def _ports(ctx: Context, ss_text: str, skip: set[int] = frozenset()) -> list[Result]:
    """The selected services' ports are free or held by them (``skip``: ports this platform's
    services never open)."""
    svc = set(ctx.profile.openstack.services)
    wanted = {p: v for p, v in PORTS.items() if v[0] in svc and p not in skip}
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
                      fix_hint=plat.pm.sources_hint)
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
