"""The plan: preflight, prepare, each selected service in registry order, finish.

The steps live in ``tui/tasks/services/`` (one module per service).
"""

from __future__ import annotations

from .engine import Phase, Plan
from . import explain, platforms
from .platforms import PLAN_ASSUMED, PLATFORMS
from .services import REGISTRY, finish, host_packages, prepare


def build_plan(profile, platform_id: str | None = None) -> Plan:
    """All phases for the profile on ``platform_id`` (the host's, resolved by the runner).

    Without one (``stack-tui plan``, no host asked yet) the profile's forced platform, else
    PLAN_ASSUMED, which the plan text says is assumed.  An unknown id is an UnknownPlatform.
    A profile of several hosts is planned in stages (tui/tasks/fleet.py)."""
    forced = profile.openstack.platform
    plat = platforms.by_id(platform_id or (forced if forced != "auto" else PLAN_ASSUMED))
    if len(profile.hosts) > 1:
        from .fleet import fleet_plan
        return fleet_plan(profile, plat, _one_host_phases(profile, plat))
    return Plan(_one_host_phases(profile, plat), platform=plat.id,
                rules=explain.rules_for(REGISTRY))


def _one_host_phases(profile, plat) -> list[Phase]:
    """Every phase of the install on one host (the controller of several)."""
    from .preflight import phase as preflight_phase

    svc = set(profile.openstack.services)
    chosen = [s for s in REGISTRY if s.id in svc]
    pkgs = host_packages(profile, plat)
    phases: list[Phase] = [preflight_phase(svc)]  # first: blocks before anything is installed
    phases += prepare.phases(profile, plat, pkgs)
    for s in chosen:
        phases += s.phases(profile, plat)
    if "keystone" in svc:
        phases += finish.phases(profile, plat)
    return phases


def unsupported_plan() -> Plan:
    """The plan for a host whose system stack-tui does not support: the preflight alone,
    whose platform check blocks and names the system.  No platform is assumed."""
    from .preflight import phase as preflight_phase

    return Plan([preflight_phase()], platform="", rules=explain.rules_for(REGISTRY))


def describe_plan(profile) -> str:
    """The plan as `stack-tui plan` prints it (and the support bundle stores it)."""
    lines: list[str] = []
    say = lines.append
    plan = build_plan(profile)
    plat = PLATFORMS[plan.platform]
    forced = profile.openstack.platform != "auto"
    say(f"Profile {profile.name}: {profile.host.user}@{profile.host.address}:{profile.host.port}, "
        f"region {profile.openstack.region}, endpoints on {profile.endpoint_host}")
    if len(profile.hosts) > 1:
        say(f"Hosts: {len(profile.hosts)}: " + "; ".join(
            f"{h.name} ({', '.join(h.roles)}) {h.user}@{h.address}:{h.port}"
            + (f", management {h.mgmt_address}" if h.mgmt_address else "")
            for h in profile.hosts))
        say("Stages: every host's preflight at once; the controller's packages; its services "
            "while the compute hosts install their packages; the compute hosts at once; the "
            "controller discovers them and verifies")
    say(f"Platform: {plat.name}, OpenStack {plat.openstack}"
        + ("" if forced else " (assumed; detected from /etc/os-release at run time)")
        + ("" if plat.verified else " - NOT YET VERIFIED on a real host"))
    if plat.support:
        say(f"Support: {plat.support}")
    if not forced:
        others = [f"{p.name}: OpenStack {p.openstack}" for p in PLATFORMS.values()
                  if p.id != plat.id and p.verified]
        if others:
            say("Other verified platforms get: " + "; ".join(others))
    say(f"Services: {', '.join(profile.openstack.services)}; demo project: "
        f"{'yes' if profile.openstack.demo else 'no'}")
    if "glance" in profile.openstack.services:
        img = profile.image
        say(f"Image: {img.name} from {img.source()}" if img.upload
            else "Image: none (upload = false): Glance is installed empty, the image phase is skipped")
    n = 0
    for phase in plan.phases:
        say(f"\n{phase.title} [{phase.id}]")
        for step in phase.steps:
            n += 1
            say(f"  {n:2d}. {step.id:28s} {step.title}")
            if step.detail:
                say(f"      does:  {step.detail}")
            if step.files:
                say(f"      files: {', '.join(step.files)}")
    return "\n".join(lines) + "\n"
