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
from textual.widgets import (Button, Checkbox, DataTable, Footer, Header, Label, RadioButton,
                             RadioSet, Static)

from ..tasks import profile as pr
from .common import Radio, Responsive, Field, Tick, ask_from_thread, breadcrumb, tildify
from .hosts_list import HostList, HostsMixin, field_errors

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


class HostScreen(HostsMixin, Responsive, Screen):
    SUB_TITLE = "Host"
    BINDINGS = [
        Binding("escape", "back", "Back"),
        Binding("ctrl+n", "next", "Next"),
        Binding("ctrl+t", "test", "Test"),
        # its button says the key; in the footer it would push Quit off an 80-column line
        Binding("ctrl+o", "browse", "Browse", show=False),
        Binding("ctrl+b", "add_host", "Add host", tooltip="Add a compute host to the profile"),
        Binding("ctrl+r", "remove_host", "Remove host"),
    ]

    def __init__(self):
        super().__init__()
        self.touched: set[str] = set()
        self._gone = threading.Event()
        self.current = 0    # the host the form edits: its index in the profile's hosts
        self.results: dict = {}   # id(host) -> (kind, payload) of its last connection test

    # -- layout ---------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        st = self.app.state
        h = st.profile.host
        self.current = next(i for i, x in enumerate(st.profile.hosts) if x is h)
        if st.facts is not None:
            self.results[id(h)] = ("ok", st.facts)
        yield Header()
        with VerticalScroll(id="host", classes="form"):
            yield Static(breadcrumb("host"), classes="crumbs")
            yield from self.row("Profile name", Field(st.profile.name, id="name", compact=True))
            yield from self.host_rows(h)
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
                yield Button("Browse (ctrl+o)", id="browse", compact=True)
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

    def host_rows(self, h: pr.HostConfig) -> ComposeResult:
        """The host list, then the picked host's name and roles (hidden with one host)."""
        yield HostList(id="host-list")
        with Horizontal(classes="row", id="host-name-row"):
            yield Label("Host name", classes="label")
            yield Field(h.name, id="host_name", compact=True, classes="short")
            yield Label("Roles", classes="label2")
            for role in pr.ROLES:
                yield Tick(role, role in h.roles, id=f"role-{role}", compact=True,
                           classes="role")
        yield Static("", id="host_name-error", classes="error")
        yield Static("", id="roles-error", classes="error")

    def row(self, label: str, widget, row_id: str | None = None):
        with Horizontal(classes="row", id=row_id):
            yield Label(label, classes="label")
            yield widget
        yield Static("", id=f"{widget.id}-error", classes="error")

    def on_mount(self) -> None:
        self.update_visibility()
        for s in self.query(".error"):
            s.display = False
        self.refresh_hosts()
        self.show_result()
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

    def form_host(self) -> pr.HostConfig:
        """The selected host as the form shows it."""
        port = self.value("port")
        return pr.HostConfig(address=self.value("address"), user=self.value("user"),
                             port=int(port) if check_port(port) is None else 22,
                             key_file=self.value("key_file") or None,
                             name=self.value("host_name"), roles=self.form_roles())

    def checks(self) -> dict[str, str | None]:
        hosts = list(self.hosts)
        hosts[self.current] = self.form_host()
        across = field_errors(hosts, self.current)   # the profile's rules across the hosts
        out = {
            "name": check_name(self.value("name")),
            "host_name": across.get("name"),
            "roles": across.get("roles"),
            "address": check_address(self.value("address")) or across.get("address"),
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
            if fid != "roles":
                self.query_one(f"#{fid}", Field).set_class(bool(shown), "-invalid")
        return found

    def focus_field(self, fid: str) -> None:
        self.query_one("#role-controller" if fid == "roles" else f"#{fid}").focus()

    @on(Field.Changed)
    def changed(self, event: Field.Changed) -> None:
        if event.input.id:
            self.touched.add(event.input.id)
        if event.input.id == "user":
            self.update_visibility()
        self.show_errors()
        if event.input.id in ("host_name", "address") and self.list_shown():
            self.store()
            self.refresh_hosts()

    @on(DataTable.RowHighlighted, "#host-list")
    def _host_picked(self, event: DataTable.RowHighlighted) -> None:
        self.row_highlighted(event)

    @on(Checkbox.Changed, ".role")
    def _role_ticked(self, event: Checkbox.Changed) -> None:
        self.role_changed(event)

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
        if action == "remove_host":
            return self.can_remove()
        return True

    def _testing(self) -> bool:
        return any(w.group == "test" and w.is_running for w in self.workers)

    def store(self) -> list[str]:
        """Copy the fields into the profile; return what is still wrong."""
        st = self.app.state
        h = self.selected
        st.profile.name = self.value("name")
        h.name = self.value("host_name")
        h.roles = self.form_roles()
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
        if not bad:
            self.store()
            other = next((i for i, _ in pr.hosts_errors(self.hosts, list_form=True)), None)
            if other is not None and other.startswith("hosts["):   # another host's problem
                self.select_host(int(other[6:other.index("]")]) - 1)
                found = self.show_errors(everything=True)
                bad = [fid for fid, why in found.items() if why]
        if bad:
            self.focus_field(bad[0])
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
            self.focus_field(bad[0])
            self.notify("Fix the marked fields first.", severity="warning")
            return
        if self._testing():
            return
        self.store()
        h = self.selected
        self.results[id(h)] = ("testing", None)
        self.refresh_hosts()
        self.query_one("#test-status", Static).update(
            Text(f"Connecting to {h.user}@{h.address}:{h.port} ...", style="italic"))
        self.query_one("#test-result", Static).update("")
        # With several hosts the host key question names the host it is about.
        self.run_test(h, h.name if len(self.hosts) > 1 else None,
                      self.app.state.secrets.get("ssh_password"),
                      self.app.state.secrets.get("sudo_password"))
        self.refresh_bindings()

    def _confirm_host_key(self, host: str, key_type: str, fingerprint: str,
                          name: str | None = None) -> bool:
        from .modals import HostKeyModal

        return bool(ask_from_thread(
            self.app, lambda: HostKeyModal(host, key_type, fingerprint, name=name),
            default=False, closing=self._gone))

    @work(thread=True, exclusive=True, exit_on_error=False, group="test")
    def run_test(self, h: pr.HostConfig, name: str | None, password, sudo_password) -> None:
        from ..tasks.transport import HostKeyChanged, TransportError, UnknownHostKey
        from .hostinfo import PROBE, parse

        address, port, user, key_file = h.address, h.port, h.user, h.key_file

        def confirm(host: str, key_type: str, fingerprint: str) -> bool:
            return self._confirm_host_key(host, key_type, fingerprint, name)

        t = None
        try:
            t = self.app.transport_factory(
                address, port, user, key_file=key_file, password=password,
                sudo_password=sudo_password, confirm_host_key=confirm,
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
                self.app.call_from_thread(self.test_done, h, *result)
            except RuntimeError:
                pass

    def test_done(self, h: pr.HostConfig, kind: str, payload) -> None:
        self.results[id(h)] = (kind, payload)
        if kind == "ok" and h is self.app.state.profile.host:
            self.app.state.facts = payload   # the controller's: the plan's platform
        self.refresh_hosts()
        self.refresh_bindings()
        if h is self.selected:
            self.show_result()
        if kind == "changed":
            from .modals import host_key_changed_modal

            self.app.push_screen(host_key_changed_modal(payload))

    def show_result(self) -> None:
        """The selected host's last connection test, or nothing when it has none."""
        kind, payload = self.results.get(id(self.selected), (None, None))
        status = self.query_one("#test-status", Static)
        self.query_one("#test-result", Static).update("")
        if kind is None:
            status.update("")
        elif kind == "testing":
            h = self.selected
            status.update(Text(f"Connecting to {h.user}@{h.address}:{h.port} ...",
                               style="italic"))
        elif kind == "ok":
            status.update(Text("Connected.", style="green"))
            self.show_facts(payload)
        elif kind == "changed":
            status.update(Text("Refused: the host key has changed.", style="bold red"))
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

    def show_facts(self, facts) -> None:
        grid = Table.grid(padding=(0, 1))
        grid.add_column(width=1)
        grid.add_column(style="bold", width=10)
        grid.add_column()
        compute = ("nova" in self.app.state.profile.openstack.services
                   and "compute" in self.selected.roles)
        for label, value, level in facts.rows(compute=compute):
            mark, style = LEVEL_STYLE[level]
            grid.add_row(Text(mark, style=style), label, Text(value))
        self.query_one("#test-result", Static).update(grid)
