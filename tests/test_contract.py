"""Every service x every platform builds its steps and describes them (the plan text), from
its own module; and the plan of each service with what it requires builds on every platform.

tests/test_golden_plan.py pins the full plan's text per platform; this checks the contract
each service module keeps alone, so a new service module is covered by adding it to REGISTRY."""

from __future__ import annotations

import pytest

from tui.tasks import deploy
from tui.tasks.platforms import PLATFORMS
from tui.tasks.profile import Profile
from tui.tasks.services import REGISTRY, by_id

CASES = [(s.id, p) for s in REGISTRY for p in PLATFORMS]


def _profile(services: list[str]) -> Profile:
    p = Profile(name="contract")
    p.host.address = "192.0.2.10"
    p.openstack.services = services
    p.image.url = "https://example.org/cirros.img"
    return p


def _with_requirements(sid: str) -> list[str]:
    want = {sid, *by_id(sid).requires}
    return [s.id for s in REGISTRY if s.id in want]


@pytest.mark.parametrize("sid,pid", CASES, ids=[f"{s}-{p}" for s, p in CASES])
def test_service_builds_and_describes_its_steps(sid, pid):
    svc, plat = by_id(sid), PLATFORMS[pid]
    phases = svc.phases(_profile(_with_requirements(sid)), plat)
    steps = [s for ph in phases for s in ph.steps]
    assert steps, f"{sid} has no steps on {pid}"
    for step in steps:
        assert step.id.split(".")[0] in {ph.id for ph in phases}, step.id
        assert step.title and step.detail, f"{step.id} says nothing about what it does"
        assert callable(step.run) and (step.check is None or callable(step.check))
    assert svc.packages(plat), f"{sid} names no packages for {pid}"
    for declared in (svc.configs(plat), svc.units(plat), svc.logs(plat)):
        assert all(isinstance(x, str) and x for x in declared)
    for port in svc.ports:
        assert 0 < port.port < 65536 and port.label


@pytest.mark.parametrize("sid,pid", CASES, ids=[f"{s}-{p}" for s, p in CASES])
def test_plan_of_a_service_with_its_requirements_builds(sid, pid):
    plan = deploy.build_plan(_profile(_with_requirements(sid)), pid)
    ids = [s.id for s in plan.steps()]
    assert len(ids) == len(set(ids)), "step ids are unique"
    assert ids[0] == "preflight.checks"
    assert any(i.startswith(f"{sid}.") or plan.phase_of(i).id == sid for i in ids)
    assert plan.platform == pid
