"""The engine with several hosts: stages in order, each stage's hosts at the same time (each
on its own context), a failed host stopping the run after the others finish their stage, one
question at a time, and each host's facts kept with the run.  Fake steps, no SSH."""

from __future__ import annotations

import json
import threading
import time

import pytest

from tui.tasks import engine as e
from tui.tasks.engine import Context, Decision, Engine, Phase, Plan, RunState, Status, Step, StepError
from tui.tasks.redact import Redactor


class Host:
    """A stand-in transport that only has a name."""

    def __init__(self, name: str):
        self.name = name


def fleet(tmp_path, phases, decide=None):
    redact = Redactor()
    state = RunState(tmp_path / "state.json", redact)
    ctx = Context(Host("ctl"), None, None, redact, state)
    others = {}
    for name in {p.host for p in phases} - {""}:
        c = Context(Host(name), None, None, redact, state)
        c.facts = state.host_facts(name)
        c.controller_facts = state.facts
        others[name] = c
    events: list = []
    eng = Engine(Plan(phases), ctx, contexts=others, listeners=[events.append], decide=decide)
    return eng, events, state


def test_a_stages_hosts_run_at_the_same_time_each_on_its_own_connection(tmp_path):
    meet = threading.Barrier(3, timeout=5)   # only met when all three hosts run at once
    seen: dict[str, str] = {}

    def packages(c):
        seen[c.step_id] = c.transport.name
        meet.wait()

    phases = [Phase("prepare", "Prepare", [Step("prepare.packages", "pk", run=packages)]),
              *[Phase(f"{h}:prepare", f"{h}: Prepare", [Step(f"{h}:prepare.packages", "pk",
                                                             run=packages)], host=h)
                for h in ("c1", "c2")]]
    eng, events, state = fleet(tmp_path, phases)
    result = eng.run()
    assert result.ok, [ev for ev in events if isinstance(ev, e.StepFinished)]
    assert seen == {"prepare.packages": "ctl", "c1:prepare.packages": "c1",
                    "c2:prepare.packages": "c2"}
    assert {k: v["status"] for k, v in state.steps.items()} == {
        k: "done" for k in seen}


def test_stages_run_in_order(tmp_path):
    log: list[str] = []
    lock = threading.Lock()

    def step(sid, pause=0.0):
        def run(c):
            time.sleep(pause)
            with lock:
                log.append(sid)
        return Step(sid, sid, run=run)

    phases = [Phase("p0", "P0", [step("a", 0.2), step("b")]),
              Phase("c1:p0", "c1", [step("c1:a")], host="c1"),
              Phase("p1", "P1", [step("x")], stage=1),
              Phase("c1:p2", "c1 later", [step("c1:y")], host="c1", stage=2),
              Phase("p3", "P3", [step("z")], stage=3)]
    eng, _events, _state = fleet(tmp_path, phases)
    assert eng.run().ok
    assert set(log[:3]) == {"a", "b", "c1:a"} and log.index("a") < log.index("b")
    assert log[3:] == ["x", "c1:y", "z"]
    # the numbering follows the plan, whatever thread ran the step
    started = {ev.step_id: ev.index for ev in _events if isinstance(ev, e.StepStarted)}
    assert started == {"a": 1, "b": 2, "c1:a": 3, "x": 4, "c1:y": 5, "z": 6}


def test_a_failed_host_stops_the_others_after_the_step_they_are_in(tmp_path):
    log: list[str] = []
    started = threading.Event()

    def boom(c):
        started.wait(2)         # the controller is inside "a" when c1 fails
        raise StepError("no repository", "the mirror is unreachable", "check the proxy")

    def slow(sid):
        def run(c):
            started.set()
            time.sleep(0.3)
            log.append(sid)
        return Step(sid, sid, run=run)

    phases = [Phase("p0", "P0", [slow("a"), slow("b")]),
              Phase("c1:p0", "c1", [Step("c1:a", "c1 a", run=boom), slow("c1:b")], host="c1"),
              Phase("p1", "P1", [slow("x")], stage=1)]
    eng, events, state = fleet(tmp_path, phases)   # decide: abort
    result = eng.run()
    assert result.aborted and not result.ok
    assert log == ["a"]              # the step it was in finished; nothing new started
    assert state.status("a") == Status.DONE and state.status("b") == Status.PENDING
    assert state.status("c1:a") == Status.FAILED and state.status("c1:b") == Status.PENDING
    assert state.status("x") == Status.PENDING
    err = next(ev.error for ev in events if isinstance(ev, e.StepFinished) and ev.error)
    assert err.what == "no repository"


