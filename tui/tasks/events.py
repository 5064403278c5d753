"""What the engine tells its listeners (screens, the CLI, the transcript) while it runs,
and the transcript: the listener that writes a run's full log (redacted).

Plain data: the screens and the CLI read these; nothing here runs a step."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from . import paths
from .redact import Redactor, strip_controls


@dataclass
class RunStarted:
    total: int
    resumed: bool


@dataclass
class StepStarted:
    step_id: str
    title: str
    index: int
    total: int
    attempt: int = 1


@dataclass
class StepOutput:
    step_id: str
    line: str


@dataclass
class StepProgress:
    step_id: str
    done: int
    total: int
    text: str = ""


@dataclass
class StepFinished:
    step_id: str
    status: "Status"              # engine.Status (annotations only: no import cycle)
    duration: float
    error: "ErrorInfo | None" = None   # engine.ErrorInfo


@dataclass
class Notice:
    text: str
    step_id: str | None = None


@dataclass
class RunFinished:
    ok: bool
    aborted: bool
    duration: float
    counts: dict



class Transcript:
    """Listener writing the run's full transcript (redacted) to a log file."""

    def __init__(self, path: Path, redact: Redactor):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.redact = redact
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self.fh = os.fdopen(fd, "a", encoding="utf-8", buffering=1)

    def write(self, text: str) -> None:
        stamp = time.strftime("%H:%M:%S")
        for line in strip_controls(self.redact(text)).splitlines() or [""]:
            self.fh.write(f"{stamp} {line}\n")

    def __call__(self, ev) -> None:
        if isinstance(ev, StepStarted):
            self.write(f"=== [{ev.index}/{ev.total}] {ev.step_id}: {ev.title}"
                       + (f" (attempt {ev.attempt})" if ev.attempt > 1 else ""))
        elif isinstance(ev, StepOutput):
            self.write(f"    {_host_tag(ev.step_id)}{ev.line}")
        elif isinstance(ev, StepProgress):
            self.write(f"    {_host_tag(ev.step_id)}progress {ev.done}/{ev.total} {ev.text}")
        elif isinstance(ev, StepFinished):
            self.write(f"--- {ev.step_id}: {ev.status.value} in {ev.duration:.1f} s")
            if ev.error is not None:
                self.write(ev.error.text())
                for t in ev.error.tail:
                    self.write(f"    | {t}")
        elif isinstance(ev, Notice):
            self.write(f"!!! {ev.text}")
        elif isinstance(ev, RunStarted):
            self.write(f"##### run started: {ev.total} steps" + (" (resuming)" if ev.resumed else ""))
        elif isinstance(ev, RunFinished):
            self.write(f"##### run finished: ok={ev.ok} aborted={ev.aborted} "
                       f"in {ev.duration:.1f} s {ev.counts}")

    def close(self) -> None:
        self.fh.close()


def _host_tag(step_id: str) -> str:
    """Several hosts work at once: another host's output says whose it is ("[lab-2] ")."""
    return f"[{step_id.split(':', 1)[0]}] " if ":" in step_id else ""


def new_log_path(profile_name: str) -> Path:
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in profile_name)
    return paths.log_dir() / f"{safe}-{time.strftime('%Y%m%d-%H%M%S')}.log"
