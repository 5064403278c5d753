"""Dialogs: confirmations, host keys, step failures, names, files, the full log."""

from __future__ import annotations

from collections import deque
from pathlib import Path
from typing import Literal

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, DirectoryTree, Footer, Label, Log, Static

from .common import Field, Responsive


class Dialog(Responsive, ModalScreen):
    """Base: a centred box with a title; escape cancels."""

    DEFAULT_CLASSES = "dialog"
    BINDINGS = [Binding("escape", "cancel", "Cancel")]
    CANCEL_VALUE = None

    def action_cancel(self) -> None:
        self.dismiss(self.CANCEL_VALUE)


class InputDialog(Dialog):
    """A dialog with one input field: enter or OK submits, Cancel dismisses with None."""

    def _submit(self) -> None:
        raise NotImplementedError

    @on(Field.Submitted)
    def submitted(self) -> None:
        self._submit()

    @on(Button.Pressed)
    def pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "ok":
            self._submit()
        else:
            self.dismiss(None)


class ConfirmModal(Dialog):
    """Yes / No question. Dismisses with True or False."""

    BINDINGS = [Binding("y", "answer(True)", "Yes"), Binding("n", "answer(False)", "No"),
                Binding("escape", "answer(False)", "Cancel", show=False)]
    CANCEL_VALUE = False

    def __init__(self, title: str, body: str, yes: str = "Yes", no: str = "No",
                 danger: bool = False):
        super().__init__()
        self.title_text, self.body, self.yes, self.no, self.danger = title, body, yes, no, danger

    def compose(self) -> ComposeResult:
        with Vertical(classes="box"):
            yield Label(self.title_text, classes="box-title")
            yield Static(Text(self.body), classes="box-body")
            with Horizontal(classes="buttons"):
                yield Button(f"{self.yes} (y)", id="yes",
                             variant="error" if self.danger else "primary", compact=True)
                yield Button(f"{self.no} (n)", id="no", compact=True)
        yield Footer(compact=True)

    def action_answer(self, value: bool) -> None:
        self.dismiss(value)

    @on(Button.Pressed)
    def pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")


class HostKeyModal(Dialog):
    """An unknown SSH host key: Trust / Cancel. Dismisses with True (trust) or False."""

    BINDINGS = [Binding("t", "answer(True)", "Trust"), Binding("c", "answer(False)", "Cancel"),
                Binding("escape", "answer(False)", "Cancel", show=False)]
    CANCEL_VALUE = False

    def __init__(self, host: str, key_type: str, fingerprint: str, *, name: str | None = None):
        super().__init__()
        self.host, self.key_type, self.fingerprint = host, key_type, fingerprint
        self.name_ = name   # the profile's name for the host, when it has several

    def compose(self) -> ComposeResult:
        with Vertical(classes="box"):
            yield Label("Unknown SSH host key", classes="box-title")
            body = Text()
            who = f"Host {self.name_} ({self.host})" if self.name_ else self.host
            body.append(f"{who} is not known yet. It presents this key:\n\n")
            body.append(f"  {self.key_type}\n  {self.fingerprint}\n\n", style="bold")
            body.append("Compare it with the server's own: ssh-keygen -lf "
                        "/etc/ssh/ssh_host_ed25519_key.pub\nTrust it only if they match; it is "
                        "then remembered and checked on every connection.")
            yield Static(body, classes="box-body", id="fingerprint")
            with Horizontal(classes="buttons"):
                yield Button("Trust (t)", id="trust", variant="warning", compact=True)
                yield Button("Cancel (c)", id="cancel", compact=True)
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.query_one("#cancel", Button).focus()

    def action_answer(self, value: bool) -> None:
        self.dismiss(value)

    @on(Button.Pressed)
    def pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "trust")


class MessageModal(Dialog):
    """A plain explanation (what / why / what to try) with one OK button."""

    BINDINGS = [Binding("escape,enter", "cancel", "Close")]

    def __init__(self, title: str, what: str, why: str = "", hint: str = "",
                 danger: bool = False):
        super().__init__()
        self.title_text, self.what, self.why, self.hint = title, what, why, hint
        self.danger = danger

    def compose(self) -> ComposeResult:
        with Vertical(classes="box danger" if self.danger else "box"):
            yield Label(self.title_text, classes="box-title")
            body = Text()
            body.append(self.what + "\n", style="bold")
            if self.why:
                body.append(f"\nWhy: {self.why}\n")
            if self.hint:
                body.append(f"\nWhat to do: {self.hint}\n")
            yield Static(body, classes="box-body", id="message")
            with Horizontal(classes="buttons"):
                yield Button("OK (enter)", id="ok", variant="primary", compact=True)
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.query_one("#ok", Button).focus()

    @on(Button.Pressed)
    def pressed(self) -> None:
        self.dismiss(None)


