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


def test_a_failed_host_stops_the_run_after_the_others_finish_their_stage(tmp_path):
    log: list[str] = []

    def boom(c):
        raise StepError("no repository", "the mirror is unreachable", "check the proxy")

    def slow(sid):
        def run(c):
            time.sleep(0.3)
            log.append(sid)
        return Step(sid, sid, run=run)

    phases = [Phase("p0", "P0", [slow("a"), slow("b")]),
              Phase("c1:p0", "c1", [Step("c1:a", "c1 a", run=boom), slow("c1:b")], host="c1"),
              Phase("p1", "P1", [slow("x")], stage=1)]
    eng, events, state = fleet(tmp_path, phases)   # decide: abort
    result = eng.run()
    assert result.aborted and not result.ok
    assert log == ["a", "b"]                  # the controller finished its stage; x never ran
    assert state.status("c1:a") == Status.FAILED and state.status("c1:b") == Status.PENDING
    assert state.status("x") == Status.PENDING
    err = next(ev.error for ev in events if isinstance(ev, e.StepFinished) and ev.error)
    assert err.what == "no repository"


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
