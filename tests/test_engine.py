"""The step engine with fake steps: events, decisions, retries, reconnects, state, resume.

No SSH here: steps are plain Python callables and the transport is a stand-in
that only counts reconnects.  The resume tests run a real child process and
kill it with SIGKILL.
"""

from __future__ import annotations

import json
import os
import random
import signal
import stat
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from tui.tasks import engine as e
from tui.tasks.engine import (
    Context,
    Decision,
    Engine,
    ErrorInfo,
    Phase,
    Plan,
    RunState,
    Status,
    Step,
    StepError,
    Transcript,
)
from tui.tasks.redact import Redactor
from tui.tasks.transport import ConnectionLost, TransportError

ROOT = Path(__file__).resolve().parent.parent


class FakeTransport:
    def __init__(self, fail_reconnects: int = 0):
        self.reconnects = 0
        self.fail_reconnects = fail_reconnects

    def reconnect(self, deadline: float = 60.0) -> None:
        self.reconnects += 1
        if self.reconnects <= self.fail_reconnects:
            raise ConnectionLost("could not reconnect", "host is down")

    def run(self, *a, **kw):  # pragma: no cover - steps here never use it
        raise AssertionError("fake steps do not run commands")


class Recorder:
    def __init__(self):
        self.events: list = []

    def __call__(self, ev):
        self.events.append(ev)

    def finished(self):
        return [(ev.step_id, ev.status) for ev in self.events if isinstance(ev, e.StepFinished)]

    def started(self):
        return [(ev.step_id, ev.attempt) for ev in self.events if isinstance(ev, e.StepStarted)]

    def notices(self):
        return [ev.text for ev in self.events if isinstance(ev, e.Notice)]


def make_engine(tmp_path, phases, *, decide=None, redact=None, transport=None, **kw):
    redact = redact or Redactor()
    state = RunState(tmp_path / "state.json", redact)
    ctx = Context(transport or FakeTransport(), None, None, redact, state)
    rec = Recorder()
    eng = Engine(Plan(phases), ctx, listeners=[rec], decide=decide, **kw)
    return eng, rec, state


def ok_step(sid, log, check=None, **kw):
    return Step(sid, f"title {sid}", run=lambda c: log.append(sid), check=check, **kw)


# --------------------------------------------------------------------------- events and statuses


def test_events_order_and_statuses(tmp_path):
    ran: list[str] = []

    def boom(c):
        ran.append("c")
        raise StepError("c broke", "because", "fix it", tail=["last line"])

    phases = [
        Phase("p1", "Phase 1", [
            ok_step("a", ran),
            ok_step("b", ran, check=lambda c: True),   # already done: run() must not be called
        ]),
        Phase("p2", "Phase 2", [
            Step("c", "title c", run=boom),
            ok_step("d", ran),
        ]),
    ]
    eng, rec, state = make_engine(tmp_path, phases, decide=lambda s, err: Decision.SKIP)
    result = eng.run()

    assert ran == ["a", "c", "d"]
    kinds = [type(ev).__name__ for ev in rec.events]
    assert kinds == [
        "RunStarted",
        "StepStarted", "StepFinished",     # a
        "StepStarted", "StepFinished",     # b
        "StepStarted", "StepFinished", "StepFinished",  # c: failed, then skipped
        "StepStarted", "StepFinished",     # d
        "RunFinished",
    ]
    assert rec.finished() == [
        ("a", Status.DONE), ("b", Status.ALREADY_DONE), ("c", Status.FAILED),
        ("c", Status.SKIPPED), ("d", Status.DONE),
    ]
    started = [ev for ev in rec.events if isinstance(ev, e.StepStarted)]
    assert [(s.index, s.total) for s in started] == [(1, 4), (2, 4), (3, 4), (4, 4)]
    failed = [ev for ev in rec.events if isinstance(ev, e.StepFinished) and ev.status == Status.FAILED]
    assert failed[0].error.what == "c broke" and failed[0].error.tail == ["last line"]
    assert all(ev.duration >= 0 for ev in rec.events if isinstance(ev, e.StepFinished))
    # A skipped step means the run is not ok, but it was not aborted either.
    assert not result.ok and not result.aborted
    assert result.counts["done"] == 2 and result.counts["already done"] == 1
    assert result.counts["skipped"] == 1 and result.counts["failed"] == 0
    assert state.status("c") == Status.SKIPPED and state.status("b") == Status.ALREADY_DONE


