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
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Footer, Header, Log, ProgressBar, Static, Tree
from textual.worker import Worker, WorkerState

from ..tasks.engine import Status
from .common import Responsive, ask_from_thread, fmt_duration
from .progress_view import (LEGEND, LOG_LINES, ConnectFailed, Crashed, PlanReady, RunReport,
                            StepView, Stopped, connect_failure,
                            crash, failure_lines, finished_status, phase_label, phase_outcomes,
                            log_title, problems, running_status, set_aside,
                            step_label, steps_done)

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
            self.engine.cancel_all()

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
            self.queue.append(ConnectFailed(exc))
            try:
                self.runner.close()
            except Exception:
                pass
            return None
        self.queue.append(PlanReady(plan))
        try:
            eng = self.runner.make_engine([self.queue.append], self._decide)
            self.engine = eng
            if self._stop.is_set():
                return None
            return eng.run()
        except Exception as exc:  # noqa: BLE001
            self.queue.append(Crashed(exc))
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
            self.queue.append(Crashed(event.worker.error))
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
            elif isinstance(ev, PlanReady):
                self.build_tree(ev.plan)
            elif isinstance(ev, ConnectFailed):
                self.on_connect_failed(ev.error)
            elif isinstance(ev, Crashed):
                self.on_crashed(ev.error)
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
        hosts: dict[str, Any] = {}   # several hosts: a node per host, its phases under it
        several = len(plan.hosts()) > 1
        for phase in plan.phases:
            parent = tree.root
            if several:
                if phase.host not in hosts:
                    hosts[phase.host] = tree.root.add(
                        Text(self.host_label(phase.host), style="bold"),
                        data=("host", phase.host), expand=True)
                parent = hosts[phase.host]
            title = phase.title.split(": ", 1)[1] if several and phase.host else phase.title
            pnode = parent.add(Text(title), data=("phase", phase.id), expand=True)
            ids = []
            for step in phase.steps:
                sv = StepView(step.id, step.title, phase.id)
                if step.id in old:  # a second run keeps the output of the first
                    sv.lines = old[step.id].lines
                sv.node = pnode.add_leaf(Text(step.title), data=("step", step.id))
                self.steps[step.id] = sv
                ids.append(step.id)
            self.phase_nodes[phase.id] = (title, pnode, ids)
        for sid in self.steps:
            self.relabel(sid)
        self.bar_update()

    def host_label(self, host: str) -> str:
        """A host's node: its name and roles ("" is the controller)."""
        prof = getattr(getattr(self.app, "state", None), "profile", None)
        if prof is None:
            return host or "controller"
        h = prof.host if not host else next((x for x in prof.hosts if x.name == host), None)
        return f"{h.name} ({', '.join(h.roles)})" if h is not None else host

    def on_step_started(self, ev) -> None:
        sv = self.steps.get(ev.step_id)
        if sv is None:
            return
        sv.status, sv.started, sv.attempt, sv.progress = Status.RUNNING, self.app.clock(), ev.attempt, None
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
        sv.status, sv.duration, sv.error = Status(ev.status), ev.duration, ev.error
        if ev.error is not None and sv.status is Status.FAILED:
            extra = failure_lines(ev.error)
            sv.lines.extend(extra)
            if self.shown == ev.step_id:
                self._pending.extend(extra)
        self.bar_update()

    def on_run_finished(self, ev) -> None:
        self.result = ev
        self.stage = "finished"
        self.t_end = self.app.clock()
        self.running_id = None
        self.set_status(finished_status(ev))
        self.tick()
        self.refresh_bindings()

    def on_connect_failed(self, exc) -> None:
        self._stopped_by(connect_failure(exc, self._state_file()))

    def on_crashed(self, exc) -> None:
        self._stopped_by(crash(exc, self._state_file()))

    def _state_file(self):
        from ..tasks import engine

        prof = self.app.state.profile
        return engine.state_path(prof.name, prof.host.address)

    def _stopped_by(self, why: Stopped) -> None:
        self.stage = "stopped"
        self.t_end = self.app.clock()
        self.set_status(why.status)
        if why.modal is not None:
            self.app.push_screen(why.modal)
        self.state_unreadable = why.unreadable
        self.refresh_bindings()

    # -- rendering ---------------------------------------------------------------------
    def set_status(self, text: Text) -> None:
        self.query_one("#run-status", Static).update(text)

    def update_running_status(self, ev=None) -> None:
        if self.stage != "running":
            return
        self.set_status(running_status(self.app.state.profile, self.plan, self.resumed,
                                       self.steps, self.running_id, self.note))

    def step_label(self, sv: StepView) -> Text:
        return step_label(sv, self.app.clock())

    def phase_label(self, phase_id: str) -> Text:
        title, _, ids = self.phase_nodes[phase_id]
        return phase_label(title, [self.steps[i] for i in ids])

    def relabel(self, sid: str) -> None:
        sv = self.steps.get(sid)
        if sv is None or sv.node is None:
            return
        sv.node.set_label(self.step_label(sv))
        pnode = self.phase_nodes[sv.phase_id][1]
        pnode.set_label(self.phase_label(sv.phase_id))

    def bar_update(self) -> None:
        done: float = steps_done(self.steps)
        running = self.steps.get(self.running_id or "")
        if running is not None and running.status is Status.RUNNING and running.progress:
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
        took = fmt_duration(end - self.t0)
        self.query_one("#elapsed", Static).update(
            Text(f"{steps_done(self.steps)}/{len(self.steps)} steps · elapsed {took}"))

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
        self.query_one("#log-title", Static).update(log_title(sv, self.follow))

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
            self.engine.cancel_all()
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
            set_aside(self.state_unreadable)
            self.state_unreadable = None
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
        state = getattr(self.runner, "state", None)
        return RunReport(self.app.state.profile, bool(r and r.ok), bool(r and r.aborted),
                         dict(r.counts) if r else {}, r.duration if r else 0.0,
                         phase_outcomes(self.plan, self.steps),
                         dict(getattr(state, "facts", {}) or {}),
                         getattr(self.runner, "log_path", None),
                         self.plan.platform if self.plan is not None else "",
                         problems(self.steps),
                         {sid: sv.status for sid, sv in self.steps.items()})

    async def stop_for_quit(self) -> None:
        """Quit asked mid-run: cancel the running step, answer Abort, wait for the engine."""
        self._quitting = True
        self._stop.set()
        if self.engine is not None:
            self.engine.cancel_all()
        if self.worker is not None:
            try:
                await asyncio.wait_for(self.worker.wait(), 30)
            except Exception:
                pass
