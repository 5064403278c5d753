"""The progress screen's view model: step and phase labels, the run report the summary
shows, and what the screen says when a run stops before it starts (pure: no widgets)."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.text import Text

from ..tasks.engine import Status
from .common import fmt_duration

LOG_LINES = 2000          # per step, and in the log pane
ICONS = {
    Status.PENDING: ("·", "dim"),
    Status.RUNNING: ("▶", "bold cyan"),
    Status.DONE: ("✓", "green"),
    Status.ALREADY_DONE: ("=", "green"),
    Status.SKIPPED: ("↷", "yellow"),
    Status.FAILED: ("✗", "bold red"),
}
COUNTED = (Status.DONE, Status.ALREADY_DONE, Status.SKIPPED)   # finished, for the bar
LEGEND = Text.assemble(("✓", "green"), " done ", ("=", "green"), " already done ",
                       ("↷", "yellow"), " skipped ", ("✗", "bold red"), " failed")


@dataclass(frozen=True)
class PlanReady:
    """The worker connected and built the plan: the screen draws its tree."""

    plan: Any


@dataclass(frozen=True)
class ConnectFailed:
    """The worker could not connect (or could not read the saved run state)."""

    error: BaseException


@dataclass(frozen=True)
class Crashed:
    """The worker or the engine raised: the run stopped."""

    error: BaseException


@dataclass
class StepView:
    step_id: str
    title: str
    phase_id: str
    status: Status = Status.PENDING
    duration: float | None = None
    started: float | None = None
    attempt: int = 1
    progress: tuple[int, int, str] | None = None
    error: Any = None
    lines: deque = field(default_factory=lambda: deque(maxlen=LOG_LINES))
    node: Any = None


@dataclass
class RunReport:
    """What the summary shows."""

    profile: Any
    ok: bool
    aborted: bool
    counts: dict
    duration: float
    phases: list[tuple[str, float, str]]       # title, seconds, outcome
    facts: dict
    log_path: Any
    platform: str = ""
    problems: list[str] = field(default_factory=list)
    statuses: dict[str, Status] = field(default_factory=dict)    # step id -> status


def step_label(sv: StepView, now: float) -> Text:
    """A step's line in the tree: icon, time, progress, title, attempt."""
    icon, style = ICONS.get(sv.status, ("?", ""))
    t = Text()
    t.append(f"{icon} ", style=style)
    if sv.status is Status.RUNNING:
        el = max(0.0, now - (sv.started or now))
        t.append(f"{fmt_duration(el):>7} ", style="cyan")
    elif sv.duration is not None and sv.status is not Status.PENDING:
        t.append(f"{fmt_duration(sv.duration):>7} ", style="dim")
    else:
        t.append(" " * 8)
    if sv.status is Status.RUNNING and sv.progress:  # before the title: long titles are cut
        p = sv.progress[2].split(":")[0] or f"{sv.progress[0]}/{sv.progress[1]}"
        t.append(f"[{p}] ", style="cyan")
    t.append(sv.title, style="bold" if sv.status is Status.RUNNING else
             "dim" if sv.status is Status.PENDING else "")
    extra = []
    if sv.status is Status.RUNNING and sv.attempt > 1:
        extra.append(f"attempt {sv.attempt}")
    if extra:
        t.append(f" ({', '.join(extra)})", style="cyan")
    return t


def phase_label(title: str, svs: list[StepView]) -> Text:
    """A phase's line in the tree: its icon, title, steps done and time."""
    sts = [sv.status for sv in svs]
    ok = sum(1 for s in sts if s in COUNTED)
    if Status.FAILED in sts:
        icon, style = ICONS[Status.FAILED]
    elif Status.RUNNING in sts:
        icon, style = ICONS[Status.RUNNING]
    elif ok == len(sts):
        icon, style = ICONS[Status.SKIPPED if Status.SKIPPED in sts else Status.DONE]
    else:
        icon, style = ICONS[Status.PENDING]
    total = sum(sv.duration or 0 for sv in svs)
    t = Text.assemble((f"{icon} ", style), (title, "bold"), (f"  {ok}/{len(sts)}", "dim"))
    if ok == len(sts) and total:
        t.append(f"  {fmt_duration(total)}", style="dim")
    return t


def steps_done(steps: dict[str, StepView]) -> int:
    return sum(1 for sv in steps.values() if sv.status in COUNTED)


def log_title(sv: StepView, follow: bool) -> Text:
    """The log pane's title: the step, what it is at now (e.g. the current package)."""
    how = "following" if follow else "f: follow running"
    if sv.status is Status.RUNNING and sv.progress and sv.progress[2]:
        t = Text.assemble((sv.progress[2], "bold cyan"), " · ", sv.title)
    else:
        t = Text.assemble(("Output: ", "bold"), sv.title)
    t.append(f"  ({how})", style="dim")
    return t


def running_status(prof, plan, resumed: bool, steps: dict[str, StepView], running_id,
                   note: str) -> Text:
    """The status line while the engine runs: where, which step of how many, its progress."""
    t = Text()
    t.append(f"Installing on {prof.host.user}@{prof.host.address}", style="bold")
    if plan is not None and plan.platform:
        from ..tasks.platforms import PLATFORMS

        plat = PLATFORMS.get(plan.platform)
        if plat is not None:
            t.append(f" ({plat.name})")
    if resumed:
        t.append(" - resuming", style="yellow")
    sv = steps.get(running_id or "")
    if sv is not None:
        idx = list(steps).index(sv.step_id) + 1
        t.append(f"\nStep {idx} of {len(steps)}: {sv.title}", style="cyan")
        if sv.progress and sv.progress[2]:
            t.append(f" · {sv.progress[2]}", style="bold cyan")
    if note:
        t.append(f"\nnote: {note}", style="yellow")
    return t


