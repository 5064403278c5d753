"""The plan: preflight, prepare, each selected service in registry order, finish.

The steps live in ``tui/tasks/services/`` (one module per service).
"""

from __future__ import annotations

from .engine import Phase, Plan
from .platforms import PLATFORMS
from .services import REGISTRY, finish, prepare


def build_plan(profile, platform_id: str | None = None) -> Plan:
    """All phases for the profile.  ``platform_id`` only shapes plan text."""
    from .preflight import phase as preflight_phase

    svc = set(profile.openstack.services)
    pid = platform_id or (profile.openstack.platform if profile.openstack.platform != "auto"
                          else "debian-13")
    plat = PLATFORMS[pid]
    chosen = [s for s in REGISTRY if s.id in svc]
    pkgs = plat.packages_for(svc)
    phases: list[Phase] = [preflight_phase()]  # first: blocks before anything is installed
    phases += prepare.phases(profile, plat, pkgs)
    for s in chosen:
        phases += s.phases(profile, plat)
    if "keystone" in svc:
        phases += finish.phases(profile, plat)
    return Plan(phases, platform=plat.id)