def host_key_changed_modal(exc) -> MessageModal:
    """The refusal for a changed host key (HostKeyChanged from the transport)."""
    return MessageModal("Host key changed: refused", exc.what, exc.why, exc.hint, danger=True)


Decision = Literal["retry", "skip", "abort"]


class FailureModal(Dialog):
    """A failed step: what, why, what to try, the last lines; Retry / Skip / Abort."""

    BINDINGS = [
        Binding("r", "decide('retry')", "Retry"),
        Binding("s", "decide('skip')", "Skip"),
        Binding("a", "decide('abort')", "Abort"),
        Binding("l", "full_log", "Full log"),
        Binding("escape", "cancel", "Cancel", show=False),
    ]
    CANCEL_VALUE = None

    def __init__(self, step_id: str, title: str, info, tail: list[str], log_path=None):
        super().__init__()
        self.step_id, self.step_title, self.info = step_id, title, info
        self.tail = list(tail)[-12:]
        self.log_path = log_path

    def compose(self) -> ComposeResult:
        info = self.info
        with Vertical(classes="box danger wide"):
            yield Label(f"Step failed: {self.step_title}", classes="box-title")
            body = Text()
            body.append(info.what, style="bold")
            if info.why:
                body.append(f"\nWhy: {info.why}")
            if info.hint:
                body.append(f"\nTry: {info.hint}")
            yield Static(body, classes="box-body", id="error-text")
            if self.tail:
                yield Label("Last output:", classes="dim")
                log = Log(id="tail", max_lines=50)
                yield log
            with Horizontal(classes="buttons"):
                yield Button("Retry (r)", id="retry", variant="primary", compact=True)
                yield Button("Skip (s)", id="skip", variant="warning", compact=True)
                yield Button("Abort (a)", id="abort", variant="error", compact=True)
                yield Button("Full log (l)", id="log", compact=True)
        yield Footer(compact=True)

    def on_mount(self) -> None:
        if self.tail:
            self.query_one("#tail", Log).write_lines(self.tail)
        self.query_one("#retry", Button).focus()

    def action_decide(self, value: str) -> None:
        self.dismiss(value)

    def action_cancel(self) -> None:  # escape: nothing decided yet; keep asking
        self.app.bell()

    def action_full_log(self) -> None:
        self.app.push_screen(FullLogScreen(self.log_path))

    @on(Button.Pressed)
    def pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "log":
            self.action_full_log()
        else:
            self.dismiss(event.button.id)


class ResumeModal(Dialog):
    """An unfinished run exists: resume it, review first, or cancel."""

    BINDINGS = [Binding("r", "answer('resume')", "Resume"),
                Binding("v", "answer('review')", "Review first"),
                Binding("escape", "answer(None)", "Cancel")]

    def __init__(self, profile_name: str, host: str, done: int, total: int, stopped: str):
        super().__init__()
        self.profile_name, self.host = profile_name, host
        self.done, self.total, self.stopped = done, total, stopped

    def compose(self) -> ComposeResult:
        with Vertical(classes="box"):
            yield Label("Resume the unfinished install?", classes="box-title")
            body = Text()
            body.append(f"The last install of profile {self.profile_name} on {self.host} did not "
                        f"finish: {self.done} step(s) were done")
            if self.stopped:
                body.append(f"; it stopped at {self.stopped}")
            body.append(".\n\nResuming re-checks the finished steps (quick) and carries on "
                        "from there.")
            yield Static(body, classes="box-body", id="resume-text")
            with Horizontal(classes="buttons"):
                yield Button("Resume (r)", id="resume", variant="primary", compact=True)
                yield Button("Review first (v)", id="review", compact=True)
                yield Button("Cancel (esc)", id="cancel", compact=True)
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.query_one("#resume", Button).focus()

    def action_answer(self, value) -> None:
        self.dismiss(value)

    @on(Button.Pressed)
    def pressed(self, event: Button.Pressed) -> None:
        self.dismiss(None if event.button.id == "cancel" else event.button.id)