def test_all_ok_run_is_finished_and_ok(tmp_path):
    ran: list[str] = []
    eng, rec, state = make_engine(tmp_path, [Phase("p", "P", [ok_step("a", ran), ok_step("b", ran)])])
    result = eng.run()
    assert result.ok and not result.aborted and ran == ["a", "b"]
    data = json.loads((tmp_path / "state.json").read_text())
    assert data["finished"] is True
    assert {k: v["status"] for k, v in data["steps"].items()} == {"a": "done", "b": "done"}


def test_verify_failure_fails_the_step(tmp_path):
    ran: list[str] = []

    def bad_verify(c):
        raise StepError("verification failed", "the service does not answer")

    steps = [Step("a", "A", run=lambda c: ran.append("a"), verify=bad_verify), ok_step("b", ran)]
    eng, rec, state = make_engine(tmp_path, [Phase("p", "P", steps)])
    result = eng.run()
    assert ran == ["a"]
    assert rec.finished() == [("a", Status.FAILED)]
    assert result.aborted and not result.ok


def test_unexpected_exception_is_explained_not_raised(tmp_path):
    def crash(c):
        {}["missing"]

    eng, rec, state = make_engine(tmp_path, [Phase("p", "P", [Step("a", "A", run=crash)])])
    result = eng.run()
    assert result.aborted
    err = [ev.error for ev in rec.events if isinstance(ev, e.StepFinished)][0]
    assert "KeyError" in err.what and "test_engine.py" in err.why


# --------------------------------------------------------------------------- decisions


def test_decide_gets_error_info_and_retry_reruns(tmp_path):
    calls = {"n": 0}
    asked: list = []

    def flaky(c):
        calls["n"] += 1
        if calls["n"] < 3:
            raise StepError(f"attempt {calls['n']} failed", "why", "hint", tail=["out"])

    def decide(step, err):
        asked.append((step.id, err))
        return Decision.RETRY

    ran: list[str] = []
    eng, rec, state = make_engine(tmp_path, [Phase("p", "P", [Step("a", "A", run=flaky), ok_step("b", ran)])],
                                  decide=decide)
    result = eng.run()
    assert calls["n"] == 3
    assert [sid for sid, _ in asked] == ["a", "a"]
    assert all(isinstance(err, ErrorInfo) for _, err in asked)
    assert [err.what for _, err in asked] == ["attempt 1 failed", "attempt 2 failed"]
    assert asked[0][1].why == "why" and asked[0][1].hint == "hint" and asked[0][1].tail == ["out"]
    assert rec.started() == [("a", 1), ("a", 2), ("a", 3), ("b", 1)]
    assert rec.finished() == [("a", Status.FAILED), ("a", Status.FAILED), ("a", Status.DONE),
                              ("b", Status.DONE)]
    assert result.ok and ran == ["b"]


def test_abort_stops_and_later_steps_never_run(tmp_path):
    ran: list[str] = []
    asked: list[str] = []

    def fail(c):
        raise StepError("nope")

    phases = [Phase("p1", "P1", [ok_step("a", ran), Step("b", "B", run=fail)]),
              Phase("p2", "P2", [ok_step("c", ran, check=lambda c: ran.append("c-check") or False)])]
    eng, rec, state = make_engine(tmp_path, phases,
                                  decide=lambda s, err: asked.append(s.id) or Decision.ABORT)
    result = eng.run()
    assert asked == ["b"]
    assert ran == ["a"]            # c: neither its check nor its run
    assert result.aborted and not result.ok
    assert result.counts["failed"] == 1
    assert rec.finished()[-1] == ("b", Status.FAILED)
    assert isinstance(rec.events[-1], e.RunFinished)
    assert state.status("b") == Status.FAILED and state.status("c") == Status.PENDING
    saved = json.loads((tmp_path / "state.json").read_text())
    assert saved["steps"]["b"]["error"]["what"] == "nope"
    assert saved["finished"] is False


def test_default_decision_is_abort(tmp_path):
    ran: list[str] = []
    steps = [Step("a", "A", run=lambda c: (_ for _ in ()).throw(StepError("x"))), ok_step("b", ran)]
    redact = Redactor()
    state = RunState(tmp_path / "s.json", redact)
    eng = Engine(Plan([Phase("p", "P", steps)]), Context(FakeTransport(), None, None, redact, state))
    assert eng.run().aborted and ran == []


