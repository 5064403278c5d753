"""Host: where to install and how to log in; 'Test connection' shows what the server is."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from rich.table import Table
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.screen import Screen
from textual.widgets import Button, Footer, Header, Label, RadioButton, RadioSet, Static

from ..tasks import profile as pr
from .common import Radio, Responsive, Field, ask_from_thread, breadcrumb, tildify

LEVEL_STYLE = {"ok": ("✓", "green"), "warning": ("!", "yellow"), "bad": ("✗", "red")}


def check_name(v: str) -> str | None:
    if not v:
        return "a profile name is needed (it names the saved profile)"
    if not pr.NAME_RE.match(v):
        return "letters, digits, '.', '_' and '-' only, at most 64"
    return None


def check_address(v: str) -> str | None:
    if not v:
        return "enter the server's host name or IP address"
    if not pr.valid_host(v):
        return f"'{v}' is not a host name or IP address"
    return None


def check_port(v: str) -> str | None:
    if not v.strip().isdigit():
        return "the port is a number from 1 to 65535 (SSH uses 22)"
    if not 1 <= int(v) <= 65535:
        return f"port {int(v)} is outside 1-65535"
    return None


def check_user(v: str) -> str | None:
    if not v:
        return "enter the login user (root, or a user with sudo)"
    if not pr.USER_RE.fullmatch(v):
        return f"'{v}' is not a valid user name"
    return None


def check_key_file(v: str) -> str | None:
    if not v:
        return "choose the private key file (ctrl+o to browse)"
    p = Path(v).expanduser()
    if not p.exists():
        return f"{tildify(p)} does not exist"
    if p.is_dir():
        return f"{tildify(p)} is a directory, not a key file"
    if not os.access(p, os.R_OK):
        return f"{tildify(p)} is not readable (check its permissions)"
    return None


def check_password(v: str) -> str | None:
    return None if v else "enter the SSH password (or choose a key or the agent)"


class HostScreen(Responsive, Screen):
    SUB_TITLE = "Host"
    BINDINGS = [
        Binding("escape", "back", "Back"),
        Binding("ctrl+n", "next", "Next"),
        Binding("ctrl+t", "test", "Test"),
        Binding("ctrl+o", "browse", "Browse"),
    ]

    def __init__(self):
        super().__init__()
        self.touched: set[str] = set()
        self._gone = threading.Event()

    # -- layout ---------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        st = self.app.state
        h = st.profile.host
        yield Header()
        with VerticalScroll(id="host", classes="form"):
            yield Static(breadcrumb("host"), classes="crumbs")
            yield from self.row("Profile name", Field(st.profile.name, id="name", compact=True))
            yield from self.row("Address", Field(h.address, id="address", compact=True,
                                                 placeholder="server.example.org or 192.0.2.10"))
            with Horizontal(classes="row"):
                yield Label("Port", classes="label")
                yield Field(str(h.port), id="port", compact=True, classes="short")
                yield Label("User", classes="label2")
                yield Field(h.user, id="user", compact=True, classes="short")
            yield Static("", id="port-error", classes="error")
            yield Static("", id="user-error", classes="error")
            with Horizontal(classes="row"):
                yield Label("Log in with", classes="label")
                with RadioSet(id="auth", compact=True):
                    yield Radio("key file", id="auth-key", value=st.auth == "key")
                    yield Radio("agent / default keys", id="auth-agent",
                                value=st.auth == "agent")
                    yield Radio("password", id="auth-password", value=st.auth == "password")
            with Horizontal(classes="row", id="key-row"):
                yield Label("Key file", classes="label")
                yield Field(h.key_file or "", id="key_file", compact=True,
                            placeholder="~/.ssh/id_ed25519")
                yield Button("Browse", id="browse", compact=True)
            yield Static("", id="key_file-error", classes="error")
            yield from self.row("SSH password", Field(st.secrets.get("ssh_password", ""),
                                                      id="ssh_password", password=True,
                                                      compact=True), row_id="password-row")
            yield from self.row("sudo password", Field(st.secrets.get("sudo_password", ""),
                                                       id="sudo_password", password=True,
                                                       compact=True,
                                                       placeholder="only if sudo asks for one"),
                                row_id="sudo-row")
            with Horizontal(classes="row buttons-left"):
                yield Button("Test connection (ctrl+t)", id="test", compact=True)
                yield Static("", id="test-status")
            yield Static("", id="test-result")
            with Horizontal(classes="buttons"):
                yield Button("Back (esc)", id="back", compact=True)
                yield Button("Next (ctrl+n)", id="next", variant="primary", compact=True)
        yield Footer(compact=True)

    def row(self, label: str, widget, row_id: str | None = None):
        with Horizontal(classes="row", id=row_id):
            yield Label(label, classes="label")
            yield widget
        yield Static("", id=f"{widget.id}-error", classes="error")

    def on_mount(self) -> None:
        self.update_visibility()
        for s in self.query(".error"):
            s.display = False
        if self.app.state.facts is not None:
            self.show_facts(self.app.state.facts)
        self.query_one("#address" if self.app.state.profile.name else "#name", Field).focus()

    def on_unmount(self) -> None:
        self._gone.set()

    # -- values and checks --------------------------------------------------------------
    def value(self, fid: str) -> str:
        return self.query_one(f"#{fid}", Field).value.strip()

    @property
    def auth(self) -> str:
        pressed = self.query_one("#auth", RadioSet).pressed_button
        return (pressed.id or "auth-agent").removeprefix("auth-") if pressed else "agent"

    def checks(self) -> dict[str, str | None]:
        out = {
            "name": check_name(self.value("name")),
            "address": check_address(self.value("address")),
            "port": check_port(self.value("port")),
            "user": check_user(self.value("user")),
            "key_file": None,
            "ssh_password": None,
        }
        if self.auth == "key":
            out["key_file"] = check_key_file(self.value("key_file"))
        if self.auth == "password":
            out["ssh_password"] = check_password(self.query_one("#ssh_password", Field).value)
        return out

    def show_errors(self, everything: bool = False) -> dict[str, str | None]:
        found = self.checks()
        for fid, why in found.items():
            shown = why if (everything or fid in self.touched) else None
            err = self.query_one(f"#{fid}-error", Static)
            err.update(Text(f"  {shown}") if shown else "")
            err.display = bool(shown)
            self.query_one(f"#{fid}", Field).set_class(bool(shown), "-invalid")
        return found

    @on(Field.Changed)
    def changed(self, event: Field.Changed) -> None:
        if event.input.id:
            self.touched.add(event.input.id)
        if event.input.id == "user":
            self.update_visibility()
        self.show_errors()

    @on(RadioSet.Changed)
    def auth_changed(self) -> None:
        self.update_visibility()
        self.show_errors()

    def update_visibility(self) -> None:
        auth = self.auth
        self.query_one("#key-row").display = auth == "key"
        self.query_one("#password-row").display = auth == "password"
        self.query_one("#sudo-row").display = self.value("user") not in ("root", "")
        if auth != "key":
            self.query_one("#key_file-error").display = False
        if auth != "password":
            self.query_one("#ssh_password-error").display = False
        self.refresh_bindings()

    def check_action(self, action: str, parameters) -> bool | None:
        if action == "browse":
            return self.auth == "key" or None
        if action == "test":
            return not self._testing() or None
        return True

    def _testing(self) -> bool:
        return any(w.group == "test" and w.is_running for w in self.workers)

    def store(self) -> list[str]:
        """Copy the fields into the profile; return what is still wrong."""
        st = self.app.state
        h = st.profile.host
        st.profile.name = self.value("name")
        h.address = self.value("address")
        if check_port(self.value("port")) is None:
            h.port = int(self.value("port"))
        h.user = self.value("user")
        st.auth = self.auth
        h.key_file = self.value("key_file") or None if st.auth == "key" else None
        st.set_secret("ssh_password",
                      self.query_one("#ssh_password", Field).value if st.auth == "password" else "")
        st.set_secret("sudo_password", self.query_one("#sudo_password", Field).value
                      if h.user != "root" else "")
        return [f"{k}: {v}" for k, v in self.checks().items() if v]

    # -- actions -----------------------------------------------------------------------
    def action_back(self) -> None:
        from .start import StartScreen

        self.store()
        self.app.switch_screen(StartScreen())

    def action_next(self) -> None:
        found = self.show_errors(everything=True)
        bad = [fid for fid, why in found.items() if why]
        if bad:
            self.query_one(f"#{bad[0]}", Field).focus()
            self.notify("Fix the marked fields first.", severity="warning")
            return
        self.app.go("credentials")

    def action_browse(self) -> None:
        from .modals import FilePickerModal

        def chosen(path: str | None) -> None:
            if path:
                self.query_one("#key_file", Field).value = path

        start = self.value("key_file") or str(Path.home() / ".ssh")
        self.app.push_screen(FilePickerModal("Choose the SSH private key", start), chosen)

    @on(Button.Pressed)
    def pressed(self, event: Button.Pressed) -> None:
        {"test": self.action_test, "next": self.action_next, "back": self.action_back,
         "browse": self.action_browse}[event.button.id]()

    # -- test connection -------------------------------------------------------------------
    def action_test(self) -> None:
        found = self.show_errors(everything=True)
        bad = [fid for fid in ("address", "port", "user", "key_file", "ssh_password")
               if found.get(fid)]
        if bad:
            self.query_one(f"#{bad[0]}", Field).focus()
            self.notify("Fix the marked fields first.", severity="warning")
            return
        if self._testing():
            return
        self.store()
        h = self.app.state.profile.host
        self.query_one("#test-status", Static).update(
            Text(f"Connecting to {h.user}@{h.address}:{h.port} ...", style="italic"))
        self.query_one("#test-result", Static).update("")
        self.run_test(h.address, h.port, h.user, h.key_file,
                      self.app.state.secrets.get("ssh_password"),
                      self.app.state.secrets.get("sudo_password"))
        self.refresh_bindings()

    def _confirm_host_key(self, host: str, key_type: str, fingerprint: str) -> bool:
        from .modals import HostKeyModal

        return bool(ask_from_thread(self.app, lambda: HostKeyModal(host, key_type, fingerprint),
                                    default=False, closing=self._gone))

    @work(thread=True, exclusive=True, exit_on_error=False, group="test")
    def run_test(self, address, port, user, key_file, password, sudo_password) -> None:
        from ..tasks.transport import HostKeyChanged, TransportError, UnknownHostKey
        from .hostinfo import PROBE, parse

        t = None
        try:
            t = self.app.transport_factory(
                address, port, user, key_file=key_file, password=password,
                sudo_password=sudo_password, confirm_host_key=self._confirm_host_key,
                connect_timeout=10)
            t.connect()
            r = t.run(PROBE, check=False, timeout=30)
            facts = parse(r.stdout)
            mode = t.sudo_mode or ""
            facts.sudo = {"root": f"logged in as root" if user == "root" else f"{user} is uid 0",
                          "nopasswd": f"sudo without a password for {user}",
                          "password": f"sudo with the given password for {user}"}.get(mode, "")
            result = ("ok", facts)
        except HostKeyChanged as exc:
            result = ("changed", exc)
        except UnknownHostKey as exc:
            result = ("declined", exc)
        except TransportError as exc:
            result = ("error", exc)
        except Exception as exc:  # noqa: BLE001 - shown, not raised
            result = ("error", exc)
        finally:
            if t is not None:
                try:
                    t.close()
                except Exception:
                    pass
        if not self._gone.is_set():
            try:
                self.app.call_from_thread(self.test_done, *result)
            except RuntimeError:
                pass

    def test_done(self, kind: str, payload) -> None:
        status = self.query_one("#test-status", Static)
        if kind == "ok":
            self.app.state.facts = payload
            status.update(Text("Connected.", style="green"))
            self.show_facts(payload)
        elif kind == "changed":
            from .modals import host_key_changed_modal

            status.update(Text("Refused: the host key has changed.", style="bold red"))
            self.app.push_screen(host_key_changed_modal(payload))
        elif kind == "declined":
            status.update(Text("Host key not trusted: nothing was run.", style="yellow"))
        else:
            what = getattr(payload, "what", None) or f"{type(payload).__name__}: {payload}"
            status.update(Text("Connection failed.", style="bold red"))
            body = Text(what + "\n", style="red")
            if getattr(payload, "why", ""):
                body.append(f"Why: {payload.why}\n")
            if getattr(payload, "hint", ""):
                body.append(f"Try: {payload.hint}")
            self.query_one("#test-result", Static).update(body)
        self.refresh_bindings()

    def show_facts(self, facts) -> None:
        grid = Table.grid(padding=(0, 1))
        grid.add_column(width=1)
        grid.add_column(style="bold", width=10)
        grid.add_column()
        for label, value, level in facts.rows():
            mark, style = LEVEL_STYLE[level]
            grid.add_row(Text(mark, style=style), label, Text(value))
        self.query_one("#test-result", Static).update(grid)