def finished_status(ev) -> Text:
    """The status line when the run is over: the outcome, the counts, what to press."""
    c = ev.counts
    counts = (f"{c.get(Status.DONE, 0)} done, {c.get(Status.ALREADY_DONE, 0)} already done, "
              f"{c.get(Status.SKIPPED, 0)} skipped, {c.get(Status.FAILED, 0)} failed")
    if ev.ok:
        return Text.assemble(("✓ Installed and verified. ", "bold green"),
                             f"{counts} in {fmt_duration(ev.duration)}. ",
                             ("ctrl+n: summary", "bold"))
    return Text.assemble(
        ("✗ Not complete. " if ev.aborted else "! Finished with skipped steps. ",
         "bold red" if ev.aborted else "bold yellow"),
        f"{counts}. The state is saved: ", ("ctrl+r", "bold"), " runs again and "
        "resumes; ", ("ctrl+n", "bold"), ": summary.")


def failure_lines(error) -> list[str]:
    """A failed step's explanation, appended to its output."""
    extra = [f"✗ {error.what}"]
    if error.why:
        extra.append(f"  Why: {error.why}")
    if error.hint:
        extra.append(f"  Try: {error.hint}")
    return extra


def phase_outcomes(plan, steps: dict[str, StepView]) -> list[tuple[str, float, str]]:
    """(title, seconds, outcome) per phase of ``plan``, for the summary."""
    phases = []
    if plan is None:
        return phases
    for phase in plan.phases:
        svs = [steps[s.id] for s in phase.steps if s.id in steps]
        secs = sum(sv.duration or 0 for sv in svs)
        sts = [sv.status for sv in svs]
        outcome = (Status.FAILED.value if Status.FAILED in sts
                   else Status.SKIPPED.value if Status.SKIPPED in sts
                   else "not run" if Status.PENDING in sts
                   else Status.ALREADY_DONE.value if all(s is Status.ALREADY_DONE for s in sts)
                   else Status.DONE.value)
        phases.append((phase.title, secs, outcome))
    return phases


def problems(steps: dict[str, StepView]) -> list[str]:
    return [f"{sv.title}: {sv.status.value}"
            + (f" ({sv.error.what})" if getattr(sv.error, "what", "") else "")
            for sv in steps.values() if sv.status in (Status.FAILED, Status.SKIPPED)]


@dataclass
class Stopped:
    """What the screen shows when a run stops before or outside the engine's own end."""

    status: Text
    modal: Any = None                  # a dialog to push, or None
    unreadable: Path | None = None     # the run state file ctrl+r sets aside


def connect_failure(exc, state_file: Path) -> Stopped:
    from ..tasks.engine import StateError
    from ..tasks.transport import HostKeyChanged, TransportError, UnknownHostKey
    from .modals import MessageModal, host_key_changed_modal

    if isinstance(exc, StateError):
        return state_unreadable(exc, state_file)
    if isinstance(exc, HostKeyChanged):
        return Stopped(Text("Refused: the host key has changed. Nothing was run.",
                            style="bold red"), host_key_changed_modal(exc))
    if isinstance(exc, UnknownHostKey):
        return Stopped(Text("The host key was not trusted; nothing was run. esc: back, "
                            "ctrl+r: connect again.", style="yellow"))
    if isinstance(exc, TransportError):
        return Stopped(Text(f"Could not connect: {exc.what}", style="bold red"),
                       MessageModal("Could not connect", exc.what, exc.why, exc.hint))
    return Stopped(Text(f"Could not start: {exc}", style="bold red"),
                   MessageModal("Could not start", str(exc)))


def state_unreadable(exc, path: Path) -> Stopped:
    """The saved run state cannot be read: say what to do here, in the TUI (the engine's
    message names the CLI's --reset-state), and let ctrl+r start over."""
    from .modals import MessageModal

    if "newer stack-tui" in str(exc):
        return Stopped(
            Text("The saved run state is from a newer stack-tui; nothing was run.",
                 style="bold red"),
            MessageModal("Saved run state from a newer version",
                         f"{path} was written by a newer stack-tui.",
                         "this version cannot read it", "upgrade stack-tui, then run again"))
    return Stopped(
        Text("The saved run state is unreadable; nothing was run. ctrl+r: start over, "
             "esc: back.", style="bold red"),
        MessageModal(
            "Saved run state unreadable", f"The saved run state {path} cannot be read, so "
            "this run cannot resume from it.",
            "the file is damaged or is not a stack-tui run state",
            f"close this and press ctrl+r to start over: the unreadable file is kept as "
            f"{path.name}.unreadable beside it, and every step checks the host again, so "
            "nothing is done twice"),
        unreadable=path)


def set_aside(path: Path) -> None:
    """Keep an unreadable run state beside it (NAME.unreadable) so a fresh run can start."""
    if path.exists():
        path.replace(path.with_name(path.name + ".unreadable"))


def crash(exc, state_file: Path) -> Stopped:
    from ..tasks.engine import StateError
    from .modals import MessageModal

    if isinstance(exc, StateError):
        return state_unreadable(exc, state_file)
    return Stopped(
        Text(f"The run stopped: {type(exc).__name__}: {exc}", style="bold red"),
        MessageModal("The run stopped unexpectedly", f"{type(exc).__name__}: {exc}",
                     "this is probably a bug in stack-tui",
                     "ctrl+r runs again (finished steps are only re-checked); if it persists, "
                     "run `stack-tui bundle PROFILE` and report it"))