def test_a_phase_that_does_not_gate_goes_on_while_the_next_stage_runs(tmp_path):
    """A compute host's packages (gates=False) overlap the controller's services; its own
    next phase, and every phase of a later stage, still wait for it."""
    log: list[str] = []
    lock = threading.Lock()
    services_started = threading.Event()

    def mark(sid, wait_for=None, then=None):
        def run(c):
            if then is not None:
                then.set()
            if wait_for is not None:
                assert wait_for.wait(5), f"{sid} ran alone"
            with lock:
                log.append(sid)
        return Step(sid, sid, run=run)

    phases = [Phase("prepare", "P", [mark("prepare.packages")]),
              Phase("c1:prepare", "c1", [mark("c1:prepare.packages", wait_for=services_started)],
                    host="c1", stage=1, gates=False),
              Phase("nova", "Nova", [mark("nova.services", then=services_started)], stage=1),
              Phase("c1:compute", "c1", [mark("c1:compute.services")], host="c1", stage=2),
              Phase("computes", "after", [mark("computes.discover")], stage=3)]
    eng, events, _state = fleet(tmp_path, phases)
    result = eng.run()
    assert result.ok, [ev for ev in events if isinstance(ev, e.StepFinished)]
    # c1's packages finished only after the controller's stage-1 phase had started
    assert log.index("c1:prepare.packages") > log.index("prepare.packages")
    assert log[-2:] == ["c1:compute.services", "computes.discover"]


def test_a_host_whose_stages_go_back_is_refused(tmp_path):
    state = RunState(tmp_path / "s.json")
    ctx = Context(Host("ctl"), None, None, Redactor(), state)
    with pytest.raises(ValueError, match="go back a stage"):
        Engine(Plan([Phase("a", "a", [], stage=2), Phase("b", "b", [], stage=1)]), ctx)


def test_one_question_at_a_time_and_each_hosts_answer_applies_to_it(tmp_path):
    asking = threading.Lock()
    asked: list[str] = []

    def decide(step, info):
        assert asking.acquire(blocking=False), "two questions at once"
        try:
            time.sleep(0.2)
            asked.append(step.id)
            return Decision.SKIP if step.id == "c1:a" else Decision.ABORT
        finally:
            asking.release()

    def boom(c):
        raise StepError(f"{c.step_id} failed")

    phases = [Phase("p0", "P0", [Step("a", "a", run=boom)]),
              Phase("c1:p0", "c1", [Step("c1:a", "c1 a", run=boom)], host="c1")]
    eng, _events, state = fleet(tmp_path, phases, decide=decide)
    result = eng.run()
    assert sorted(asked) == ["a", "c1:a"]
    assert state.status("c1:a") == Status.SKIPPED and state.status("a") == Status.FAILED
    assert result.aborted


def test_each_hosts_facts_are_kept_with_the_run_and_read_back(tmp_path):
    def record(c):
        c.facts["mgmt_address"] = "10.198.1.12" if c.transport.name == "c1" else "10.198.1.11"
        c.facts["seen_controller"] = c.controller_facts.get("mgmt_address", "")

    phases = [Phase("p0", "P0", [Step("a", "a", run=record)]),
              Phase("c1:p1", "c1", [Step("c1:a", "c1 a", run=record)], host="c1", stage=1)]
    eng, _events, state = fleet(tmp_path, phases)
    assert eng.run().ok
    data = json.loads((tmp_path / "state.json").read_text())
    assert data["facts"]["mgmt_address"] == "10.198.1.11"
    assert data["hosts"] == {"c1": {"mgmt_address": "10.198.1.12",
                                    "seen_controller": "10.198.1.11"}}
    again = RunState.load(tmp_path / "state.json")
    assert again.host_facts("c1")["mgmt_address"] == "10.198.1.12"


def test_a_plan_naming_a_host_without_a_context_is_refused(tmp_path):
    state = RunState(tmp_path / "s.json")
    ctx = Context(Host("ctl"), None, None, Redactor(), state)
    with pytest.raises(ValueError, match="c9"):
        Engine(Plan([Phase("c9:p", "x", [], host="c9")]), ctx)


def test_cancel_all_reaches_every_host(tmp_path):
    phases = [Phase("p0", "P0", [Step("a", "a", run=lambda c: None)]),
              Phase("c1:p0", "c1", [Step("c1:a", "c1 a", run=lambda c: None)], host="c1")]
    eng, _events, _state = fleet(tmp_path, phases)
    eng.cancel_all()
    assert all(c.cancel.is_set() for c in eng.contexts.values())


def test_the_transcript_says_whose_output_each_line_is(tmp_path):
    """The hosts of a stage write at once: another host's lines carry its name."""
    from tui.tasks.events import Transcript

    def say(c):
        c.output(f"unpacking on {c.transport.name}")

    phases = [Phase("p0", "P0", [Step("a", "a", run=say)]),
              Phase("c1:p0", "c1", [Step("c1:a", "c1 a", run=say)], host="c1")]
    eng, _events, _state = fleet(tmp_path, phases)
    transcript = Transcript(tmp_path / "run.log", Redactor())
    eng.listeners.append(transcript)
    assert eng.run().ok
    transcript.close()
    lines = (tmp_path / "run.log").read_text().splitlines()
    assert any(ln.endswith("    unpacking on ctl") for ln in lines), lines
    assert any(ln.endswith("    [c1] unpacking on c1") for ln in lines), lines


