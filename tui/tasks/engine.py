"""The step engine: plans of phases and idempotent steps, events, decisions, state.

UI-free: the TUI and the headless CLI are both just listeners (they receive
events) and decision providers (they answer retry / skip / abort).

Every step looks before it acts: ``check`` says whether the host already is
as the step wants it, in which case the step is reported ``already done``.
After every step the run state is written atomically, so a killed run resumes
at the first step that is not done.
"""

from __future__ import annotations

import threading
import time
import traceback
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Callable

from .errors import Explained, Failure
from .events import (  # noqa: F401 - the engine's events and transcript, re-exported
    Notice, RunFinished, RunStarted, StepFinished, StepOutput, StepProgress, StepStarted,
    Transcript, new_log_path,
)
from .redact import Redactor, strip_controls
from .lanes import Lanes
from .state import STATE_VERSION, RunState, StateError, Status, state_path  # noqa: F401

# What ctx.sh waits for a command that was given no limit for what it does: long enough
# for any short command (a package query, a file test, a systemctl call), far shorter
# than the 900 s a hung command held a run for.  Long work (apt, db syncs, keystone-manage)
# says its own limit.
DEFAULT_LIMIT = 180


class Decision(str, Enum):
    RETRY = "retry"
    SKIP = "skip"
    ABORT = "abort"


class StepError(Failure):
    """A step failure explained for people; ``transient``: the engine retries it itself."""

    def __init__(self, what: str, why: str = "", hint: str = "", tail: list[str] | None = None,
                 transient: bool = False):
        self.transient = transient
        super().__init__(what, why, hint, tail)


@dataclass
class ErrorInfo(Explained):
    """A failure as the run state keeps it and the screens show it (any Failure becomes one)."""
    what: str
    why: str = ""
    hint: str = ""
    tail: list[str] = field(default_factory=list)
    kind: str = "error"

    def to_dict(self) -> dict:
        return {"what": self.what, "why": self.why, "hint": self.hint, "tail": self.tail,
                "kind": self.kind}

    @classmethod
    def from_dict(cls, d: dict) -> "ErrorInfo":
        return cls(d.get("what", ""), d.get("why", ""), d.get("hint", ""), list(d.get("tail", [])),
                   d.get("kind", "error"))


@dataclass
class Step:
    id: str
    title: str
    run: Callable[["Context"], Any]
    check: Callable[["Context"], bool] | None = None
    verify: Callable[["Context"], Any] | None = None
    detail: str = ""            # what it will do / run, for plan and review (no secrets)
    files: list[str] = field(default_factory=list)  # files it changes on the host
    retries: int = 0            # automatic retries for transient errors
    phase: str = ""


@dataclass
class Phase:
    id: str
    title: str
    steps: list[Step]
    # Several hosts: the host its steps run on ("" the controller, the one host of a single-
    # host plan) and its stage.  Each host runs its phases in plan order, the hosts at the
    # same time; a phase starts once every other host's gating phases of lower stages are
    # done (tui/tasks/lanes.py).
    host: str = ""
    stage: int = 0
    # False: no other host waits for it (a compute host's packages go on while the
    # controller installs its services); its own host's later phases still do
    gates: bool = True


@dataclass
class Plan:
    phases: list[Phase]
    platform: str = ""
    rules: list = field(default_factory=list)   # explain's rules (deploy: every service's)

    def steps(self) -> list[Step]:
        return [s for p in self.phases for s in p.steps]

    def find(self, step_id: str) -> Step | None:
        return next((s for s in self.steps() if s.id == step_id), None)

    def phase_of(self, step_id: str) -> Phase | None:
        return next((p for p in self.phases if any(s.id == step_id for s in p.steps)), None)

    def hosts(self) -> list[str]:
        """The hosts the plan's steps run on, in plan order ("" the controller)."""
        return list(dict.fromkeys(p.host for p in self.phases))


# -- context -----------------------------------------------------------------
class Context:
    """What a step gets: the transport, the profile, secrets, output helpers."""

    def __init__(self, transport, profile, secrets, redact: Redactor, state: RunState,
                 engine: "Engine | None" = None):
        self.transport = transport
        self.profile = profile
        self.secrets = secrets
        self.redact = redact
        self.state = state
        self.facts = state.facts
        # the controller's facts (its mgmt_address): a host's own facts unless the runner
        # gives another host's context the controller's (several hosts)
        self.controller_facts: dict[str, Any] = self.facts
        self.engine = engine
        self.cancel = threading.Event()
        self.step_id: str | None = None
        self.cache: dict[str, Any] = {}   # per-run objects (db connections, sessions)
        self.options: dict[str, Any] = {}  # run options, e.g. {"fix": True} (preflight fixes)

    def output(self, line: str) -> None:
        if self.engine is not None:
            self.engine.emit(StepOutput(self.step_id or "", strip_controls(self.redact(line))))

    def progress(self, done: int, total: int, text: str = "") -> None:
        if self.engine is not None:
            self.engine.emit(StepProgress(self.step_id or "", done, total,
                                          strip_controls(self.redact(text))))

    def sh(self, command: str, *, secrets: dict[str, str] | None = None, stdin=None,
           timeout: float | None = None, check: bool = True, quiet: bool = False):
        """Run ``command`` on the host.  Give ``timeout`` for what the command does
        (services/common.py: LOOK, SERVICE, SQL; long work its own); without one it
        gets ``DEFAULT_LIMIT``, which tests treat as "no limit was chosen"."""
        if timeout is None:
            timeout = DEFAULT_LIMIT
        return self.transport.run(
            command, secrets=secrets, stdin=stdin, timeout=timeout, check=check,
            on_line=None if quiet else self.output, cancel=self.cancel,
        )


