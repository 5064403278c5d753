"""The run state: per profile and controller, each step's status, duration, error and output
tail, and the facts the steps recorded (every host's), written atomically after every step,
so a killed run resumes at the first step that is not done."""

from __future__ import annotations

import json
import threading
import time
from enum import Enum
from pathlib import Path
from typing import Any

from . import paths
from .errors import Failure
from .fsutil import atomic_write, read_regular
from .redact import Redactor

STATE_VERSION = 1


class Status(str, Enum):
    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    ALREADY_DONE = "already done"
    SKIPPED = "skipped"
    FAILED = "failed"

    @property
    def finished_ok(self) -> bool:
        return self in (Status.DONE, Status.ALREADY_DONE)


class StateError(Failure):
    """The run state file cannot be used (the message says which and what to do)."""


def state_path(profile_name: str, host: str) -> Path:
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in f"{profile_name}@{host}")
    d = paths.state_dir() / "runs"
    d.mkdir(parents=True, exist_ok=True, mode=0o700)
    return d / f"{safe}.json"


class RunState:
    """Per profile and host: each step's status, duration, error and output tail."""

    def __init__(self, path: Path, redact: Redactor | None = None):
        self.path = Path(path)
        self.redact = redact or Redactor()
        self.steps: dict[str, dict] = {}
        self.facts: dict[str, Any] = {}
        self.hosts: dict[str, dict[str, Any]] = {}   # the other hosts' facts, by host name
        self.started: float | None = None
        self.finished: bool = False
        self._lock = threading.RLock()   # the hosts of a stage record their steps at once

    @classmethod
    def load(cls, path: Path, redact: Redactor | None = None) -> "RunState":
        st = cls(path, redact)
        if not path.exists():
            return st
        try:
            # a directory, FIFO, device or huge file is refused at once (FileRefused)
            data = json.loads(read_regular(path, 10_000_000).decode("utf-8"))
            if not isinstance(data, dict):
                raise ValueError("top level is not an object")
        except (ValueError, UnicodeDecodeError, OSError) as exc:
            raise StateError(
                f"The saved run state {path} is corrupted ({exc}). It was left untouched; "
                f"move it away (or run with --reset-state) to start the run's bookkeeping afresh "
                f"(steps still check the host, so nothing is done twice)."
            ) from None
        version = data.get("version")
        steps, facts = data.get("steps", {}), data.get("facts", {})
        if (not isinstance(version, int) or isinstance(version, bool) or version < 1
                or not isinstance(steps, dict) or not isinstance(facts, dict)):
            # Valid JSON of the wrong shape used to crash below (or be called "newer").
            raise StateError(
                f"The saved run state {path} is corrupted (not a stack-tui run state: needs a "
                f"whole-number version and 'steps'/'facts' objects). It was left untouched; "
                f"move it away (or run with --reset-state) to start the run's bookkeeping afresh "
                f"(steps still check the host, so nothing is done twice)."
            )
        if version > STATE_VERSION:
            raise StateError(
                f"The saved run state {path} was written by a newer stack-tui (state version "
                f"{version!r}, this one understands {STATE_VERSION}). It was left untouched; "
                f"upgrade stack-tui or move the file away."
            )
        st.steps = {k: v for k, v in steps.items() if isinstance(v, dict)}
        st.facts = dict(facts)
        hosts = data.get("hosts", {})
        st.hosts = ({k: dict(v) for k, v in hosts.items() if isinstance(v, dict)}
                    if isinstance(hosts, dict) else {})
        st.started = data.get("started")
        st.finished = bool(data.get("finished", False))
        return st

    def host_facts(self, name: str) -> dict[str, Any]:
        """Host ``name``'s facts (a host other than the controller), kept with the run."""
        with self._lock:
            return self.hosts.setdefault(name, {})

    def status(self, step_id: str) -> Status:
        try:
            return Status(self.steps.get(step_id, {}).get("status", "pending"))
        except ValueError:
            return Status.PENDING

    def unfinished(self) -> bool:
        return bool(self.steps) and not self.finished

    def first_not_done(self, plan) -> str | None:
        for s in plan.steps():
            if not self.status(s.id).finished_ok and self.status(s.id) != Status.SKIPPED:
                return s.id
        return None

    def set(self, step_id: str, status: Status, duration: float | None = None,
            error=None) -> None:
        entry = {"status": status.value, "updated": time.time()}
        if duration is not None:
            entry["duration"] = round(duration, 3)
        if error is not None:
            entry["error"] = error.to_dict()
        with self._lock:
            self.steps[step_id] = entry
            self.save()

    def save(self) -> None:
        with self._lock:
            data = {
                "version": STATE_VERSION,
                "started": self.started,
                "finished": self.finished,
                "facts": self.facts,
                "steps": self.steps,
            }
            if self.hosts:
                data["hosts"] = self.hosts
            text = self.redact(json.dumps(data, indent=1, ensure_ascii=False, default=str))
            atomic_write(self.path, text.encode("utf-8"), mode=0o600)
