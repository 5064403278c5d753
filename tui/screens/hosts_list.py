"""The Host screen's host list: one row per host of the profile (name, roles, address, the
last connection test), and what adds, removes and picks a host.  The form below the list
edits the picked host; with one host (every single-host profile) the list stays hidden and
the screen is the one-host form it always was."""

from __future__ import annotations

import re
from typing import Any

from rich.text import Text
from textual.binding import Binding
from textual.widgets import Checkbox, DataTable, RadioButton, Static

from ..tasks import profile as pr
from .common import Field

# What the list's last column says after "Test connection": (text, style).
RESULTS = {"ok": ("✓ connected", "green"), "changed": ("✗ host key changed", "red"),
           "declined": ("! key not trusted", "yellow"), "error": ("✗ failed", "red"),
           "testing": ("… testing", "italic")}
# The form's fields that hold one host (the rest are the session's: profile name, login).
HOST_FIELDS = ("host_name", "address", "port", "user", "key_file")
HOSTS_KEY = re.compile(r"hosts\[(\d+)\]")


def next_compute_name(hosts: list[pr.HostConfig]) -> str:
    """compute1, compute2, ...: the first such name no host has (case ignored)."""
    used = {h.name.lower() for h in hosts if isinstance(h.name, str)}
    n = 1
    while f"compute{n}" in used:
        n += 1
    return f"compute{n}"


def new_compute(hosts: list[pr.HostConfig], like: pr.HostConfig) -> pr.HostConfig:
    """A new compute host logging in like ``like`` (same port, user, key); no address yet."""
    return pr.HostConfig(address="", port=like.port, user=like.user, key_file=like.key_file,
                         name=next_compute_name(hosts), roles=[pr.COMPUTE])


def roles_text(roles: list[str]) -> str:
    return ", ".join(r for r in pr.ROLES if r in roles) or "no role"


def host_label(h: pr.HostConfig) -> str:
    """'compute1 (10.0.0.3)', or the name alone while it has no address."""
    return f"{h.name} ({h.address})" if h.address else h.name


def field_errors(hosts: list[pr.HostConfig], index: int) -> dict[str, str]:
    """The profile's own checks across the hosts (names and addresses each used once, one
    controller) for the host at ``index``, by form field (``name``, ``roles``, ``address``).
    A message's ``hosts[N]`` (the file's key) becomes the host's name, as the list shows it."""
    prefix = f"hosts[{index + 1}]."
    out: dict[str, str] = {}

    def name(m: re.Match) -> str:
        n = int(m.group(1)) - 1
        return hosts[n].name if 0 <= n < len(hosts) and hosts[n].name else m.group(0)

    for key, reason in pr.hosts_errors(hosts, list_form=True):
        reason = HOSTS_KEY.sub(name, reason)
        if key == "hosts":          # no controller at all: said under the roles
            out.setdefault("roles", reason)
        elif key.startswith(prefix):
            out.setdefault(key[len(prefix):], reason)
    return out


class HostList(DataTable):
    """The profile's hosts; moving the cursor picks the host the form edits."""

    BINDINGS = [Binding("a,insert", "screen.add_host", "Add host", show=False),
                Binding("x,delete", "screen.remove_host", "Remove host", show=False)]

    def on_mount(self) -> None:
        self.cursor_type = "row"
        self.zebra_stripes = False
        self.add_column("Host", key="name")
        self.add_column("Roles", key="roles")
        self.add_column("Address", key="address")
        self.add_column("Connection", key="test")

    def show(self, hosts: list[pr.HostConfig], results: dict[int, tuple[str, Any]],
             current: int) -> None:
        self.clear()
        for h in hosts:
            kind = results.get(id(h), (None, None))[0]
            text, style = RESULTS.get(kind, ("not tested", "dim"))
            # Text, never markup: what is typed into the form shows as typed.
            self.add_row(Text(h.name), Text(roles_text(h.roles)),
                         Text(h.address or "(no address)", style="" if h.address else "dim"),
                         Text(text, style=style))
        if hosts:
            self.move_cursor(row=current, animate=False)