def test_transient_errors_auto_retried_before_asking(tmp_path, monkeypatch):
    calls = {"n": 0}
    asked: list = []

    def flaky(c):
        calls["n"] += 1
        raise StepError("apt is busy", transient=True)

    # Keep the backoff short: the engine waits on the cancel event.
    waits: list[float] = []
    orig_wait = threading.Event.wait

    def fast_wait(self, timeout=None):
        waits.append(timeout)
        return orig_wait(self, 0.001)

    monkeypatch.setattr(threading.Event, "wait", fast_wait)
    eng, rec, state = make_engine(tmp_path, [Phase("p", "P", [Step("a", "A", run=flaky, retries=2)])],
                                  decide=lambda s, err: asked.append(err) or Decision.ABORT)
    result = eng.run()
    assert calls["n"] == 3          # 1 + 2 automatic retries, then the decision
    assert len(asked) == 1 and asked[0].what == "apt is busy"
    assert waits == [2, 4]          # exponential backoff
    assert len([n for n in rec.notices() if "retrying" in n]) == 2
    assert result.aborted


def test_transient_by_explain_rule_is_retried(tmp_path, monkeypatch):
    """A plain failure whose output matches a known transient pattern is retried too."""
    calls = {"n": 0}
    monkeypatch.setattr(threading.Event, "wait", lambda self, timeout=None: False)

    def locked(c):
        calls["n"] += 1
        if calls["n"] == 1:
            raise StepError("apt-get install failed",
                            tail=["E: Could not get lock /var/lib/dpkg/lock-frontend"])

    eng, rec, state = make_engine(tmp_path, [Phase("p", "P", [Step("a", "A", run=locked, retries=1)])])
    assert eng.run().ok
    assert calls["n"] == 2


def test_a_connection_an_api_reset_is_retried_once_by_itself(tmp_path, monkeypatch):
    """keystoneauth's error for a reset mid-request (CI: nova-api) in a step without retries
    of its own: run again once (the step looks before it acts), then the user decides."""
    from keystoneauth1.exceptions import ConnectFailure

    monkeypatch.setattr(threading.Event, "wait", lambda self, timeout=None: False)
    reset = ("Unable to establish connection to http://127.0.0.1:41587/v2.1/servers/abc: "
             "('Connection aborted.', ConnectionResetError(104, 'Connection reset by peer'))")
    for fails, want_calls, ok in ((1, 2, True), (5, 2, False)):
        calls = {"n": 0}
        asked: list = []

        def api(c, fails=fails, calls=calls):
            calls["n"] += 1
            if calls["n"] <= fails:
                raise ConnectFailure(reset)

        (tmp_path / str(fails)).mkdir()
        eng, rec, state = make_engine(
            tmp_path / str(fails), [Phase("p", "P", [Step("a", "A", run=api)])],
            decide=lambda s, err, asked=asked: asked.append(err) or Decision.ABORT)
        assert eng.run().ok is ok
        assert calls["n"] == want_calls
        assert [n for n in rec.notices() if "retrying" in n and "(1/1)" in n]
        if not ok:
            assert len(asked) == 1 and asked[0].kind == "api-dropped"
            assert asked[0].why.startswith("Nova's API closed the connection"), asked[0].why


def test_non_transient_error_is_not_auto_retried(tmp_path):
    calls = {"n": 0}

    def fail(c):
        calls["n"] += 1
        raise StepError("config is wrong")

    eng, rec, state = make_engine(tmp_path, [Phase("p", "P", [Step("a", "A", run=fail, retries=5)])])
    eng.run()
    assert calls["n"] == 1


def test_connection_lost_reconnects_and_retries(tmp_path):
    calls = {"n": 0}
    ft = FakeTransport()

    def dropped(c):
        calls["n"] += 1
        if calls["n"] == 1:
            raise ConnectionLost("The SSH connection dropped", "connection reset")

    asked: list = []
    eng, rec, state = make_engine(tmp_path, [Phase("p", "P", [Step("a", "A", run=dropped)])],
                                  transport=ft, decide=lambda s, err: asked.append(err) or Decision.ABORT)
    result = eng.run()
    assert result.ok
    assert ft.reconnects == 1 and calls["n"] == 2 and asked == []
    assert rec.started() == [("a", 1), ("a", 2)]
    assert any("reconnecting" in n for n in rec.notices())


def test_connection_lost_and_reconnect_fails_asks(tmp_path):
    ft = FakeTransport(fail_reconnects=100)

    def dropped(c):
        raise ConnectionLost("The SSH connection dropped")

    asked: list = []
    eng, rec, state = make_engine(tmp_path, [Phase("p", "P", [Step("a", "A", run=dropped)])],
                                  transport=ft, decide=lambda s, err: asked.append(err) or Decision.ABORT)
    result = eng.run()
    assert result.aborted
    assert ft.reconnects == 1
    assert len(asked) == 1 and asked[0].kind == "ConnectionLost"
    assert "could not reconnect" in asked[0].what


