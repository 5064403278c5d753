"""Prepare the host: platform, host name, repository and the one package transaction."""

from __future__ import annotations

import re

from ..engine import Context, Phase, Step, StepError
from ..platforms import Platform
from ..pkglock import lock_wait_seconds, run_lock_wait
from .base import PerPlatform
from .common import SERVICE as SERVICE_LIMIT
from .common import LOOK, POLICY_RC, POLICY_RC_BODY, detect_platform, fix_hosts_file, platform_of, q
from .keystone import distro_unit


def _hosts_state(ctx: Context) -> tuple[str, list[str], list[str]]:
    r = ctx.sh("hostname; echo ---; getent ahostsv4 \"$(hostname)\" | awk '{print $1}' | sort -u; "
               "echo ---; ip -o -4 addr show | awk '{split($4,a,\"/\"); print a[1]}'",
               quiet=True, timeout=LOOK)
    name, resolved, have = (part.split() for part in r.stdout.split("---"))
    return name[0] if name else "", resolved, have


def local_resolution(resolved: list[str], have: list[str], mgmt: str | None = None) -> str | None:
    """The address the host's name resolves to that the services will use, or None when it
    resolves to no usable one.  Without ``mgmt`` (the profile's management address): the
    first local, non-loopback address it resolves to.  With it: ``mgmt``, when the host has
    it and the name resolves to it and to no other non-loopback address."""
    if mgmt:
        others = [a for a in resolved if a != mgmt and not a.startswith("127.")]
        return mgmt if mgmt in resolved and mgmt in have and not others else None
    good = [a for a in resolved if a in have and not a.startswith("127.")]
    return good[0] if good else None


def mgmt_missing(mgmt: str, real: list[str]) -> tuple[str, str]:
    """What to say when the host lacks the profile's management address, and what to do
    (the step and the preflight say the same)."""
    return (f"the profile gives {mgmt} as this host's management address (mgmt_address), "
            f"but the host has no such address ({', '.join(real) or 'none but loopback'})",
            "correct mgmt_address in the profile (or leave it out to use the address the "
            "host's name resolves to), or give the host that address")


def _mgmt(ctx: Context) -> str | None:
    """The controller's management address as the profile gives it (None: detect it)."""
    return ctx.profile.host.mgmt_address


def _resolved_local(ctx: Context) -> tuple[str, str | None]:
    """The host's name and the address it resolves to that the services use (see
    ``local_resolution``), or None."""
    name, resolved, have = _hosts_state(ctx)
    return name, local_resolution(resolved, have, _mgmt(ctx))


def _hosts_check(ctx: Context) -> bool:
    """Only reads: done when the name resolves to a local address (the profile's management
    address when it gives one) and the run's facts (kept in the state file) already record
    that name and address."""
    name, addr = _resolved_local(ctx)
    return addr is not None and (ctx.facts.get("hostname"), ctx.facts.get("mgmt_address")) \
        == (name, addr)


def _hosts_record(ctx: Context) -> bool:
    """Record the host name and management address when the name resolves locally."""
    name, addr = _resolved_local(ctx)
    if addr is None:
        return False
    ctx.facts["hostname"] = name
    ctx.facts["mgmt_address"] = addr
    given = ", the management address the profile gives" if _mgmt(ctx) else ""
    ctx.output(f"{name} resolves to {addr}, an address of this host{given}")
    return True


def _target_address(ctx: Context, have: list[str]) -> str:
    """The address to map the host's name to: the profile's management address (which the
    host must have), else the SSH address when local, else the first non-loopback one."""
    mgmt = _mgmt(ctx)
    real = [a for a in have if not a.startswith("127.")]
    if mgmt and mgmt not in have:
        what, hint = mgmt_missing(mgmt, real)
        raise StepError(what[0].upper() + what[1:] + ".",
                        "the services would be configured to talk on an address nobody "
                        "answers on", hint)
    if mgmt:
        return mgmt
    if ctx.profile.host.address in have:
        return ctx.profile.host.address
    if not real:
        raise StepError("The host has no non-loopback IPv4 address.", "", "check its network")
    return real[0]