class HostsMixin:
    """The Host screen's part that manages several hosts (mixed into HostScreen, whose
    ``@on`` handlers call ``row_highlighted`` and ``role_changed``: Textual reads the
    decorators of its own widget classes only)."""

    current: int
    results: dict[int, tuple[str, Any]]

    @property
    def hosts(self) -> list[pr.HostConfig]:
        return self.app.state.profile.hosts

    @property
    def selected(self) -> pr.HostConfig:
        return self.hosts[self.current]

    def list_shown(self) -> bool:
        """The list, host name and roles show with several hosts, or when the one host is
        not the usual controller-and-compute (left so after removing the others)."""
        hosts = self.hosts
        return len(hosts) > 1 or set(hosts[0].roles) != set(pr.ROLES)

    def refresh_hosts(self) -> None:
        shown = self.list_shown()
        table = self.query_one("#host-list", HostList)
        table.display = shown
        self.query_one("#host-name-row").display = shown
        if shown:
            table.show(self.hosts, self.results, self.current)
        self.refresh_bindings()

    def form_roles(self) -> list[str]:
        return [r for r in pr.ROLES if self.query_one(f"#role-{r}", Checkbox).value]

    def load_host(self) -> None:
        """Put the selected host into the form (no change events: nothing is 'touched')."""
        h = self.selected
        values = {"host_name": h.name, "address": h.address, "port": str(h.port),
                  "user": h.user, "key_file": h.key_file or ""}
        with self.prevent(Field.Changed, Checkbox.Changed):
            for fid, value in values.items():
                self.query_one(f"#{fid}", Field).value = value
            for r in pr.ROLES:
                self.query_one(f"#role-{r}", Checkbox).value = r in h.roles
        self.show_login(h)
        self.touched.difference_update(HOST_FIELDS)
        self.touched.discard("roles")
        self.update_visibility()
        self.show_errors()
        self.show_result()

    def show_login(self, h: pr.HostConfig) -> None:
        """'Log in with' follows the host: its key file when it has one; a host without
        one logs in by password when one is given, else with the agent."""
        if h.key_file:
            auth = "key"
        elif self.auth == "key":
            auth = "password" if self.app.state.secrets.get("ssh_password") else "agent"
        else:
            return
        self.query_one(f"#auth-{auth}", RadioButton).value = True

    def select_host(self, index: int) -> None:
        if index == self.current or not 0 <= index < len(self.hosts):
            return
        self.store()
        self.current = index
        self.load_host()
        self.refresh_hosts()

    def row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.cursor_row == event.data_table.cursor_row:   # not a stale one from a redraw
            self.select_host(event.cursor_row)

    def role_changed(self, event: Checkbox.Changed) -> None:
        """Exactly one controller: ticking it on a second host is refused, said plainly."""
        other = next((h for h in self.hosts if pr.CONTROLLER in h.roles
                      and h is not self.selected), None)
        if event.checkbox.id == f"role-{pr.CONTROLLER}" and event.value and other is not None:
            with self.prevent(Checkbox.Changed):
                event.checkbox.value = False
            why = (f"{host_label(other)} is the controller already; exactly one host is. "
                   "Untick controller there first to move the role here.")
            err = self.query_one("#roles-error", Static)
            err.update(Text(f"  {why}"))
            err.display = True
            self.notify(why, title="One controller", severity="warning")
            return
        self.touched.add("roles")
        self.store()
        self.show_errors()
        self.refresh_hosts()

    # -- add and remove -------------------------------------------------------------
    def action_add_host(self) -> None:
        self.store()
        self.hosts.append(new_compute(self.hosts, self.app.state.profile.host))
        self.current = len(self.hosts) - 1
        self.load_host()
        self.refresh_hosts()
        self.query_one("#address", Field).focus()
        self.notify(f"Added {self.selected.name} (compute). Give its address; the list "
                    "above picks the host the form edits.", title="Host added")

    def action_remove_host(self) -> None:
        from .modals import ConfirmModal

        self.store()
        h = self.selected
        if pr.CONTROLLER in h.roles:
            self.notify(f"{host_label(h)} is the controller: a profile keeps its controller. "
                        "To remove it, make another host the controller first.",
                        title="Not removed", severity="warning")
            return
        if len(self.hosts) < 2:
            return

        def answer(yes: bool | None) -> None:
            if yes and any(x is h for x in self.hosts):
                self.remove_host(h)

        self.app.push_screen(ConfirmModal(
            f"Remove host {h.name}?",
            f"{host_label(h)} leaves this profile's host list. Nothing on the host itself "
            "is changed.", yes="Remove", danger=True), answer)

    def remove_host(self, h: pr.HostConfig) -> None:
        index = next(i for i, x in enumerate(self.hosts) if x is h)
        del self.hosts[index]
        self.results.pop(id(h), None)
        ctrl = self.app.state.profile.host
        self.current = next(i for i, x in enumerate(self.hosts) if x is ctrl)
        self.load_host()
        self.refresh_hosts()
        self.notify(f"Removed {h.name} from the profile.", title="Host removed")

    def can_remove(self) -> bool:
        """Remove shows with several hosts (on the controller it says why it is refused)."""
        return len(self.hosts) > 1
