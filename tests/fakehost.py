"""A scripted fake host for unit tests: the transport's public methods over an in-memory host.

``FakeHost`` answers ``run`` from rules (a regular expression searched in the command, and
what to answer: an exit status and output, or a function of the host, the match and stdin),
and keeps files in a dict (``write_file`` / ``read_bytes`` / ``read_file`` / ``upload``).
A command no rule answers fails the test (``UnscriptedCommand``), so a test sees every
command the code under test sends.  ``commands`` and ``writes`` record what happened;
``mark()`` and ``since()`` give what happened after a point (e.g. during a re-run).

``systemd()`` adds rules for a minimal systemd (is-active / is-enabled / enable / start /
restart / stop) over ``units``.  ``ctx(profile)`` makes an engine Context on this host.
"""

from __future__ import annotations

import re
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from tui.tasks.engine import Context, RunState
from tui.tasks.redact import Redactor
from tui.tasks.transport import Result


class UnscriptedCommand(AssertionError):
    """The code under test sent a command no rule of the fake host answers."""


Answer = tuple[int, str] | Callable[["FakeHost", re.Match, bytes | None], tuple[int, str]]


@dataclass
class Rule:
    pattern: re.Pattern
    answer: Answer
    uses: int = 0


@dataclass
class Unit:
    active: bool = False
    enabled: bool = False
    starts: int = 0
    restarts: int = 0


@dataclass
class FakeHost:
    files: dict[str, bytes] = field(default_factory=dict)
    modes: dict[str, tuple[int, str, str | None]] = field(default_factory=dict)
    units: dict[str, Unit] = field(default_factory=dict)
    rules: list[Rule] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)
    writes: list[str] = field(default_factory=list)
    connected: bool = True
    sudo_mode: str = "root"

    # -- scripting ------------------------------------------------------------------
    def on(self, pattern: str, answer: Answer = (0, "")) -> "FakeHost":
        """Answer commands matching ``pattern`` (re.search); later rules win."""
        self.rules.insert(0, Rule(re.compile(pattern), answer))
        return self

    def put(self, path: str, text: str | bytes) -> "FakeHost":
        """A file already on the host (not recorded as a write)."""
        self.files[path] = text.encode() if isinstance(text, str) else text
        return self

    def systemd(self, *units: str, active: bool = False, enabled: bool = False) -> "FakeHost":
        for name in units:
            self.units[name] = Unit(active=active, enabled=enabled)
        self.on(r"^systemctl (is-active|is-enabled) -q (\S+)(?: && systemctl (is-active|is-enabled) "
                r"-q (\S+))?$", _systemctl_query)
        self.on(r"^(?:date \+%s; )?systemctl enable -q (\S+) 2>&1; systemctl (start|restart) (\S+) 2>&1$",
                _systemctl_enable_and)
        self.on(r"^systemctl (start|restart|stop) (\S+)$", _systemctl_action)
        # services/units.stays_up's probe: the state, then whether the unit's port answers
        self.on(r"^systemctl is-active (\S+) 2>/dev/null; (timeout 3 bash .*/dev/tcp/)?",
                _systemctl_probe)
        return self

    def mark(self) -> tuple[int, int]:
        return len(self.commands), len(self.writes)

    def since(self, mark: tuple[int, int]) -> tuple[list[str], list[str]]:
        return self.commands[mark[0]:], self.writes[mark[1]:]

    def ctx(self, profile, *, platform: str = "debian-13", secrets=None,
            state_path: Path | None = None) -> Context:
        redact = Redactor()
        state = RunState(state_path or Path(tempfile.mkdtemp(prefix="fakehost-")) / "state.json",
                         redact)
        state.facts["platform"] = platform
        return Context(self, profile, secrets, redact, state)

    # -- the transport's public interface ---------------------------------------------
    def connect(self) -> "FakeHost":
        self.connected = True
        return self

    def close(self) -> None:
        self.connected = False

    def reconnect(self, deadline: float = 60.0) -> None:
        self.connected = True

    def is_root(self) -> bool:
        return self.sudo_mode == "root"

    def run(self, command: str, *, stdin: str | bytes | None = None,
            secrets: dict[str, str] | None = None, sudo: bool = True,
            timeout: float | None = 600, on_line: Callable[[str], None] | None = None,
            check: bool = True, cancel: threading.Event | None = None) -> Result:
        self.commands.append(command)
        data = stdin.encode() if isinstance(stdin, str) else stdin
        for rule in self.rules:
            m = rule.pattern.search(command)
            if m is None:
                continue
            rule.uses += 1
            status, out = rule.answer(self, m, data) if callable(rule.answer) else rule.answer
            lines = out.splitlines()
            if on_line is not None:
                for ln in lines:
                    on_line(ln)
            result = Result(status, out, "", lines, out.encode())
            if check and status != 0:
                from tui.tasks.transport import CommandFailed

                raise CommandFailed(command[:60], status, lines[-10:])
            return result
        raise UnscriptedCommand(f"no rule answers: {command!r}")

    def write_file(self, path: str, content: str | bytes, *, mode: int = 0o644,
                   owner: str = "root", group: str | None = None) -> None:
        self.files[path] = content.encode() if isinstance(content, str) else content
        self.modes[path] = (mode, owner, group)
        self.writes.append(path)

    def read_bytes(self, path: str, timeout: float = 60) -> bytes | None:
        return self.files.get(path)

    def read_file(self, path: str) -> str | None:
        data = self.read_bytes(path)
        return None if data is None else data.decode("utf-8", "replace")

    def upload(self, local: str, remote: str, *, mode: int = 0o644, owner: str = "root",
               group: str | None = None, progress=None) -> None:
        self.write_file(remote, Path(local).read_bytes(), mode=mode, owner=owner, group=group)