def _hosts_run(ctx: Context) -> None:
    if _hosts_record(ctx):
        return
    name, resolved, have = _hosts_state(ctx)
    addr = _target_address(ctx, have)
    if not ctx.profile.openstack.fix_hosts:
        wanted = (f"to {addr}, the management address the profile gives" if _mgmt(ctx)
                  else f"to an address this host has ({', '.join(have)})")
        raise StepError(
            f"The host name {name} resolves to {', '.join(resolved) or 'nothing'}, "
            f"not {wanted}.",
            "RabbitMQ's node name is rabbit@<hostname>; epmd cannot start when the name does "
            "not resolve to a local address",
            f"add '{addr} {name}' to /etc/hosts, or set fix_hosts = true in the profile "
            "(preflight --fix)")
    fix_hosts_file(ctx, name, addr)
    if not _hosts_record(ctx):
        raise StepError(f"{name} still does not resolve to {addr} after fixing /etc/hosts.",
                        "nsswitch.conf may not consult files first", "check /etc/nsswitch.conf")


def _repo_check(ctx: Context) -> bool:
    plat = platform_of(ctx)
    return ctx.sh(plat.repo_check, check=False, quiet=True, timeout=LOOK).status == 0


def _repo_run(ctx: Context) -> None:
    plat = platform_of(ctx)
    for cmd in plat.repo_setup:
        ctx.sh(cmd, timeout=900)


# Installed with any selection: the client the steps and the user drive the cloud with (and,
# on EL, RDO's SELinux policies for the services).
# What every host gets, a compute-only host too (its steps drive the cloud from here, not with
# the client on the host) ...
HOST_PACKAGES = PerPlatform(deb=(), rpm=("openstack-selinux",))
# ... and the controller, with the client.
BASE_PACKAGES = PerPlatform(deb=("python3-openstackclient",) + HOST_PACKAGES.deb,
                            rpm=("python3-openstackclient",) + HOST_PACKAGES.rpm)


def wanted_packages(ctx: Context) -> list[str]:
    """This host's packages (services.host_packages: a compute-only host's are its own)."""
    from . import host_packages  # the registry's: services/__init__.py imports this module

    return host_packages(ctx.profile, platform_of(ctx))


def _keystone_here(ctx: Context) -> bool:
    """Keystone is installed on this host (the controller's, when it is selected)."""
    return "keystone" in ctx.profile.openstack.services and ctx.profile.controller_here


def _missing_packages(ctx: Context) -> list[str]:
    plat = platform_of(ctx)
    pkgs = wanted_packages(ctx)
    r = ctx.sh(plat.installed_check_cmd(pkgs), check=False, quiet=True, timeout=LOOK)
    ok = plat.pm.installed(pkgs, r.stdout)
    return [p for p in pkgs if p not in ok]


def _packages_check(ctx: Context) -> bool:
    missing = _missing_packages(ctx)
    if missing:
        return False
    plat = platform_of(ctx)
    if plat.pm.blocks_service_starts and ctx.sh(f"grep -qs stack-tui {POLICY_RC}", check=False,
                                       quiet=True, timeout=LOOK).ok:
        return False  # left behind by a killed run: the run step removes it
    ks = distro_unit(plat)
    if ks and _keystone_here(ctx):
        r = ctx.sh(f"systemctl is-enabled {q(ks)} 2>/dev/null",
                   check=False, quiet=True, timeout=LOOK)
        return r.stdout.strip() == "masked"
    return True


DEBCONF = """keystone keystone/configure_db boolean false
keystone keystone/create-admin-tenant boolean false
keystone keystone/register-endpoint boolean false
keystone keystone/setup-keystone-db boolean false
glance-common glance/configure_db boolean false
glance-common glance/configure_rabbit boolean false
glance-common glance/configure_ksat boolean false
glance-api glance/configure_api-endpoint boolean false
glance-api glance/register-endpoint boolean false
"""


