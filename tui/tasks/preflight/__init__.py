"""Preflight: find what would make the install fail, before anything on the host changes.

UI-free.  ``run_checks(ctx)`` gathers the facts in two or three SSH round
trips (one batched shell script, then the package/repository probes, and a
lock wait only when another package manager is busy) and returns a list of
``Result``: ok / warning / blocking, one sentence of why, and a fix where one
exists.  Fixes run only on the user's say-so (``--fix``, the TUI's Fix key, or
``fix_hosts = true`` in the profile for /etc/hosts).

The ``preflight.checks`` step (first in every plan) runs them all and fails
with the blocking ones and their fixes, before a single package is installed.

Parts: ``facts`` (the batched probe and its parsers), ``checks`` (one function per
check), ``compute`` (the checks for Nova and Neutron: KVM, memory, kernel facilities, the
provider network), ``result`` (Result and levels); this module runs them and is the step.
"""

from __future__ import annotations

from ..engine import Context, Notice, Phase, Step, StepError
from ..pkglock import lock_wait_seconds, run_lock_wait
from ..platforms import Platform
from ..services import host_packages, neutron
from .checks import (PORTS, _disk, _endpoint, _hostname, _lock, _memory, _platform, _ports,
                     _repos, _sudo, _time)
from .compute import compute_checks, unused_ports
from .facts import (FACTS_SH, _mem_bytes, _probe_sh, _sections, parse_probes, parse_ss,
                    repo_urls, yum_urls)
from .result import BLOCKING, GiB, OK, WARNING, Result

__all__ = ["BLOCKING", "GiB", "OK", "PORTS", "WARNING", "Result", "apply_fixes", "blocking_error",
           "parse_ss", "phase", "repo_urls", "report", "run_checks", "yum_urls"]


def run_checks(ctx: Context, *, wait_for_lock: bool = True) -> list[Result]:
    """All preflight checks; changes nothing on the host."""
    endpoint = _endpoint(ctx)
    r = ctx.sh(FACTS_SH, check=False, quiet=True, timeout=60)
    s = _sections(r.stdout)
    results: list[Result] = []
    plat_res, plat = _platform(ctx, s.get("os", ""))
    results.append(plat_res)
    results.append(_sudo(ctx, s.get("uid", "")))
    mem = _mem_bytes(s.get("mem", ""))
    results.append(_memory(mem))
    disk = s.get("disk", "").strip()
    results.append(_disk(int(disk) if disk.isdigit() else None))
    name = s.get("hostname", "").strip()
    results.append(_hostname(ctx, name, s.get("resolved", "").split(), s.get("addrs", "").split()))
    if "controller" in ctx.profile.host.roles:   # a compute host serves none of these ports
        results += _ports(ctx, s.get("ss", ""), unused_ports(plat))
    results.append(_time(ctx, s.get("time", "")))
    if plat is not None:
        results += compute_checks(ctx, plat, s, mem)
        results += _package_checks(ctx, plat, s, wait_for_lock)
    results.append(endpoint())
    return results


def _package_checks(ctx: Context, plat: Platform, s: dict[str, str],
                    wait_for_lock: bool) -> list[Result]:
    """Repositories reachable and the package manager's lock, in one more round trip."""
    pm = plat.pm
    pkgs = host_packages(ctx.profile, plat)
    urls = pm.sources(s)
    script = "echo @@pkgs\n" + pm.installed_check_cmd(pkgs) + "\n" + _probe_sh(urls, pm)
    s2 = _sections(ctx.sh(script, check=False, quiet=True, timeout=60).stdout)
    have = pm.installed(pkgs, s2.get("pkgs", ""))
    missing = [p for p in pkgs if p not in have]
    probes = parse_probes(s2.get("probes", ""))
    holders = pm.holders(s)
    if holders and missing and wait_for_lock and pm.lock_waits:
        wait = min(lock_wait_seconds(), 10)
        _, holders = run_lock_wait(ctx, wait, timeout=60)
    return [_repos(ctx, plat, urls, probes, missing), _lock(ctx, holders, missing, plat)]


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


def tell(ctx: Context, results: list[Result]) -> None:
    """Show the results (output lines, a notice per warning); records nothing."""
    for res in results:
        for line in res.lines():
            ctx.output(line)
        if res.level == WARNING and ctx.engine is not None:
            ctx.engine.emit(Notice(ctx.redact(f"preflight warning: {res.title}: {res.why}"),
                                   ctx.step_id))


def report(ctx: Context, results: list[Result]) -> None:
    """Show the results and record them in the run state's facts."""
    tell(ctx, results)
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


def _satisfied(ctx: Context, results: list[Result]) -> bool:
    """Nothing blocks, and no fix the user asked for (--fix) is pending."""
    if any(r.blocking for r in results):
        return False
    return not any(r.fix and r.level != OK and fix_enabled(ctx) for r in results)


def _step_check(ctx: Context) -> bool:
    """Pure: reads the host, shows what it found, decides.  Records and fixes nothing."""
    results = run_checks(ctx)
    tell(ctx, results)
    return _satisfied(ctx, results)


def _step_run(ctx: Context) -> None:
    """Reached when the check found a blocker or a wanted fix: fix, re-check, record, explain."""
    results = run_checks(ctx, wait_for_lock=False)  # the check has just waited for the lock
    fixed = apply_fixes(ctx, results, everything=fix_enabled(ctx))
    if fixed:
        ctx.output("checking again after the fixes")
        results = run_checks(ctx)
        tell(ctx, results)
    ctx.facts["preflight"] = [r.to_dict() for r in results]
    if any(r.blocking for r in results):
        raise blocking_error(results)


def _plan_ports(services) -> str:
    """The ports the plan names: every default service's (as before opt-in services existed)
    and those of the selected ones; Open vSwitch's apart (the plan knows no platform yet)."""
    from ..services import REGISTRY

    wanted = {s.id for s in REGISTRY if s.default} | set(services or ())
    ovs = unused_ports(None)
    ports = [p for p, (owner, _holders, _label) in PORTS.items() if owner in wanted]
    text = ", ".join(str(p) for p in ports if p not in ovs)
    mine = [str(p) for p in ports if p in ovs]
    return text + (f" ({' and '.join(mine)} where Neutron uses Open vSwitch)" if mine else "")


def _compute_detail(services) -> str:
    svc = set(services or ())
    out = ""
    if "nova" in svc:
        out += ", CPU virtualization (KVM or QEMU emulation), memory for compute"
    if svc & {"nova", "neutron"}:
        out += ", kernel facilities (the Neutron mechanism's modules or /dev/net/tun, CAP_NET_ADMIN)"
    if "neutron" in svc:
        out += (", network namespaces, provider network " + neutron.PROVIDER_CIDR
                + " and its interfaces free")
    return out


def phase(services=None) -> Phase:
    return Phase("preflight", "Preflight checks", [
        Step("preflight.checks", "Preflight: can this host take the install?",
             run=_step_run, check=_step_check,
             detail="distribution and release, root/sudo without a TTY, memory, free disk in "
                    "/var, host name resolution, ports " + _plan_ports(services)
                    + ", time sync, package repositories and lock, endpoint reachable"
                    + _compute_detail(services) + "; changes "
                    "nothing unless fixes are allowed (--fix; fix_hosts for /etc/hosts)",
             files=["/etc/hosts (only with --fix or fix_hosts)"]),
    ])