def _unit(host: FakeHost, name: str) -> Unit:
    return host.units.setdefault(name, Unit())


def _systemctl_query(host: FakeHost, m: re.Match, _stdin) -> tuple[int, str]:
    pairs = [(m.group(1), m.group(2))] + ([(m.group(3), m.group(4))] if m.group(3) else [])
    for what, name in pairs:
        unit = _unit(host, name)
        if not (unit.active if what == "is-active" else unit.enabled):
            return 3, ""
    return 0, ""


def _systemctl_probe(host: FakeHost, m: re.Match, _stdin) -> tuple[int, str]:
    """An active unit listens on its port; an inactive one answers nothing."""
    unit = _unit(host, m.group(1).strip("'"))
    if not unit.active:
        return 0, "inactive\n"
    return 0, "active\n" + ("port-answers\n" if m.group(2) else "")


def _systemctl_enable_and(host: FakeHost, m: re.Match, _stdin) -> tuple[int, str]:
    unit = _unit(host, m.group(1))
    unit.enabled = True
    return _systemctl_action(host, re.match(r"(\S+) (\S+)", f"{m.group(2)} {m.group(3)}"), None)


def _systemctl_action(host: FakeHost, m: re.Match, _stdin) -> tuple[int, str]:
    unit = _unit(host, m.group(2))
    if m.group(1) == "stop":
        unit.active = False
        return 0, ""
    if m.group(1) == "restart" or not unit.active:
        unit.starts += 1
    unit.restarts += m.group(1) == "restart"
    unit.active = True
    return 0, ""


def run_plan(plan, ctx) -> dict:
    """Run ``plan`` on ``ctx`` with the real engine: {step id: its last Status}."""
    from tui.tasks.engine import Engine

    seen: dict = {}

    def listen(ev):
        if type(ev).__name__ == "StepFinished":
            seen[ev.step_id] = ev.status

    Engine(plan, ctx, listeners=[listen]).run()
    return seen
