"""Several hosts: the plan in stages, each host's phases carrying its name.

  stage 0  every host's preflight at once; the controller's prepare (its packages)
  stage 1  the controller: every selected service, as on one host; the other hosts' prepare
           (their packages) meanwhile: it does not gate, only their own next phase waits
           for it.  Not at the same time as the controller's packages: those are on the
           critical path, and hosts that share a machine's cores or a mirror's bandwidth
           would slow them down (2x with three hosts on two cores), while the controller's
           services leave the cores mostly idle, waiting on databases and daemons
  stage 2  every other host at once: its compute node (services/compute_node.py)
  stage 3  the controller: the compute hosts discovered and their agents up, then the
           cloud objects and test servers, the credential files and the verification

The controller's steps keep the ids they have on one host (its state, resume and the
explanations are the same); another host's are prefixed with its name (``lab-2:...``).
"""

from __future__ import annotations

from dataclasses import replace

from . import explain
from .engine import Phase, Plan, Step, StepError
from .services import REGISTRY, host_packages, prepare

FIRST = ("preflight", "prepare")   # the controller's phases of stage 0
LAST = ("cloud", "finish")         # the controller's phases that wait for the compute hosts
COMPUTE_SERVICES = ("nova", "neutron")


def fleet_plan(profile, plat, controller: list[Phase]) -> Plan:
    """The plan for ``profile``'s hosts on ``plat``; ``controller``: the one-host phases."""
    from .preflight import phase as preflight_phase
    from .services import compute_node

    rules = explain.rules_for(REGISTRY)
    problem = ("compute hosts run instances only when Nova is selected"
               if "nova" not in profile.openstack.services
               else compute_node.unsupported(profile, plat))
    if problem:
        return Plan([_refused(problem)], platform=plat.id, rules=rules)
    first = [replace(p, stage=0) for p in controller if p.id in FIRST]
    middle = [replace(p, stage=1) for p in controller if p.id not in FIRST + LAST]
    last = [replace(p, stage=3) for p in controller if p.id in LAST]
    hosts01: list[Phase] = []   # the other hosts' preflight (stage 0) and prepare (1)
    hosts2: list[Phase] = []
    for h in profile.hosts:
        if h is profile.controller:
            continue
        view = profile.on(h.name)
        hosts01.append(on_host(h.name, preflight_phase(COMPUTE_SERVICES), 0))
        # its packages go on while the controller installs its services (stage 1), after
        # the controller's own: no one but the host itself (its compute phase) waits for them
        hosts01 += [replace(on_host(h.name, p, 1), gates=False)
                   for p in prepare.phases(view, plat, host_packages(view, plat))]
        hosts2 += [on_host(h.name, p, 2) for p in compute_node.phases(view, plat)]
    after = [replace(p, stage=3) for p in compute_node.controller_phases(profile, plat)]
    return Plan(first + hosts01 + middle + hosts2 + after + last, platform=plat.id, rules=rules)


def on_host(name: str, phase: Phase, stage: int) -> Phase:
    """``phase`` as host ``name`` runs it: its id and its steps' ids prefixed with the name."""
    return Phase(f"{name}:{phase.id}", f"{name}: {phase.title}",
                 [replace(s, id=f"{name}:{s.id}") for s in phase.steps], host=name, stage=stage)


def host_of(step_id: str) -> str:
    """The host a step id runs on ("" the controller)."""
    return step_id.split(":", 1)[0] if ":" in step_id else ""


def _refused(problem: str) -> Phase:
    def refuse(ctx) -> None:
        raise StepError("This profile's hosts cannot be installed together by this version.",
                        problem, "install the controller alone (one [[hosts]] entry) for now")

    return Phase("preflight", "Preflight checks", [
        Step("preflight.hosts", "Can these hosts be installed together?", run=refuse,
             detail=problem)])
