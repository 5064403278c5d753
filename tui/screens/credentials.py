"""Credentials: the passwords the install sets, masked by default, generated on request."""

from __future__ import annotations

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.screen import Screen
from textual.widgets import Button, Checkbox, Footer, Header, Label, Static

from ..tasks import secrets as sec
from .common import Responsive, Field, Tick, breadcrumb

STRENGTH_STYLE = {"strong": "green", "fair": "yellow", "weak": "red", "empty": "dim"}
# Which service a secret belongs to (for "not needed" hints).
OWNER = sec.OWNER


class CredentialsScreen(Responsive, Screen):
    SUB_TITLE = "Credentials"
    BINDINGS = [
        Binding("escape", "back", "Back"),
        Binding("ctrl+n", "next", "Next"),
        Binding("ctrl+g", "generate_all", "Generate all"),
        Binding("ctrl+r", "reveal_all", "Reveal all"),
    ]

    def __init__(self):
        super().__init__()
        self.revealed = False

    def compose(self) -> ComposeResult:
        st = self.app.state
        yield Header()
        with VerticalScroll(id="credentials", classes="form"):
            yield Static(breadcrumb("credentials"), classes="crumbs")
            yield Static(Text(
                "Passwords the install creates. Empty ones are generated when the install "
                "starts (or now: Generate). The SSH and sudo passwords are on the Host screen.",
                style="dim"), classes="note")
            for name in sec.GENERATABLE:
                with Horizontal(classes="row secret", id=f"row-{name}"):
                    yield Label(sec.DESCRIPTIONS[name], classes="label wide-label")
                    field = Field(st.secrets.get(name, ""), id=f"secret-{name}", password=True,
                                  compact=True, placeholder="(generated)")
                    field.tooltip = name
                    yield field
                    yield Button("Show", id=f"show-{name}", compact=True, classes="small")
                    yield Button("Generate", id=f"gen-{name}", compact=True, classes="small")
                    yield Static("", id=f"strength-{name}", classes="strength")
                yield Static("", id=f"error-{name}", classes="error")
            yield Tick("Save the secrets in the profile file", value=st.save_secrets,
                       id="save-secrets", compact=True)
            yield Static("", id="save-note", classes="note")
            with Horizontal(classes="buttons"):
                yield Button("Back (esc)", id="back", compact=True)
                yield Button("Generate all (ctrl+g)", id="generate-all", compact=True)
                yield Button("Next (ctrl+n)", id="next", variant="primary", compact=True)
        yield Footer(compact=True)

    def on_mount(self) -> None:
        for name in sec.GENERATABLE:
            self.update_row(name)
        self.update_note()
        shown = [n for n in sec.GENERATABLE if self.query_one(f"#row-{n}").display]
        self.field((shown or sec.GENERATABLE)[0]).focus()

    def on_screen_resume(self) -> None:
        if self.is_mounted:
            for name in sec.GENERATABLE:
                self.update_row(name)
            self.update_note()

    def load_values(self) -> None:
        """Show what the state holds (after the run generated the missing ones)."""
        st = self.app.state
        for name in sec.GENERATABLE:
            field = self.field(name)
            if field.value != st.secrets.get(name, ""):
                field.value = st.secrets.get(name, "")

    # -- rows --------------------------------------------------------------------------
    def field(self, name: str) -> Field:
        return self.query_one(f"#secret-{name}", Field)

    def update_row(self, name: str) -> None:
        value = self.field(name).value
        services = set(self.app.state.profile.openstack.services)
        needed = name in self.app.state.profile.needed_secrets()
        strength = self.query_one(f"#strength-{name}", Static)
        owner = OWNER.get(name, "")
        # A service left off has no password to ask for: its rows show once it is chosen.
        self.query_one(f"#row-{name}").display = not owner or owner in services
        if not needed:
            why = f"unused ({owner} off)" if owner and owner not in services else "unused"
            if name == "demo_password" and "keystone" in services:
                why = "unused (no demo)"
            strength.update(Text(why, style="dim"))
        else:
            s = sec.strength(value) if value else "empty"
            strength.update(Text(s if value else "to generate",
                                 style=STRENGTH_STYLE.get(s, "dim")))
        problem = sec.validate(name, value) if value else None
        err = self.query_one(f"#error-{name}", Static)
        err.update(Text(f"  {problem}") if problem else "")
        err.display = bool(problem) and self.query_one(f"#row-{name}").display
        self.field(name).set_class(bool(problem), "-invalid")

    def update_note(self) -> None:
        st = self.app.state
        if self.query_one("#save-secrets", Checkbox).value:
            text = (f"Kept in the profile ({st.profile.name}.toml, mode 0600), so one file "
                    "holds everything. Anyone with the file has the passwords.")
        else:
            text = (f"Kept apart in {st.profile.name}.secrets.toml (mode 0600) beside the "
                    "profile; the profile itself holds none.")
        self.query_one("#save-note", Static).update(Text(text, style="dim"))

    @on(Field.Changed)
    def changed(self, event: Field.Changed) -> None:
        name = (event.input.id or "").removeprefix("secret-")
        if name in sec.GENERATABLE:
            self.update_row(name)

    @on(Checkbox.Changed, "#save-secrets")
    def save_changed(self) -> None:
        self.update_note()

    @on(Button.Pressed)
    def pressed(self, event: Button.Pressed) -> None:
        bid = event.button.id or ""
        if bid.startswith("show-"):
            self.toggle_reveal(bid.removeprefix("show-"))
        elif bid.startswith("gen-"):
            name = bid.removeprefix("gen-")
            self.field(name).value = sec.generate()
            self.notify(f"New {sec.DESCRIPTIONS[name]} password generated.", timeout=3)
        else:
            {"next": self.action_next, "back": self.action_back,
             "generate-all": self.action_generate_all}[bid]()

    def toggle_reveal(self, name: str) -> None:
        field = self.field(name)
        field.password = not field.password
        self.query_one(f"#show-{name}", Button).label = "Hide" if not field.password else "Show"

    # -- actions -----------------------------------------------------------------------
    def action_reveal_all(self) -> None:
        self.revealed = not self.revealed
        for name in sec.GENERATABLE:
            self.field(name).password = not self.revealed
            self.query_one(f"#show-{name}", Button).label = "Hide" if self.revealed else "Show"

    def action_generate_all(self) -> None:
        made = 0
        for name in sec.GENERATABLE:
            if self.query_one(f"#row-{name}").display and not self.field(name).value:
                self.field(name).value = sec.generate()
                made += 1
        if made:
            self.notify(f"{made} password(s) generated; the ones already set were kept "
                        "(Generate on a row replaces one).", timeout=4)
        else:
            self.notify("Every password is already set; Generate on a row replaces one.",
                        timeout=4)

    def store(self) -> list[str]:
        st = self.app.state
        errors = []
        for name in sec.GENERATABLE:
            value = self.field(name).value
            st.set_secret(name, value)
            problem = sec.validate(name, value) if value else None
            if problem:
                errors.append(problem)
        st.save_secrets = self.query_one("#save-secrets", Checkbox).value
        return errors

    def action_back(self) -> None:
        self.app.go("host")

    def action_next(self) -> None:
        bad = [n for n in sec.GENERATABLE
               if self.field(n).value and sec.validate(n, self.field(n).value)]
        if bad:
            self.field(bad[0]).focus()
            self.notify("Fix the marked passwords first.", severity="warning")
            return
        self.app.go("services")
