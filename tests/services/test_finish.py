"""finish.verify: its check only reads (the recorded verification and this run's step
statuses); the run verifies and records.  A run where every earlier step was already done
and the last verification passed is already done; a run that changed something verifies."""

from __future__ import annotations

from tests.fakehost import FakeHost, run_plan
from tui.tasks.engine import Phase, Plan, Status, Step
from tui.tasks.platforms import PLATFORMS
from tui.tasks.profile import Profile
from tui.tasks.services import finish

OK = [("token as admin", True, ""), ("catalog has identity", True, "identity")]


def _verify_step() -> Step:
    return finish.phases(Profile(name="t"), PLATFORMS["debian-13"])[0].steps[-1]


def _run(ctx, changed: bool, calls: list, monkeypatch, results=OK) -> dict[str, Status]:
    def fake_verify(c):
        calls.append(1)
        return list(results)

    monkeypatch.setattr(finish, "verify_cloud", fake_verify)
    host_step = Step("other.step", "Other", run=lambda c: None, check=lambda c: not changed)
    plan = Plan([Phase("x", "X", [host_step]), Phase("finish", "Finish", [_verify_step()])],
                platform="debian-13")
    return run_plan(plan, ctx)


def test_check_never_verifies_and_never_writes(tmp_path, monkeypatch):
    ctx = FakeHost().ctx(Profile(name="t"), state_path=tmp_path / "s.json")
    monkeypatch.setattr(finish, "verify_cloud", lambda c: (_ for _ in ()).throw(
        AssertionError("the check ran the verification")))
    before = dict(ctx.facts)
    assert _verify_step().check(ctx) is False
    ctx.facts["verification"] = [list(r) for r in OK]
    ctx.state.set("other.step", Status.ALREADY_DONE)
    _verify_step().check(ctx)
    assert set(ctx.facts) == set(before) | {"verification"}


def test_rerun_with_nothing_changed_is_already_done(tmp_path, monkeypatch):
    ctx = FakeHost().ctx(Profile(name="t"), state_path=tmp_path / "s.json")
    calls: list = []
    assert _run(ctx, True, calls, monkeypatch)["finish.verify"] == Status.DONE
    assert len(calls) == 1 and ctx.facts["verification"] == [list(r) for r in OK]
    seen = _run(ctx, False, calls, monkeypatch)
    assert seen == {"other.step": Status.ALREADY_DONE, "finish.verify": Status.ALREADY_DONE}
    assert len(calls) == 1


def test_a_run_that_changed_something_verifies_again(tmp_path, monkeypatch):
    ctx = FakeHost().ctx(Profile(name="t"), state_path=tmp_path / "s.json")
    calls: list = []
    _run(ctx, True, calls, monkeypatch)
    assert _run(ctx, True, calls, monkeypatch)["finish.verify"] == Status.DONE
    assert len(calls) == 2


def test_a_failed_verification_is_recorded_and_run_again(tmp_path, monkeypatch):
    ctx = FakeHost().ctx(Profile(name="t"), state_path=tmp_path / "s.json")
    calls: list = []
    bad = [("token as admin", False, "401")]
    assert _run(ctx, True, calls, monkeypatch, bad)["finish.verify"] == Status.FAILED
    assert ctx.facts["verification"] == [["token as admin", False, "401"]]
    assert _run(ctx, False, calls, monkeypatch)["finish.verify"] == Status.DONE
    assert len(calls) == 2