def test_connection_lost_forever_gives_up_after_three_reconnects(tmp_path):
    ft = FakeTransport()
    calls = {"n": 0}

    def dropped(c):
        calls["n"] += 1
        raise ConnectionLost("dropped again")

    eng, rec, state = make_engine(tmp_path, [Phase("p", "P", [Step("a", "A", run=dropped)])],
                                  transport=ft)
    assert eng.run().aborted
    assert ft.reconnects == 3 and calls["n"] == 4


# --------------------------------------------------------------------------- selection


def _selection_phases(ran):
    return [
        Phase("p1", "P1", [ok_step("p1.a", ran), ok_step("p1.b", ran)]),
        Phase("p2", "P2", [ok_step("p2.a", ran), ok_step("p2.b", ran)]),
        Phase("p3", "P3", [ok_step("p3.a", ran)]),
    ]


def test_from_step(tmp_path):
    ran: list[str] = []
    eng, rec, state = make_engine(tmp_path, _selection_phases(ran), from_step="p1.b")
    result = eng.run()
    assert ran == ["p1.b", "p2.a", "p2.b", "p3.a"]
    assert rec.events[0].total == 4
    # Steps before --from were not run, so the whole plan is not marked finished.
    assert json.loads((tmp_path / "state.json").read_text())["finished"] is False
    assert result.ok


def test_only_phase(tmp_path):
    ran: list[str] = []
    eng, rec, state = make_engine(tmp_path, _selection_phases(ran), only_phase="p2")
    eng.run()
    assert ran == ["p2.a", "p2.b"]


def test_from_and_only(tmp_path):
    ran: list[str] = []
    eng, rec, state = make_engine(tmp_path, _selection_phases(ran), from_step="p2.b", only_phase="p2")
    eng.run()
    assert ran == ["p2.b"]


def test_unknown_from_or_only_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown step id 'nope'"):
        make_engine(tmp_path, _selection_phases([]), from_step="nope")
    with pytest.raises(ValueError, match="unknown phase 'zz'"):
        make_engine(tmp_path, _selection_phases([]), only_phase="zz")


# --------------------------------------------------------------------------- state file


SECRET = "s3cr'et\"$(pwd) ü#x"


def test_state_written_after_every_step(tmp_path):
    path = tmp_path / "state.json"
    seen: list[dict] = []
    redact = Redactor([SECRET])

    def snapshot(ev):
        if isinstance(ev, e.StepFinished):
            st = path.stat()
            assert stat.S_IMODE(st.st_mode) == 0o600
            raw = path.read_text()
            assert SECRET not in raw
            seen.append(json.loads(raw))

    def leaky(c):
        c.output(f"password is {SECRET}")
        raise StepError(f"failed with {SECRET}", f"why {SECRET}", tail=[f"tail {SECRET}"])

    steps = [Step("a", "A", run=lambda c: c.facts.__setitem__("note", f"fact {SECRET}")),
             Step("b", "B", run=lambda c: None, check=lambda c: True),
             Step("c", "C", run=leaky)]
    state = RunState(path, redact)
    ctx = Context(FakeTransport(), None, None, redact, state)
    eng = Engine(Plan([Phase("p", "P", steps)]), ctx, listeners=[snapshot],
                 decide=lambda s, err: Decision.SKIP)
    eng.run()
    assert [sorted((k, v["status"]) for k, v in snap["steps"].items()) for snap in seen] == [
        [("a", "done")],
        [("a", "done"), ("b", "already done")],
        [("a", "done"), ("b", "already done"), ("c", "failed")],
        [("a", "done"), ("b", "already done"), ("c", "skipped")],
    ]
    raw = path.read_text()
    for form in (SECRET, json.dumps(SECRET)[1:-1], json.dumps(SECRET, ensure_ascii=False)[1:-1]):
        assert form not in raw
    data = json.loads(raw)
    assert data["facts"]["note"] == "fact ********"
    assert data["steps"]["c"]["error"]["what"] == "failed with ********"
    assert data["steps"]["c"]["error"]["tail"] == ["tail ********"]
    # Atomic writes leave no temp files behind.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]