class NameModal(InputDialog):
    """Ask for a name (profile name); dismisses with the name or None."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, title: str, prompt: str, value: str = "", check=None):
        super().__init__()
        self.title_text, self.prompt, self.value, self.check = title, prompt, value, check

    def compose(self) -> ComposeResult:
        with Vertical(classes="box"):
            yield Label(self.title_text, classes="box-title")
            yield Static(Text(self.prompt), classes="box-body")
            yield Field(self.value, id="name", compact=True)
            yield Static("", id="name-error", classes="error")
            with Horizontal(classes="buttons"):
                yield Button("OK (enter)", id="ok", variant="primary", compact=True)
                yield Button("Cancel (esc)", id="cancel", compact=True)
        yield Footer(compact=True)

    def _submit(self) -> None:
        value = self.query_one("#name", Field).value.strip()
        why = self.check(value) if self.check else (None if value else "a name is needed")
        if why:
            self.query_one("#name-error", Static).update(Text(why))
            return
        self.dismiss(value)


class FilePickerModal(InputDialog):
    """Pick a file: a directory tree plus a path field. Dismisses with the path or None.

    Typing is the obvious way: the path field has the focus, Tab goes tree <-> field, and
    typing while in the tree starts a path in the field; ~ is the home directory."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]
    HINT = ("Type the path (~ is your home directory), or pick a file in the tree with enter. "
            "Tab: tree / path.")

    def __init__(self, title: str, start: str | None = None):
        super().__init__()
        self.title_text = title
        p = Path(start).expanduser() if start else Path.home()
        self.start = p if p.is_dir() else (p.parent if p.parent.is_dir() else Path.home())
        self.initial = start or ""

    def compose(self) -> ComposeResult:
        with Vertical(classes="box wide tall"):
            yield Label(self.title_text, classes="box-title")
            yield DirectoryTree(self.start, id="tree")
            yield Static(Text(self.HINT, style="dim"), id="path-hint")
            yield Field(self.initial, id="path", compact=True, select_on_focus=False,
                        placeholder="path of the file, e.g. ~/images/cirros.img (enter to choose)")
            yield Static("", id="path-error", classes="error")
            with Horizontal(classes="buttons"):
                yield Button("Choose (enter)", id="ok", variant="primary", compact=True)
                yield Button("Cancel (esc)", id="cancel", compact=True)
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.query_one("#path", Field).focus()

    def on_key(self, event) -> None:
        """A character typed in the tree starts a path in the field (space still toggles)."""
        if (self.focused is self.query_one("#tree") and event.character
                and event.is_printable and event.character != " "):
            event.stop()
            event.prevent_default()
            field = self.query_one("#path", Field)
            field.value = event.character
            field.cursor_position = len(field.value)
            field.focus()

    @on(DirectoryTree.FileSelected)
    def file_selected(self, event: DirectoryTree.FileSelected) -> None:
        self.query_one("#path", Field).value = str(event.path)
        self.query_one("#path", Field).focus()

    def problem(self, value: str) -> str | None:
        """Why ``value`` cannot be chosen, or None."""
        if not value:
            return "type the path of the image file, or pick it in the tree (enter on a file)"
        path = Path(value).expanduser()
        shown = str(path) if str(path) == value else f"{path} (from {value})"
        if path.is_dir():
            self.query_one("#tree", DirectoryTree).path = path
            return f"{shown} is a directory: the tree now shows it; choose a file in it"
        if not path.is_file():
            return f"no such file: {shown}"
        return None

    def _submit(self) -> None:
        value = self.query_one("#path", Field).value.strip()
        why = self.problem(value)
        if why:
            self.query_one("#path-error", Static).update(Text(why))
            return
        self.dismiss(value)


class FullLogScreen(Responsive, ModalScreen):
    """The run's full transcript (redacted by the engine), last lines of the log file."""

    BINDINGS = [Binding("escape,q", "close", "Close"), Binding("g", "reload", "Reload")]
    MAX_LINES = 5000

    def __init__(self, path):
        super().__init__()
        self.path = Path(path) if path else None

    def compose(self) -> ComposeResult:
        with Vertical(classes="box full"):
            yield Label(f"Full log: {self.path or 'not written yet'}", classes="box-title")
            yield Log(id="full-log", max_lines=self.MAX_LINES)
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.action_reload()
        self.query_one("#full-log", Log).focus()

    def action_reload(self) -> None:
        log = self.query_one("#full-log", Log)
        log.clear()
        if self.path is None or not self.path.exists():
            log.write_line("(no log file yet)")
            return
        with open(self.path, encoding="utf-8", errors="replace") as fh:
            tail = deque(fh, maxlen=self.MAX_LINES)
        log.write_lines(line.rstrip("\n") for line in tail)

    def action_close(self) -> None:
        self.dismiss(None)