def _packages_run(ctx: Context) -> None:
    plat = platform_of(ctx)
    missing = _missing_packages(ctx)
    if plat.pm.blocks_service_starts and not missing:
        # A killed run's policy-rc.d would keep blocking service starts for good.
        ctx.sh(f"grep -qs 'stack-tui' {POLICY_RC} && rm -f {POLICY_RC}; true",
               quiet=True, timeout=LOOK)
    if plat.pm.blocks_service_starts:
        ks = distro_unit(plat)
        if missing:
            # A package manager still at work (e.g. the apt-get of a killed run, which goes
            # on without us) holds dpkg's lock and debconf's database: wait for it first.
            _apt(ctx, "true")
            # Packages must not start services with their default configs: we start each
            # one once, configured (no needless restarts; no uWSGI keystone on :5000).
            ctx.sh("debconf-set-selections", stdin=DEBCONF, quiet=True, timeout=LOOK)
            fresh = ctx.sh("find /var/lib/apt/lists -maxdepth 1 -name '*_InRelease' -mmin -360 "
                           "| head -1", check=False, quiet=True, timeout=LOOK).stdout.strip()
            if not fresh:
                ctx.output("refreshing package lists (apt-get update)")
                # No apt-internal retries: the step's own retries (with backoff) bound the wait.
                _apt(ctx, "apt-get update -q -o Acquire::Retries=0")
            if ks:
                # keystone's postinst enables its unit and fails when it is masked.
                ctx.sh(f"systemctl unmask -q {q(ks)}.service 2>/dev/null; true",
                       quiet=True, timeout=LOOK)
            ctx.transport.write_file(POLICY_RC, POLICY_RC_BODY, mode=0o755)
            try:
                _apt(ctx, "dpkg --configure -a")
                _install(ctx, plat.install_cmd(missing))
            finally:
                ctx.sh(f"grep -qs 'stack-tui' {POLICY_RC} && rm -f {POLICY_RC}; true",
                       quiet=True, timeout=LOOK)
        if ks and _keystone_here(ctx):
            # Apache serves Keystone: the packaged uWSGI service must never grab :5000.
            # It never started (policy-rc.d), so there is no 15 s stop timeout to wait for.
            ctx.sh(f"systemctl disable -q {q(ks)}.service 2>/dev/null; "
                   f"systemctl is-active -q {q(ks)}.service && systemctl kill -s KILL {q(ks)}.service; "
                   f"systemctl mask -q {q(ks)}.service", quiet=True, timeout=SERVICE_LIMIT)
    else:
        if missing:
            _apt(ctx, plat.install_cmd(missing))
    still = _missing_packages(ctx)
    if still:
        raise StepError(f"Packages still missing after install: {' '.join(still)}.",
                        "the package manager did not install them", "see the output above")


def _install(ctx: Context, cmd: str) -> None:
    """apt-get install; when only packages' setup scripts failed ("Errors were encountered
    while processing"), they are configured once more before the step gives up: some fail
    now and then, e.g. Debian 12's openstack-dashboard, whose postinst compresses the
    dashboard's CSS with pyScss in django-compressor's 4 threads (pyScss is not thread-safe)
    and stopped on a garbled token ("Found 'inline-blo'") in about one run of twelve; so
    twice, when the first repair fails the same way (horizon.static compresses with one
    thread, see horizon.compress_script)."""
    try:
        _apt(ctx, cmd, watch=AptProgress(ctx).feed)
    except StepError as exc:
        failed = setup_script_failures(exc.tail or [])
        if not failed:
            raise
        ctx.output(f"the setup script of {', '.join(failed)} failed; configuring once more "
                   "(dpkg --configure -a), then the rest of the install")
        for attempt in (1, 2):
            try:
                _apt(ctx, "dpkg --configure -a")
                break
            except StepError as again:
                if attempt == 2 or not setup_script_failures(again.tail or []):
                    raise
                ctx.output("a setup script failed again; configuring one last time")
        _apt(ctx, cmd)  # what apt had not reached when it stopped


def setup_script_failures(lines: list[str]) -> list[str]:
    """The packages apt names under "Errors were encountered while processing:" (empty when
    anything else went wrong, e.g. a download)."""
    out: list[str] = []
    if any(_APT_FETCH_FAILED.search(ln) for ln in lines):
        return out
    after = False
    for ln in lines:
        if ln.startswith("Errors were encountered while processing:"):
            after = True
        elif after and re.fullmatch(r" [a-z0-9][a-z0-9+.:-]*", ln.rstrip("\n")):
            out.append(ln.strip())
        else:
            after = False
    return out


def _apt(ctx: Context, cmd: str, watch=None) -> None:
    # Another package manager's lock: wait for it with a visible countdown (found in
    # /proc/locks: no fuser, which minimal hosts lack), then explain; the step retries.

    wait = lock_wait_seconds()
    r, holders = run_lock_wait(ctx, wait, then=cmd + " 2>&1", timeout=1800, watch=watch)
    if holders:
        raise StepError(f"The package manager lock is still held by {holders} after waiting "
                        f"{wait} s.", "", "", transient=True)
    # `apt-get update` exits 0 when it cannot fetch the indexes ("W: Failed to fetch"):
    # the install then failed later with a misleading "Unable to locate package".
    failed = [ln.strip() for ln in r.lines if _APT_FETCH_FAILED.search(ln)]
    if failed and (r.status != 0 or " update" in cmd):
        raise StepError(
            "Cannot reach the package repository from the host.",
            failed[0][:300],
            "check the host's outbound network, DNS (/etc/resolv.conf) and apt proxy "
            "(`apt-get update` on the host shows the same), then Retry",
            tail=r.lines[-25:], transient=True)
    if r.status != 0:
        raise StepError(f"Package command failed (exit {r.status}): {cmd}", "",
                        "", tail=r.lines[-25:])


