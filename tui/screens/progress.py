"""Progress: the engine in a thread worker, a live tree of steps, the output of one step.

Engine events arrive in the worker thread; the listener only appends them to a
deque (thread-safe, never blocks the engine), and a 10 Hz timer on the UI side
applies them in order.  Output is kept per step in bounded deques and the log
pane (a plain-text ``Log``, never parsed as markup) is bounded too, so memory
stays flat however much a step prints.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Footer, Header, Log, ProgressBar, Static, Tree
from textual.worker import Worker, WorkerState

from .common import Responsive, ask_from_thread, fmt_duration

LOG_LINES = 2000          # per step, and in the log pane
ICONS = {
    "pending": ("·", "dim"),
    "running": ("▶", "bold cyan"),
    "done": ("✓", "green"),
    "already done": ("=", "green"),
    "skipped": ("↷", "yellow"),
    "failed": ("✗", "bold red"),
}
LEGEND = Text.assemble(("✓", "green"), " done ", ("=", "green"), " already done ",
                       ("↷", "yellow"), " skipped ", ("✗", "bold red"), " failed")


@dataclass
class StepView:
    step_id: str
    title: str
    phase_id: str
    status: str = "pending"
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
    statuses: dict[str, str] = field(default_factory=dict)    # step id -> status


class ProgressScreen(Responsive, Screen):
    SUB_TITLE = "Progress"
    BINDINGS = [
        Binding("c", "cancel_step", "Cancel step"),
        Binding("f", "follow", "Follow"),
        Binding("l", "full_log", "Full log"),
        Binding("ctrl+r", "rerun", "Run again"),
        Binding("ctrl+n", "summary", "Summary"),
        Binding("escape", "back", "Back"),
    ]

    def __init__(self, runner, *, resumed: bool = False):
        super().__init__()
        self.runner = runner
        self.resumed = resumed
        self.queue: deque = deque()
        self.steps: dict[str, StepView] = {}
        self.phase_nodes: dict[str, tuple[str, Any, list[str]]] = {}
        self.engine = None
        self.plan = None
        self.stage = "idle"        # connecting / running / finished / stopped
        self.result = None
        self.state_unreadable = None  # the run state file to set aside on ctrl+r
        self.t0: float | None = None
        self.t_end: float | None = None
        self.total = 0
        self.follow = True
        self.shown: str | None = None
        self.running_id: str | None = None
        self.note = ""
        self._pending: list[str] = []
        self._auto_nodes: list = []
        self._stop = threading.Event()
        self._quitting = False
        self.worker: Worker | None = None
        self.lines_seen = 0

    # -- layout ---------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("", id="run-status")
        with Horizontal(id="progress-main"):
            with Vertical(id="tree-pane"):
                tree: Tree = Tree("run", id="steps")
                tree.show_root = False
                yield tree
                yield Static(LEGEND, id="legend")
            with Vertical(id="log-pane"):
                yield Static("", id="log-title")
                yield Log(id="log", max_lines=LOG_LINES)
        with Horizontal(id="overall"):
            yield ProgressBar(total=1, show_eta=False, id="bar")
            yield Static("", id="elapsed")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.set_interval(0.1, self.drain)
        self.set_interval(1.0, self.tick)
        self.start()

    def on_unmount(self) -> None:
        self.release_engine()

    def release_engine(self) -> None:
        """Leaving (app exit, screen gone): cancel the running step; decisions become Abort.
        The worker thread then ends by itself, so the exit never waits on it for long."""
        self._stop.set()
        if self.engine is not None and not (self.result is not None):
            self.engine.ctx.cancel.set()

    @property
    def installing(self) -> bool:
        return self.stage in ("connecting", "running")

    # -- the worker -------------------------------------------------------------------
    def start(self) -> None:
        self.stage = "connecting"
        self.result = None
        self.t0, self.t_end = self.app.clock(), None
        self.engine = None
        prof = self.app.state.profile
        self.set_status(Text(f"Connecting to {prof.host.user}@{prof.host.address}:"
                             f"{prof.host.port} ...", style="italic"))
        self.worker = self.install()
        self.refresh_bindings()
        self.tick()

    @work(thread=True, exclusive=True, exit_on_error=False, group="install")
    def install(self):
        try:
            plan = self.runner.connect(self._confirm_host_key)
        except Exception as exc:  # noqa: BLE001 - explained on screen
            self.queue.append(("connect-failed", exc))
            try:
                self.runner.close()
            except Exception:
                pass
            return None
        self.queue.append(("plan", plan))
        try:
            eng = self.runner.make_engine([self.queue.append], self._decide)
            self.engine = eng
            if self._stop.is_set():
                return None
            return eng.run()
        except Exception as exc:  # noqa: BLE001
            self.queue.append(("crashed", exc))
            return None
        finally:
            try:
                self.runner.close()
            except Exception:
                pass

    def _confirm_host_key(self, host: str, key_type: str, fingerprint: str) -> bool:
        from .modals import HostKeyModal

        return bool(ask_from_thread(self.app, lambda: HostKeyModal(host, key_type, fingerprint),
                                    default=False, closing=self._stop, before=self.drain))

    def _decide(self, step, info):
        from ..tasks.engine import Decision
        from .modals import FailureModal

        if self._quitting or self._stop.is_set():
            return Decision.ABORT

        def modal():
            lines = list(self.steps[step.id].lines) if step.id in self.steps else []
            said = {f"✗ {info.what}", f"  Why: {info.why}", f"  Try: {info.hint}"}
            while lines and lines[-1] in said:  # the modal says these already
                lines.pop()
            tail = info.tail or lines[-12:]
            return FailureModal(step.id, step.title, info, tail or [],
                                getattr(self.runner, "log_path", None))

        answer = ask_from_thread(self.app, modal, default="abort", closing=self._stop,
                                 before=self.drain)
        try:
            return Decision(answer)
        except ValueError:
            return Decision.ABORT

    @on(Worker.StateChanged)
    def worker_changed(self, event: Worker.StateChanged) -> None:
        if event.worker is not self.worker:
            return
        if event.state == WorkerState.ERROR:
            self.queue.append(("crashed", event.worker.error))
        if event.state == WorkerState.CANCELLED:  # the app is closing
            self.release_engine()
        if event.state in (WorkerState.SUCCESS, WorkerState.ERROR, WorkerState.CANCELLED):
            self.drain()
            if self.stage in ("connecting", "running"):
                self.stage = "stopped"
                self.t_end = self.app.clock()
                self.set_status(Text("The run ended before finishing. ctrl+r runs it again "
                                     "(it resumes).", style="yellow"))
                self.refresh_bindings()

    # -- applying events (UI thread) ---------------------------------------------------
    def drain(self) -> None:
        from ..tasks import engine as e

        if not self.queue:
            return
        relabel: set[str] = set()
        while self.queue:
            ev = self.queue.popleft()
            if isinstance(ev, e.StepOutput):
                sv = self.steps.get(ev.step_id)
                self.lines_seen += 1
                if sv is not None:
                    sv.lines.append(ev.line)
                if ev.step_id == self.shown:
                    self._pending.append(ev.line)
            elif isinstance(ev, e.StepProgress):
                sv = self.steps.get(ev.step_id)
                if sv is not None:
                    sv.progress = (ev.done, ev.total, ev.text)
                    relabel.add(ev.step_id)
            elif isinstance(ev, e.StepStarted):
                self.on_step_started(ev)
                relabel.add(ev.step_id)
            elif isinstance(ev, e.StepFinished):
                self.on_step_finished(ev)
                relabel.add(ev.step_id)
            elif isinstance(ev, e.Notice):
                line = f"! {ev.text}"
                sv = self.steps.get(ev.step_id or "")
                if sv is not None:
                    sv.lines.append(line)
                if ev.step_id == self.shown:
                    self._pending.append(line)
                self.note = ev.text
                self.update_running_status()
            elif isinstance(ev, e.RunStarted):
                self.total = ev.total
                self.query_one("#bar", ProgressBar).update(total=max(ev.total, 1), progress=0)
                self.stage = "running"
                self.update_running_status()
            elif isinstance(ev, e.RunFinished):
                self.on_run_finished(ev)
            elif isinstance(ev, tuple):
                kind, payload = ev
                if kind == "plan":
                    self.build_tree(payload)
                elif kind == "connect-failed":
                    self.on_connect_failed(payload)
                elif kind == "crashed":
                    self.on_crashed(payload)
        self.flush()
        self.relabel_all(relabel)

    def relabel_all(self, changed: set[str]) -> None:
        """After a batch of events: the tree lines, the bar, the status and log titles."""
        for sid in changed:
            self.relabel(sid)
        if self.running_id in changed:
            self.bar_update()
            self.update_running_status()
        if self.shown in changed and self.shown in self.steps:
            self.show_title(self.steps[self.shown])
        if changed:
            self.tick()
            self.refresh_bindings()  # Cancel step / Follow depend on what is running

    def flush(self) -> None:
        if self._pending:
            self.query_one("#log", Log).write_lines(self._pending[-LOG_LINES:])
            self._pending = []

    def build_tree(self, plan) -> None:
        self.plan = plan
        tree = self.query_one("#steps", Tree)
        tree.clear()
        old = self.steps
        self.steps, self.phase_nodes = {}, {}
        for phase in plan.phases:
            pnode = tree.root.add(Text(phase.title), data=("phase", phase.id), expand=True)
            ids = []
            for step in phase.steps:
                sv = StepView(step.id, step.title, phase.id)
                if step.id in old:  # a second run keeps the output of the first
                    sv.lines = old[step.id].lines
                sv.node = pnode.add_leaf(Text(step.title), data=("step", step.id))
                self.steps[step.id] = sv
                ids.append(step.id)
            self.phase_nodes[phase.id] = (phase.title, pnode, ids)
        for sid in self.steps:
            self.relabel(sid)
        self.bar_update()

    def on_step_started(self, ev) -> None:
        sv = self.steps.get(ev.step_id)
        if sv is None:
            return
        sv.status, sv.started, sv.attempt, sv.progress = "running", self.app.clock(), ev.attempt, None
        sv.duration = None
        self.running_id = ev.step_id
        self.note = ""
        if ev.attempt > 1:
            sv.lines.append(f"--- attempt {ev.attempt} ---")
            if self.shown == ev.step_id:
                self._pending.append(f"--- attempt {ev.attempt} ---")
        if self.follow:
            self.show(ev.step_id, auto=True)
        self.update_running_status(ev)

    def on_step_finished(self, ev) -> None:
        sv = self.steps.get(ev.step_id)
        if sv is None:
            return
        sv.status, sv.duration, sv.error = ev.status.value, ev.duration, ev.error
        if ev.error is not None and ev.status.value == "failed":
            extra = [f"✗ {ev.error.what}"]
            if ev.error.why:
                extra.append(f"  Why: {ev.error.why}")
            if ev.error.hint:
                extra.append(f"  Try: {ev.error.hint}")
            sv.lines.extend(extra)
            if self.shown == ev.step_id:
                self._pending.extend(extra)
        self.bar_update()

    def on_run_finished(self, ev) -> None:
        self.result = ev
        self.stage = "finished"
        self.t_end = self.app.clock()
        self.running_id = None
        c = ev.counts
        counts = (f"{c.get('done', 0)} done, {c.get('already done', 0)} already done, "
                  f"{c.get('skipped', 0)} skipped, {c.get('failed', 0)} failed")
        if ev.ok:
            self.set_status(Text.assemble(("✓ Installed and verified. ", "bold green"),
                                          f"{counts} in {fmt_duration(ev.duration)}. ",
                                          ("ctrl+n: summary", "bold")))
        else:
            self.set_status(Text.assemble(
                ("✗ Not complete. " if ev.aborted else "! Finished with skipped steps. ",
                 "bold red" if ev.aborted else "bold yellow"),
                f"{counts}. The state is saved: ", ("ctrl+r", "bold"), " runs again and "
                "resumes; ", ("ctrl+n", "bold"), ": summary."))
        self.tick()
        self.refresh_bindings()

    def on_connect_failed(self, exc) -> None:
        from ..tasks.engine import StateError
        from ..tasks.transport import HostKeyChanged, TransportError, UnknownHostKey
        from .modals import MessageModal, host_key_changed_modal

        self.stage = "stopped"
        self.t_end = self.app.clock()
        if isinstance(exc, StateError):
            self.on_state_unreadable(exc)
        elif isinstance(exc, HostKeyChanged):
            self.set_status(Text("Refused: the host key has changed. Nothing was run.",
                                 style="bold red"))
            self.app.push_screen(host_key_changed_modal(exc))
        elif isinstance(exc, UnknownHostKey):
            self.set_status(Text("The host key was not trusted; nothing was run. esc: back, "
                                 "ctrl+r: connect again.", style="yellow"))
        elif isinstance(exc, TransportError):
            self.set_status(Text(f"Could not connect: {exc.what}", style="bold red"))
            self.app.push_screen(MessageModal("Could not connect", exc.what, exc.why, exc.hint))
        else:
            self.set_status(Text(f"Could not start: {exc}", style="bold red"))
            self.app.push_screen(MessageModal("Could not start", str(exc)))
        self.refresh_bindings()

    def on_state_unreadable(self, exc) -> None:
        """The saved run state cannot be read: say what to do here, in the TUI (the
        engine's message names the CLI's --reset-state), and let ctrl+r start over."""
        from ..tasks import engine
        from .modals import MessageModal

        prof = self.app.state.profile
        path = engine.state_path(prof.name, prof.host.address)
        if "newer stack-tui" in str(exc):
            self.set_status(Text("The saved run state is from a newer stack-tui; nothing was run.",
                                 style="bold red"))
            self.app.push_screen(MessageModal(
                "Saved run state from a newer version", f"{path} was written by a newer "
                "stack-tui.", "this version cannot read it", "upgrade stack-tui, then run again"))
            return
        self.state_unreadable = path
        self.set_status(Text("The saved run state is unreadable; nothing was run. ctrl+r: "
                             "start over, esc: back.", style="bold red"))
        self.app.push_screen(MessageModal(
            "Saved run state unreadable", f"The saved run state {path} cannot be read, so "
            "this run cannot resume from it.",
            "the file is damaged or is not a stack-tui run state",
            f"close this and press ctrl+r to start over: the unreadable file is kept as "
            f"{path.name}.unreadable beside it, and every step checks the host again, so "
            "nothing is done twice"))

    def _set_unreadable_state_aside(self) -> None:
        path, self.state_unreadable = self.state_unreadable, None
        if path is not None and path.exists():
            path.replace(path.with_name(path.name + ".unreadable"))

    def on_crashed(self, exc) -> None:
        from ..tasks.engine import StateError
        from .modals import MessageModal

        self.stage = "stopped"
        self.t_end = self.app.clock()
        if isinstance(exc, StateError):
            self.on_state_unreadable(exc)
            self.refresh_bindings()
            return
        self.set_status(Text(f"The run stopped: {type(exc).__name__}: {exc}", style="bold red"))
        self.app.push_screen(MessageModal(
            "The run stopped unexpectedly", f"{type(exc).__name__}: {exc}",
            "this is probably a bug in stack-tui",
            "ctrl+r runs again (finished steps are only re-checked); if it persists, run "
            "`stack-tui bundle PROFILE` and report it"))
        self.refresh_bindings()

    # -- rendering ---------------------------------------------------------------------
    def set_status(self, text: Text) -> None:
        self.query_one("#run-status", Static).update(text)

    def update_running_status(self, ev=None) -> None:
        if self.stage != "running":
            return
        prof = self.app.state.profile
        t = Text()
        t.append(f"Installing on {prof.host.user}@{prof.host.address}", style="bold")
        if self.plan is not None and self.plan.platform:
            from ..tasks.platforms import PLATFORMS

            plat = PLATFORMS.get(self.plan.platform)
            if plat is not None:
                t.append(f" ({plat.name})")
        if self.resumed:
            t.append(" - resuming", style="yellow")
        sv = self.steps.get(self.running_id or "")
        if sv is not None:
            idx = list(self.steps).index(sv.step_id) + 1
            t.append(f"\nStep {idx} of {len(self.steps)}: {sv.title}", style="cyan")
            if sv.progress and sv.progress[2]:
                t.append(f" · {sv.progress[2]}", style="bold cyan")
        if self.note:
            t.append(f"\nnote: {self.note}", style="yellow")
        self.set_status(t)

    def step_label(self, sv: StepView) -> Text:
        icon, style = ICONS.get(sv.status, ("?", ""))
        t = Text()
        t.append(f"{icon} ", style=style)
        if sv.status == "running":
            el = max(0.0, self.app.clock() - (sv.started or self.app.clock()))
            t.append(f"{fmt_duration(el):>7} ", style="cyan")
        elif sv.duration is not None and sv.status != "pending":
            t.append(f"{fmt_duration(sv.duration):>7} ", style="dim")
        else:
            t.append(" " * 8)
        if sv.status == "running" and sv.progress:  # before the title: long titles are cut
            p = sv.progress[2].split(":")[0] or f"{sv.progress[0]}/{sv.progress[1]}"
            t.append(f"[{p}] ", style="cyan")
        t.append(sv.title, style="bold" if sv.status == "running" else
                 "dim" if sv.status == "pending" else "")
        extra = []
        if sv.status == "running" and sv.attempt > 1:
            extra.append(f"attempt {sv.attempt}")
        if extra:
            t.append(f" ({', '.join(extra)})", style="cyan")
        return t

    def phase_label(self, phase_id: str) -> Text:
        title, _, ids = self.phase_nodes[phase_id]
        sts = [self.steps[i].status for i in ids]
        ok = sum(1 for s in sts if s in ("done", "already done", "skipped"))
        if "failed" in sts:
            icon, style = ICONS["failed"]
        elif "running" in sts:
            icon, style = ICONS["running"]
        elif ok == len(sts):
            icon, style = ICONS["skipped"] if "skipped" in sts else ICONS["done"]
        else:
            icon, style = ICONS["pending"]
        total = sum(self.steps[i].duration or 0 for i in ids)
        t = Text.assemble((f"{icon} ", style), (title, "bold"), (f"  {ok}/{len(sts)}", "dim"))
        if ok == len(sts) and total:
            t.append(f"  {fmt_duration(total)}", style="dim")
        return t

    def relabel(self, sid: str) -> None:
        sv = self.steps.get(sid)
        if sv is None or sv.node is None:
            return
        sv.node.set_label(self.step_label(sv))
        pnode = self.phase_nodes[sv.phase_id][1]
        pnode.set_label(self.phase_label(sv.phase_id))

    def bar_update(self) -> None:
        done = sum(1 for sv in self.steps.values()
                   if sv.status in ("done", "already done", "skipped"))
        running = self.steps.get(self.running_id or "")
        if running is not None and running.status == "running" and running.progress:
            d, t, _ = running.progress  # the running step's share moves the bar too
            done += min(max(d / t, 0.0), 1.0) if t > 0 else 0.0
        total = self.total or len(self.steps) or 1
        self.query_one("#bar", ProgressBar).update(total=total, progress=min(done, total))

    def tick(self) -> None:
        if self.running_id and self.stage == "running":
            self.relabel(self.running_id)
        if self.t0 is None:
            return
        end = self.t_end if self.t_end is not None else self.app.clock()
        done = sum(1 for sv in self.steps.values()
                   if sv.status in ("done", "already done", "skipped"))
        self.query_one("#elapsed", Static).update(
            Text(f"{done}/{len(self.steps)} steps · elapsed {fmt_duration(end - self.t0)}"))

    def show(self, sid: str, auto: bool = False) -> None:
        """Show ``sid``'s output in the log pane."""
        sv = self.steps.get(sid)
        if sv is None:
            return
        if sid != self.shown:
            self.flush()
            self._pending = []
            log = self.query_one("#log", Log)
            log.clear()
            log.write_lines(list(sv.lines))
            self.shown = sid
        self.show_title(sv)
        if auto and sv.node is not None:
            tree = self.query_one("#steps", Tree)
            if tree.cursor_node is not sv.node:
                self._auto_nodes.append(sv.node)
                tree.move_cursor(sv.node)

    def show_title(self, sv: StepView) -> None:
        """The log pane's title: the step, what it is at now (e.g. the current package)."""
        how = "following" if self.follow else "f: follow running"
        if sv.status == "running" and sv.progress and sv.progress[2]:
            t = Text.assemble((sv.progress[2], "bold cyan"), " · ", sv.title)
        else:
            t = Text.assemble(("Output: ", "bold"), sv.title)
        t.append(f"  ({how})", style="dim")
        self.query_one("#log-title", Static).update(t)

    @on(Tree.NodeHighlighted, "#steps")
    def highlighted(self, event: Tree.NodeHighlighted) -> None:
        if event.node in self._auto_nodes:  # moved by following, not by the user
            self._auto_nodes.remove(event.node)
            return
        data = event.node.data
        if not data or data[0] != "step":
            return
        self.follow = data[1] == self.running_id
        self.show(data[1])
        self.refresh_bindings()

    # -- actions -----------------------------------------------------------------------
    def check_action(self, action: str, parameters) -> bool | None:
        # Bindings that do not apply in this stage are hidden (the footer must fit 80 columns).
        if action == "cancel_step":
            return self.stage == "running" and self.running_id is not None
        if action == "follow":
            return self.installing and not self.follow
        if action == "rerun":
            return (self.stage in ("stopped", "finished")
                    and not (self.result is not None and self.result.ok))
        if action == "summary":
            return self.stage == "finished"
        if action == "back":
            return not self.installing
        return True

    def action_cancel_step(self) -> None:
        if self.engine is not None and self.running_id:
            self.engine.ctx.cancel.set()
            sv = self.steps.get(self.running_id)
            self.notify(f"Cancelling {sv.title if sv else self.running_id} ...", timeout=3)

    def action_follow(self) -> None:
        self.follow = True
        target = self.running_id or self.shown
        if target:
            self.shown = None if target == self.shown else self.shown
            self.show(target, auto=True)
        self.refresh_bindings()

    def action_full_log(self) -> None:
        from .modals import FullLogScreen

        self.app.push_screen(FullLogScreen(getattr(self.runner, "log_path", None)))

    def action_rerun(self) -> None:
        if self.state_unreadable is not None:
            self._set_unreadable_state_aside()
        self.resumed = True
        self.query_one("#log", Log).clear()
        self.shown = None
        self.start()

    def action_back(self) -> None:
        self.app.go("review")

    def action_summary(self) -> None:
        from .summary import SummaryScreen

        self.app.switch_screen(SummaryScreen(self.report()))

    def report(self) -> RunReport:
        r = self.result
        phases = []
        if self.plan is not None:
            for phase in self.plan.phases:
                svs = [self.steps[s.id] for s in phase.steps if s.id in self.steps]
                secs = sum(sv.duration or 0 for sv in svs)
                sts = [sv.status for sv in svs]
                outcome = ("failed" if "failed" in sts else "skipped" if "skipped" in sts
                           else "not run" if "pending" in sts else
                           "already done" if all(s == "already done" for s in sts) else "done")
                phases.append((phase.title, secs, outcome))
        state = getattr(self.runner, "state", None)
        facts = dict(getattr(state, "facts", {}) or {})
        problems = [f"{sv.title}: {sv.status}"
                    + (f" ({sv.error.what})" if getattr(sv.error, "what", "") else "")
                    for sv in self.steps.values() if sv.status in ("failed", "skipped")]
        return RunReport(self.app.state.profile, bool(r and r.ok), bool(r and r.aborted),
                         dict(r.counts) if r else {}, r.duration if r else 0.0, phases, facts,
                         getattr(self.runner, "log_path", None),
                         self.plan.platform if self.plan is not None else "", problems,
                         {sid: sv.status for sid, sv in self.steps.items()})

    async def stop_for_quit(self) -> None:
        """Quit asked mid-run: cancel the running step, answer Abort, wait for the engine."""
        self._quitting = True
        self._stop.set()
        if self.engine is not None:
            self.engine.ctx.cancel.set()
        if self.worker is not None:
            try:
                await asyncio.wait_for(self.worker.wait(), 30)
            except Exception:
                pass