def _explain(exc: BaseException, redact: Redactor, rules: list | None = None) -> ErrorInfo:
    """The failure in plain words; ``rules``: the plan's known failures (None: generic)."""
    from .transport import TransportError
    from . import explain

    if isinstance(exc, StepError):
        info = ErrorInfo(exc.what, exc.why, exc.hint, exc.tail)
    elif isinstance(exc, TransportError):
        info = ErrorInfo(exc.what, exc.why, exc.hint, exc.tail, kind=type(exc).__name__)
    else:
        tb = traceback.extract_tb(exc.__traceback__)
        where = f"{tb[-1].filename.rsplit('/', 1)[-1]}:{tb[-1].lineno}" if tb else "?"
        info = ErrorInfo(
            f"Unexpected error: {type(exc).__name__}: {exc}",
            f"raised at {where}; this is probably a bug in stack-tui",
            "retry once; if it persists, run `stack-tui bundle` and report it",
        )
    info = explain.improve(info, rules)
    info.what = strip_controls(redact(info.what))
    info.why = strip_controls(redact(info.why))
    info.hint = strip_controls(redact(info.hint))
    info.tail = [strip_controls(redact(t)) for t in info.tail][-30:]
    return info


class Engine:
    def __init__(
        self,
        plan: Plan,
        ctx: Context,
        *,
        listeners: list[Callable[[Any], None]] | None = None,
        decide: Callable[[Step, ErrorInfo], Decision] | None = None,
        from_step: str | None = None,
        only_phase: str | None = None,
        reconnect_deadline: float = 60.0,
        contexts: dict[str, Context] | None = None,
    ):
        self.plan = plan
        self.ctx = ctx
        ctx.engine = self
        # each host's context by the name its phases carry ("" is ``ctx``, the controller's)
        self.contexts: dict[str, Context] = {"": ctx, **(contexts or {})}
        for other in self.contexts.values():
            other.engine = self
        # the host each step runs on: its phase's (the plan's steps are never changed)
        self._host_of = {id(st): p.host for p in plan.phases for st in p.steps}
        missing = [h for h in plan.hosts() if h not in self.contexts]
        if missing:
            raise ValueError(f"no context for host(s) {', '.join(missing)}")
        for h in plan.hosts():   # a host's stages never go back: no lane waits on itself
            stages = [p.stage for p in plan.phases if p.host == h]
            if stages != sorted(stages):
                raise ValueError(f"host {h or 'controller'}'s phases go back a stage")
        self._decide_lock = threading.Lock()   # one question to the user at a time
        self.state = ctx.state
        self.listeners = list(listeners or [])
        self.decide = decide or (lambda step, err: Decision.ABORT)
        self.from_step = from_step
        self.only_phase = only_phase
        self.reconnect_deadline = reconnect_deadline
        self._lock = threading.RLock()   # emit: listeners may emit
        if from_step and plan.find(from_step) is None:
            raise ValueError(f"unknown step id {from_step!r}")
        if only_phase and not any(p.id == only_phase for p in plan.phases):
            raise ValueError(f"unknown phase {only_phase!r}")

    def emit(self, event) -> None:
        with self._lock:   # hosts of a stage emit from their own threads
            for listener in list(self.listeners):
                try:
                    listener(event)
                except Exception:
                    pass

    def context_of(self, step: Step) -> Context:
        return self.contexts[self._host_of.get(id(step), "")]

    def cancel_all(self) -> None:
        """Cancel what every host is running (a quit)."""
        for c in self.contexts.values():
            c.cancel.set()

    def selected(self) -> list[Step]:
        steps = []
        started = self.from_step is None
        for phase in self.plan.phases:
            for step in phase.steps:
                if step.id == self.from_step:
                    started = True
                if not started:
                    continue
                if self.only_phase and phase.id != self.only_phase:
                    continue
                steps.append(step)
        return steps

    def run(self) -> RunFinished:
        steps = self.selected()
        t0 = time.monotonic()
        resumed = self.state.unfinished()
        if self.state.started is None or self.state.finished:
            self.state.started = time.time()
        self.state.finished = False
        self.state.save()
        self.emit(RunStarted(len(steps), resumed))
        counts = {s.value: 0 for s in Status}
        numbered = {id(s): i for i, s in enumerate(steps, 1)}
        outcomes = Lanes(self, steps).run(numbered, len(steps))
        for status in outcomes:
            counts[status.value] += 1
        aborted = Status.FAILED in outcomes
        ok = not aborted and counts[Status.FAILED.value] == 0 and counts[Status.SKIPPED.value] == 0
        if not aborted and len(steps) == len(self.plan.steps()):
            self.state.finished = ok
        self.state.save()
        result = RunFinished(ok, aborted, time.monotonic() - t0, counts)
        self.emit(result)
        return result

    def _run_step(self, step: Step, index: int, total: int) -> Status:
        """Check, run and verify ``step`` until it is done, skipped or failed: a lost
        connection is reconnected (3 times), a transient failure retried (step.retries),
        any other failure decided by ``decide`` (Retry / Skip / Abort)."""
        tries = _Tries()
        while True:
            tries.attempt += 1
            t0 = time.monotonic()
            try:
                return self._attempt(step, index, total, tries.attempt)
            except Exception as exc:  # noqa: BLE001 - every failure becomes a decision
                outcome = self._failed(step, exc, tries, time.monotonic() - t0)
            if outcome is not None:
                return outcome

    def _attempt(self, step: Step, index: int, total: int, attempt: int) -> Status:
        ctx = self.context_of(step)
        ctx.step_id = step.id
        ctx.cancel.clear()
        self.emit(StepStarted(step.id, step.title, index, total, attempt))
        self.state.set(step.id, Status.RUNNING)
        t0 = time.monotonic()
        if step.check is not None and step.check(ctx):
            status = Status.ALREADY_DONE
        else:
            step.run(ctx)
            if step.verify is not None:
                step.verify(ctx)
            status = Status.DONE
        dur = time.monotonic() - t0
        self.state.set(step.id, status, dur)
        self.emit(StepFinished(step.id, status, dur))
        return status

    def _reconnected(self, step: Step, exc: BaseException, tries: "_Tries"):
        """True when a lost connection came back; else the exception to explain."""
        from .transport import ConnectionLost

        if not isinstance(exc, ConnectionLost) or tries.reconnects >= 3:
            return exc
        tries.reconnects += 1
        ctx = self.context_of(step)
        self.emit(Notice(strip_controls(ctx.redact(
            f"SSH connection lost ({exc.why or exc.what}); reconnecting "
            f"and retrying {step.id}")), step.id))
        try:
            ctx.transport.reconnect(self.reconnect_deadline)
            return True
        except Exception as exc2:  # noqa: BLE001 - explained like any failure
            return exc2

    def _failed(self, step: Step, exc: BaseException, tries: "_Tries", dur: float):
        """What one failed attempt leads to: None to try again, else the step's status."""
        from .transport import CommandCancelled
        from . import explain

        exc = self._reconnected(step, exc, tries)
        if exc is True:
            return None
        rules = self.plan.rules or None
        ctx = self.context_of(step)
        info = _explain(exc, ctx.redact, rules)
        if isinstance(exc, CommandCancelled):
            info.kind = "cancelled"
        explain.add_logs(info, ctx, rules)  # a known failure's log tail (Keystone, Glance...)
        transient = getattr(exc, "transient", False) or info.kind == "transient"
        limit = max(step.retries, 1) if info.kind in explain.RETRY_ONCE else step.retries
        if (transient or info.kind in explain.RETRY_ONCE) and tries.auto < limit:
            tries.auto += 1
            delay = min(2 ** tries.auto, 20)
            self.emit(Notice(f"{info.what} - retrying in {delay} s "
                             f"({tries.auto}/{limit})", step.id))
            ctx.cancel.wait(delay)
            return None
        return self._decided(step, info, tries, dur)

    def _decided(self, step: Step, info: ErrorInfo, tries: "_Tries", dur: float):
        self.state.set(step.id, Status.FAILED, dur, info)
        self.emit(StepFinished(step.id, Status.FAILED, dur, info))
        with self._decide_lock:
            decision = self.decide(step, info)
        if decision == Decision.RETRY:
            tries.auto = 0
            return None
        if decision == Decision.SKIP:
            self.state.set(step.id, Status.SKIPPED, dur, info)
            self.emit(StepFinished(step.id, Status.SKIPPED, dur, info))
            return Status.SKIPPED
        return Status.FAILED


@dataclass
class _Tries:
    """One step's attempts so far: in all, automatic retries, reconnects."""
    attempt: int = 0
    auto: int = 0
    reconnects: int = 0