def test_apply_numbers_each_step_by_the_plan_while_hosts_run_at_once(tmp_path):
    """`stack-tui apply`'s lines: a step that finishes after another host's started keeps its
    own number."""
    import io

    from tui.cli import HeadlessView

    out = io.StringIO()
    view = HeadlessView(yes=True, quiet=False, out=out)
    slow = threading.Event()

    def first(c):
        slow.wait(2)

    def second(c):
        slow.set()

    phases = [Phase("p0", "P0", [Step("a", "a", run=first)]),
              Phase("c1:p0", "c1", [Step("c1:a", "c1 a", run=second)], host="c1")]
    eng, _events, _state = fleet(tmp_path, phases)
    eng.listeners.append(view)
    assert eng.run().ok
    lines = out.getvalue().splitlines()
    assert any(ln.startswith("[ 1/2] a ") for ln in lines), lines
    assert any(ln.startswith("[ 2/2] c1:a ") for ln in lines), lines


def test_a_controller_that_does_not_compute_installs_no_nova_compute():
    from tui.tasks import deploy
    from tui.tasks.profile import SERVICES, HostConfig, Profile

    def packages(roles):
        p = Profile("lab", hosts=[
            HostConfig(name="ctl", roles=roles, address="10.0.0.1"),
            HostConfig(name="cmp", roles=["compute"], address="10.0.0.2")])
        p.openstack.services = [s for s in SERVICES if s != "horizon"]
        p.openstack.platform = "debian-12"
        plan = deploy.build_plan(p)
        return (plan.find("prepare.packages").detail, plan.find("cmp:prepare.packages").detail)

    ctl, cmp = packages(["controller"])
    assert "nova-compute" not in ctl and "nova-api" in ctl and "nova-compute" in cmp
    ctl, _ = packages(["controller", "compute"])
    assert "nova-compute" in ctl


def test_each_host_installs_its_own_packages_at_run_time_not_the_controllers():
    """What the packages step installs and checks (prepare.wanted_packages, from the host's
    own context) and what preflight probes are the host's own: a compute-only host gets no
    database, queue or API server; a controller that does not compute gets no nova-compute."""
    from types import SimpleNamespace

    from tui.tasks.platforms import PLATFORMS
    from tui.tasks.profile import SERVICES, HostConfig, Profile
    from tui.tasks.services import host_packages, prepare

    def prof(ctl_roles):
        p = Profile("lab", hosts=[
            HostConfig(name="ctl", roles=ctl_roles, address="10.0.0.1"),
            HostConfig(name="cmp", roles=["compute"], address="10.0.0.2")])
        p.openstack.services = [s for s in SERVICES if s != "horizon"]
        return p

    for plat in (PLATFORMS["debian-12"], PLATFORMS["debian-13"]):
        p = prof(["controller"])
        ctx = SimpleNamespace(profile=p.on("cmp"), facts={"platform": plat.id},
                              controller_facts={})
        cmp = prepare.wanted_packages(ctx)
        assert cmp == host_packages(p.on("cmp"), plat)
        assert "nova-compute" in cmp and "nova-compute-kvm" in cmp
        assert not {"mariadb-server", "rabbitmq-server", "keystone", "glance", "nova-api",
                    "neutron-server", "python3-openstackclient"} & set(cmp), cmp
        ctl = prepare.wanted_packages(SimpleNamespace(profile=p, facts={"platform": plat.id},
                                                      controller_facts={}))
        assert "nova-api" in ctl and "nova-compute" not in ctl
        assert "nova-compute" in host_packages(prof(["controller", "compute"]), plat)
        one = Profile("one", hosts=[HostConfig(name="one", roles=["controller", "compute"],
                                               address="10.0.0.1")])
        one.openstack.services = list(p.openstack.services)
        assert host_packages(one, plat)[:1] == ["python3-openstackclient"]


def test_compute_hosts_install_their_packages_after_the_controllers_during_its_services():
    """The controller's packages are on the critical path: the other hosts' packages wait for
    them (stage 1, not 0) and then overlap the controller's services without gating them."""
    from tui.tasks import deploy
    from tui.tasks.profile import SERVICES, HostConfig, Profile

    p = Profile("lab", hosts=[
        HostConfig(name="ctl", roles=["controller", "compute"], address="10.0.0.1"),
        HostConfig(name="c1", roles=["compute"], address="10.0.0.2"),
        HostConfig(name="c2", roles=["compute"], address="10.0.0.3")])
    p.openstack.services = [s for s in SERVICES if s != "horizon"]
    for release in ("debian-12", "debian-13"):
        p.openstack.platform = release
        ph = {x.id: x for x in deploy.build_plan(p).phases}
        assert (ph["prepare"].stage, ph["prepare"].gates) == (0, True)
        assert ph["keystone"].stage == 1 and ph["keystone"].gates
        for h in ("c1", "c2"):
            assert (ph[f"{h}:preflight"].stage, ph[f"{h}:preflight"].gates) == (0, True)
            assert (ph[f"{h}:prepare"].stage, ph[f"{h}:prepare"].gates) == (1, False)
            assert ph[f"{h}:compute"].stage == 2
