"""Start: saved profiles (load, duplicate, delete), a new session, resume an unfinished run."""

from __future__ import annotations

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Button, DataTable, Footer, Header, Label, Static

from ..tasks import profile as pr
from .common import Responsive


def releases() -> Text:
    """Which OpenStack each verified distribution gets, and whether upstream maintains it."""
    from ..tasks.platforms import PLATFORMS

    t = Text("What you get: ", style="dim")
    for i, p in enumerate(x for x in PLATFORMS.values() if x.verified):
        name = p.openstack if p.openstack != p.openstack.lower() else p.openstack.title()
        t.append(" · " if i else "")
        t.append(f"{p.name}: OpenStack {name}, ")
        t.append("maintained upstream" if p.maintained else "past upstream maintenance",
                 style="green" if p.maintained else "yellow")
    return t


class ProfileTable(DataTable):
    BINDINGS = [Binding("enter", "select_cursor", "Load")]

    def action_select_cursor(self) -> None:
        if not self.row_count:  # no profile yet: enter starts a new session
            self.screen.action_new()
            return
        super().action_select_cursor()


class StartScreen(Responsive, Screen):
    SUB_TITLE = "Profiles"
    BINDINGS = [
        Binding("n", "new", "New session"),
        Binding("d", "duplicate", "Duplicate"),
        Binding("x,delete", "delete", "Delete"),
        Binding("r", "resume", "Resume"),
    ]

    def compose(self) -> ComposeResult:
        yield Header()
        with Vertical(id="start"):
            yield Static(Text.assemble(
                ("stack-tui", "bold"),
                " installs the OpenStack control plane (MariaDB, RabbitMQ, Memcached, Keystone, "
                "Glance) on one server over SSH, and checks that it works.\n",
                releases()), id="intro")
            yield Label("Saved profiles", classes="section")
            yield ProfileTable(id="profiles", cursor_type="row", zebra_stripes=True)
            yield Static("", id="profile-hint")
            with Horizontal(classes="buttons"):
                yield Button("New session (n)", id="new", variant="primary", compact=True)
                yield Button("Load (enter)", id="load", compact=True)
                yield Button("Duplicate (d)", id="duplicate", compact=True)
                yield Button("Delete (x)", id="delete", compact=True)
                yield Button("Resume (r)", id="resume", compact=True)
        yield Footer(compact=True)

    def on_mount(self) -> None:
        table = self.query_one(ProfileTable)
        table.add_columns("Profile", "Host", "Services", "Last run")
        self.refresh_profiles()
        table.focus()

    def on_screen_resume(self) -> None:
        if self.is_mounted:
            self.refresh_profiles()

    # -- data -------------------------------------------------------------------
    def refresh_profiles(self, select: str | None = None) -> None:
        table = self.query_one(ProfileTable)
        current = select or self.current_name()
        table.clear()
        self.runs: dict[str, tuple | None] = {}
        for name in pr.list_profiles():
            try:
                p = pr.load(name)
            except pr.ProfileError as exc:
                table.add_row(name, Text("broken", style="red"), Text(exc.reason[:40]), "",
                              key=name)
                self.runs[name] = None
                continue
            run = self.app.unfinished_run(p)
            self.runs[name] = run
            if run is not None:
                last = Text(f"unfinished ({run[0]} done)", style="bold yellow")
            else:
                last = self._last_run(p)
            svc = ("all five" if set(p.openstack.services) == set(pr.DEFAULT_SERVICES)
                   else ", ".join(p.openstack.services))
            table.add_row(name, f"{p.host.user}@{p.host.address}:{p.host.port}", svc, last,
                          key=name)
        names = list(self.runs)
        if current in names:
            table.move_cursor(row=names.index(current))
        self.update_hint()
        self.refresh_bindings()

    @staticmethod
    def _last_run(p: pr.Profile) -> Text:
        from ..tasks import engine

        try:
            st = engine.RunState.load(engine.state_path(p.name, p.host.address))
        except engine.StateError:
            return Text("state unreadable", style="red")
        if st.finished:
            return Text("installed", style="green")
        return Text("never", style="dim")

    def current_name(self) -> str | None:
        table = self.query_one(ProfileTable)
        if table.row_count == 0:
            return None
        try:
            key, _ = table.coordinate_to_cell_key(table.cursor_coordinate)
        except Exception:
            return None
        return key.value

    def update_hint(self) -> None:
        hint = self.query_one("#profile-hint", Static)
        name = self.current_name()
        if name is None:
            hint.update(Text("No saved profiles yet: press n to describe a server.",
                             style="italic"))
        elif self.runs.get(name):
            done, _, stopped = self.runs[name]
            hint.update(Text(f"{name}: the last install did not finish ({done} steps done"
                             + (f", stopped at {stopped}" if stopped else "")
                             + "). r: resume it", style="yellow"))
        else:
            hint.update(Text("enter: load and edit · n: new · d: duplicate · x: delete",
                             style="dim"))

    @on(DataTable.RowHighlighted)
    def highlighted(self) -> None:
        self.update_hint()
        self.refresh_bindings()

    @on(DataTable.RowSelected)
    def selected(self) -> None:
        self.action_load()

    def check_action(self, action: str, parameters) -> bool | None:
        if action in ("load", "duplicate", "delete"):
            return self.current_name() is not None or None
        if action == "resume":
            name = self.current_name()
            return bool(name and getattr(self, "runs", {}).get(name)) or None
        return True

    @on(Button.Pressed)
    def pressed(self, event: Button.Pressed) -> None:
        action = event.button.id
        if action == "new" or self.check_action(action, ()):
            getattr(self, f"action_{action}")()
        else:
            self.app.bell()

    # -- actions -------------------------------------------------------------------
    def action_new(self) -> None:
        self.app.new_session()

    def action_load(self) -> None:
        name = self.current_name()
        if name:
            self.app.open_profile(name)

    def action_resume(self) -> None:
        name = self.current_name()
        if not name or not self.runs.get(name):
            return
        try:
            prof = pr.load(name)
        except pr.ProfileError as exc:
            self.notify(str(exc), severity="error")
            return
        self.app.resume_profile(prof)

    def action_duplicate(self) -> None:
        from .modals import NameModal

        name = self.current_name()
        if not name:
            return
        existing = set(pr.list_profiles())
        n, base = 2, f"{name}-copy"
        new = base
        while new in existing:
            new, n = f"{base}{n}", n + 1

        def check(value: str) -> str | None:
            if not pr.NAME_RE.match(value):
                return "letters, digits, '.', '_' and '-' only (at most 64)"
            if value in existing:
                return f"a profile named {value} exists already"
            return None

        def done(value: str | None) -> None:
            if not value:
                return
            try:
                src = pr.load(name)
                copy = pr.from_dict(src.to_dict(with_secrets=True), name=value)
                pr.save(copy)
            except pr.ProfileError as exc:
                self.notify(str(exc), title="Not duplicated", severity="error")
                return
            self.notify(f"{name} copied to {value} (its secrets file was not copied: new "
                        "passwords are generated for the copy).", title="Duplicated")
            self.refresh_profiles(select=value)

        self.app.push_screen(NameModal("Duplicate profile", f"Name of the copy of {name}:",
                                       new, check), done)

    def action_delete(self) -> None:
        from .modals import ConfirmModal

        name = self.current_name()
        if not name:
            return

        def done(yes: bool) -> None:
            if yes:
                pr.delete(name)
                self.notify(f"Deleted profile {name} and its secrets file.")
                self.refresh_profiles()

        self.app.push_screen(ConfirmModal(
            f"Delete profile {name}?",
            f"This removes {name}.toml and its secrets file. The server itself is not touched.",
            yes="Delete", no="Keep", danger=True), done)