def test_state_saves_from_several_threads_never_torn(tmp_path):
    """Engine thread and UI thread may both save the same run state: readers see whole files."""
    path = tmp_path / "state.json"
    states = [RunState(path) for _ in range(3)]
    for i, st in enumerate(states):
        st.facts["pad"] = str(i) * 30_000
    errors: list[str] = []
    torn = 0
    stop = threading.Event()

    def writer(st):
        for n in range(30):
            try:
                st.set(f"s{n}", Status.DONE, 0.1)
            except Exception as exc:  # noqa: BLE001
                errors.append(repr(exc))

    def reader():
        nonlocal torn
        while not stop.is_set():
            try:
                json.loads(path.read_bytes())
            except FileNotFoundError:
                pass
            except ValueError:
                torn += 1

    r = threading.Thread(target=reader)
    r.start()
    ws = [threading.Thread(target=writer, args=(st,)) for st in states]
    for w in ws:
        w.start()
    for w in ws:
        w.join()
    stop.set()
    r.join()
    assert errors == [] and torn == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]


def test_state_roundtrip_and_resume_point(tmp_path):
    ran: list[str] = []
    phases = _selection_phases(ran)
    phases[1].steps[0] = Step("p2.a", "x", run=lambda c: (_ for _ in ()).throw(StepError("broken")))
    eng, rec, state = make_engine(tmp_path, phases)
    eng.run()
    loaded = RunState.load(tmp_path / "state.json")
    assert loaded.status("p1.a") == Status.DONE and loaded.status("p2.a") == Status.FAILED
    assert loaded.unfinished()
    assert loaded.first_not_done(Plan(phases)) == "p2.a"
    assert loaded.steps["p2.a"]["error"]["what"] == "broken"


def test_corrupted_state_refused_and_left_untouched(tmp_path):
    path = tmp_path / "runs.json"
    for content in (b'{"version": 1, "steps": {"a": {"status": "do', b"\x00\xff\xfe garbage",
                    b"[1, 2, 3]"):
        path.write_bytes(content)
        before = path.stat()
        with pytest.raises(e.StateError) as ei:
            RunState.load(path)
        msg = str(ei.value)
        assert str(path) in msg and "corrupted" in msg and "untouched" in msg
        assert path.read_bytes() == content
        assert path.stat().st_mtime_ns == before.st_mtime_ns


@pytest.mark.parametrize("data", [
    {"version": 1, "steps": [1, 2]},
    {"version": 1, "steps": "done"},
    {"version": 1, "steps": None},
    {"version": 1, "steps": {}, "facts": "x"},
    {"version": 1, "steps": {}, "facts": [1]},
    {"steps": {}},
    {"version": "1", "steps": {}},
    {"version": 0, "steps": {}},
])
def test_malformed_state_refused_and_left_untouched(tmp_path, data):
    """Valid JSON of the wrong shape is a StateError too, never a crash."""
    path = tmp_path / "runs.json"
    content = json.dumps(data).encode()
    path.write_bytes(content)
    with pytest.raises(e.StateError) as ei:
        RunState.load(path)
    msg = str(ei.value)
    assert str(path) in msg and "untouched" in msg
    assert "newer" not in msg     # not a version from the future: just broken
    assert path.read_bytes() == content


def test_newer_state_version_refused_and_left_untouched(tmp_path):
    path = tmp_path / "runs.json"
    content = json.dumps({"version": 99, "steps": {"a": {"status": "done"}}}).encode()
    path.write_bytes(content)
    with pytest.raises(e.StateError) as ei:
        RunState.load(path)
    msg = str(ei.value)
    assert str(path) in msg and "99" in msg and "newer" in msg
    assert path.read_bytes() == content


def test_transcript_redacts(tmp_path):
    redact = Redactor([SECRET])
    log = tmp_path / "run.log"
    tr = Transcript(log, redact)
    tr(e.StepStarted("a", "A", 1, 1))
    tr(e.StepOutput("a", f"out {SECRET}"))
    tr(e.StepFinished("a", Status.FAILED, 1.0, ErrorInfo(f"what {SECRET}", tail=[f"t {SECRET}"])))
    tr.close()
    text = log.read_text()
    assert SECRET not in text
    assert "out ********" in text and "what ********" in text and "| t ********" in text
    assert stat.S_IMODE(log.stat().st_mode) == 0o600


# --------------------------------------------------------------------------- killed runs