# apt's lines for an index or package it could not download
_APT_FETCH_FAILED = re.compile(r"^(W|E): (Failed to fetch|Unable to fetch some archives|"
                               r"Some index files failed to download)")


class AptProgress:
    """Packages downloaded / unpacked / set up, counted from apt-get install's output
    ('N upgraded, M newly installed', 'Get:', 'Unpacking', 'Setting up') and reported as
    step progress: the progress tree and bar move, the log pane's title names the package.

    One unit per package per stage (3 x the packages in all); an event per counted line,
    so the package shown is the one at work (a slow postinst shows as itself)."""

    _TOTAL = re.compile(r"^(\d+) upgraded, (\d+) newly installed(?:, (\d+) reinstalled)?,")
    _GET = re.compile(r"^Get:(\d+) \S+ (.+?) \[[^\]]*\]$")
    _DPKG = re.compile(r"^(Unpacking|Setting up) ([^\s:]+)(?::\S+)? \(")
    STAGES = ("downloaded", "unpacked", "set up")

    def __init__(self, ctx: Context | None = None):
        self.ctx = ctx
        self.total = 0
        self.counts = [0, 0, 0]
        self.stage = -1
        self.current = ""

    @property
    def done(self) -> int:
        fetched = self.total if self.counts[1] or self.counts[2] else self.counts[0]
        return min(fetched, self.total) + min(self.counts[1], self.total) + \
            min(self.counts[2], self.total)

    @property
    def text(self) -> str:
        if self.stage < 0:
            return ""
        n = min(self.counts[self.stage], self.total)
        return f"{self.STAGES[self.stage]} {n}/{self.total}: {self.current}"

    def feed(self, line: str) -> bool:
        """Count one output line; True when the progress changed."""
        line = line.strip()
        m = self._TOTAL.match(line)
        if m:
            self.total = sum(int(g or 0) for g in m.groups())
            return False
        if not self.total:
            return False
        if line.startswith("Fetched "):
            self.counts[0] = self.total
            return False
        m = self._GET.match(line)
        if m:  # apt numbers its downloads: Get:N is the Nth
            words = m.group(2).split()  # suite/component arch NAME arch version
            stage, name = 0, words[-3] if len(words) >= 3 else words[0]
            self.counts[0] = max(self.counts[0], int(m.group(1)))
        else:
            m = self._DPKG.match(line)
            if not m:
                return False
            stage, name = (1 if m.group(1) == "Unpacking" else 2), m.group(2)
            self.counts[stage] += 1
        self.stage, self.current = stage, name
        if self.ctx is not None:
            self.ctx.progress(self.done, 3 * self.total, self.text)
        return True


def phases(profile, plat: Platform, pkgs: list[str]) -> list[Phase]:
    """Detect, host name, repository, the one package transaction."""
    prepare = [
        Step("prepare.detect", "Detect the distribution and release",
             run=lambda c: detect_platform(c),
             check=lambda c: detect_platform(c, check_only=True),
             detail="read /etc/os-release; pick the platform profile"),
        Step("prepare.hostname", "Make the host name resolve to a local address",
             run=_hosts_run, check=_hosts_check,
             detail="getent hosts $(hostname); fix /etc/hosts when the profile allows it",
             files=["/etc/hosts"]),
    ]
    if plat.repo_setup:
        prepare.append(Step("prepare.repo", f"Enable the OpenStack {plat.openstack} repository",
                            run=_repo_run, check=_repo_check, retries=3,
                            detail="; ".join(plat.repo_setup)))
    prepare.append(Step(
        "prepare.packages", "Install the packages (one transaction)",
        run=_packages_run, check=_packages_check, retries=3,
        detail=(("debconf-set-selections (no automatic db/endpoint setup); "
                 + "policy-rc.d blocks service starts during the install; "
                 + (f"then systemctl mask {distro_unit(plat)} (Apache serves Keystone); "
                    if distro_unit(plat) else ""))
                if plat.pm.blocks_service_starts else "") + plat.install_cmd(pkgs),
        files=[POLICY_RC] if plat.pm.blocks_service_starts else []))
    return [Phase("prepare", "Prepare the host", prepare)]