CHILD = textwrap.dedent(r"""
    import sys, time
    from pathlib import Path
    sys.path.insert(0, {root!r})
    from tui.tasks.engine import Context, Engine, Phase, Plan, RunState, Step
    from tui.tasks.redact import Redactor

    work = Path(sys.argv[1])
    mode = sys.argv[2]

    def step(i):
        marker = work / f"s{{i}}.done"
        def run(c):
            (work / f"s{{i}}.started").write_text("x")
            if mode == "slow" and i == 3:
                time.sleep(60)
            c.facts[f"s{{i}}"] = "x" * 2000
            marker.write_text("x")
        return Step(f"s{{i}}", f"step {{i}}", run=run, check=lambda c: marker.exists())

    n = 400 if mode == "fast" else 5
    plan = Plan([Phase("p", "P", [step(i) for i in range(1, n + 1)])])
    red = Redactor()
    state = RunState.load(work / "state.json", red)
    def listen(ev):
        name = type(ev).__name__
        if name == "StepFinished":
            print(ev.step_id, ev.status.value, flush=True)
        elif name == "RunStarted":
            print("resumed" if ev.resumed else "fresh", flush=True)
    eng = Engine(plan, Context(None, None, None, red, state), listeners=[listen])
    r = eng.run()
    print("ok" if r.ok else "not ok", flush=True)
""")


def _child(tmp_path, mode):
    script = tmp_path / "child.py"
    script.write_text(CHILD.format(root=str(ROOT)))
    return [sys.executable, str(script), str(tmp_path), mode]


def _valid_or_absent(path: Path) -> None:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return
    data = json.loads(raw)   # raises on a half-written file
    assert data["version"] == 1


def test_killed_run_resumes_at_the_right_step(tmp_path):
    state_file = tmp_path / "state.json"
    proc = subprocess.Popen(_child(tmp_path, "slow"), stdout=subprocess.PIPE, text=True)
    reads = 0
    try:
        deadline = time.monotonic() + 20
        while not (tmp_path / "s3.started").exists():
            assert proc.poll() is None, "child died early"
            assert time.monotonic() < deadline, "step 3 never started"
            _valid_or_absent(state_file)
            reads += 1
        for _ in range(20):
            _valid_or_absent(state_file)
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    first = proc.stdout.read().split()
    assert first[:5] == ["fresh", "s1", "done", "s2", "done"]
    assert proc.returncode == -signal.SIGKILL

    # What the killed run left: 1-2 done, 3 running (not done), 4-5 never started.
    st = RunState.load(state_file)
    assert st.status("s1") == Status.DONE and st.status("s2") == Status.DONE
    assert st.status("s3") == Status.RUNNING
    assert st.status("s4") == Status.PENDING
    assert st.unfinished()

    for f in ("s1.started", "s2.started", "s3.started"):
        (tmp_path / f).unlink()
    # The same 5-step plan, this time without the hang in step 3.
    second = subprocess.run(_child(tmp_path, "resume"), capture_output=True, text=True, timeout=60)
    lines = second.stdout.split("\n")
    assert lines[0] == "resumed"
    assert lines[1:6] == ["s1 already done", "s2 already done", "s3 done", "s4 done", "s5 done"]
    # Steps 1-2 were only checked: their run() did not happen again.
    assert not (tmp_path / "s1.started").exists() and not (tmp_path / "s2.started").exists()
    assert (tmp_path / "s3.started").exists()
    _valid_or_absent(state_file)
    assert RunState.load(state_file).status("s3") == Status.DONE


def test_state_file_never_half_written_under_random_kills(tmp_path):
    """Kill a run that rewrites its state hundreds of times, at random moments."""
    state_file = tmp_path / "state.json"
    rng = random.Random(1234)
    kills = 0
    checks = 0
    for round_ in range(12):
        for marker in tmp_path.glob("s*.done"):
            marker.unlink()
        proc = subprocess.Popen(_child(tmp_path, "fast"), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        try:
            # Wait until the run has started (its first state write is done), then kill
            # it at a random moment while it writes its state after every step.
            first = proc.stdout.readline().strip()
            assert first in ("fresh", "resumed"), proc.stderr.read()
            t_end = time.monotonic() + rng.random() * 0.5
            while time.monotonic() < t_end and proc.poll() is None:
                _valid_or_absent(state_file)
                checks += 1
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                kills += 1
            proc.wait(10)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        _valid_or_absent(state_file)
        assert proc.returncode in (0, -signal.SIGKILL), proc.stderr.read()
    assert kills >= 10, f"only {kills} runs were killed mid-way"
    assert checks > 100
    st = RunState.load(state_file)
    assert st.steps   # the last run wrote something
