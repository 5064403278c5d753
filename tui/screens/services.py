"""Services: what to install (dependencies enforced and explained), region, endpoints, image."""

from __future__ import annotations

import re
from pathlib import Path

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.screen import Screen
from textual.widgets import Button, Checkbox, Footer, Header, Label, Select, SelectionList, Static
from textual.widgets.selection_list import Selection

from ..tasks import profile as pr
from ..tasks.services import REGISTRY
from .common import Choices, Responsive, Field, Tick, breadcrumb

TITLES = {s.id: s.title for s in REGISTRY}
ROLES = {s.id: s.role for s in REGISTRY}


def requires(svc: str) -> set[str]:
    """Everything ``svc`` needs, directly or through another service."""
    out: set[str] = set()
    todo = list(pr.DEPENDS.get(svc, ()))
    while todo:
        dep = todo.pop()
        if dep not in out:
            out.add(dep)
            todo += pr.DEPENDS.get(dep, ())
    return out


def dependents(svc: str) -> set[str]:
    return {s for s in pr.SERVICES if svc in requires(s)}


def names(services) -> str:
    items = [TITLES[s] for s in pr.SERVICES if s in services]
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def toggle(selected: set[str], svc: str, on: bool) -> tuple[set[str], str]:
    """The selection after turning ``svc`` on/off, and the explanation of what else changed."""
    selected = set(selected)
    if on:
        add = requires(svc) - selected
        selected |= {svc} | add
        msg = f"{TITLES[svc]} needs {names(add)}: turned on too." if add else ""
    else:
        drop = dependents(svc) & selected
        selected -= {svc} | drop
        msg = (f"{names(drop)} turned off too: {'it needs' if len(drop) == 1 else 'they need'} "
               f"{TITLES[svc]}." if drop else "")
    return selected, msg


LABEL_WIDTH = 70  # what a row of the list shows on an 80-column terminal


def label(svc: str) -> Text:
    """Its title, role and what it needs; a list too long for 80 columns names only the
    services that bring the rest (Nova: Glance, Placement and Neutron)."""
    t = Text.assemble((TITLES[svc], "bold"), f" ({ROLES[svc]})")
    deps = pr.DEPENDS.get(svc, ())
    if deps:
        needs = f"  needs {names(deps)}"
        if len(t.plain + needs) > LABEL_WIDTH:
            top = set(deps) - set().union(*(requires(d) for d in deps))
            needs = f"  needs {names(top)} (and their needs)"
        t.append(needs, style="dim")
    return t


def check_region(v: str) -> str | None:
    return None if pr.REGION_RE.match(v) else "letters, digits, '.', '_' and '-' (e.g. RegionOne)"


def check_endpoint(v: str) -> str | None:
    if v and not pr.valid_host(v):
        return f"'{v}' is not a host name or IP address"
    return None


class ServicesScreen(Responsive, Screen):
    SUB_TITLE = "Services"
    BINDINGS = [
        Binding("escape", "back", "Back"),
        Binding("ctrl+n", "next", "Next"),
        Binding("ctrl+o", "browse", "Browse"),
    ]

    def compose(self) -> ComposeResult:
        st = self.app.state
        o, img = st.profile.openstack, st.profile.image
        yield Header()
        with VerticalScroll(id="services", classes="form"):
            yield Static(breadcrumb("services"), classes="crumbs")
            yield Choices(
                *[Selection(label(s), s, s in o.services) for s in pr.SERVICES],
                id="service-list", compact=True)
            yield Static("", id="deps-note", classes="note")
            with Horizontal(classes="row"):
                yield Label("Region", classes="label")
                yield Field(o.region, id="region", compact=True, classes="short")
                yield Tick("demo project and user", value=o.demo, id="demo", compact=True)
            yield Static("", id="region-error", classes="error")
            with Horizontal(classes="row"):
                yield Label("Endpoint host", classes="label")
                yield Field(o.endpoint_host or "", id="endpoint", compact=True,
                            placeholder="same as the host address")
            yield Static("", id="endpoint-error", classes="error")
            with Horizontal(classes="row"):
                yield Label("Image", classes="label")
                yield Tick("upload an image to Glance", value=img.upload,
                               id="image-upload", compact=True)
                yield Static(Text("untick: no image, the image phase is skipped",
                                  style="dim"), id="image-off-note")
            with Horizontal(classes="row image-row"):
                yield Label("Image name", classes="label")
                yield Field(img.name, id="image-name", compact=True, classes="short")
                yield Label("Format", classes="label2")
                yield Select([(f, f) for f in pr.DISK_FORMATS], value=img.disk_format,
                             allow_blank=False, id="disk-format", compact=True)
            with Horizontal(classes="row image-row"):
                yield Label("Image file", classes="label")
                yield Field(img.file or "", id="image-file", compact=True,
                            placeholder="a local file to upload (ctrl+o)")
                yield Button("Browse", id="browse", compact=True)
            with Horizontal(classes="row image-row"):
                yield Label("or image URL", classes="label")
                yield Field(img.url or ("" if img.file else pr.DEFAULT_IMAGE_URL),
                            id="image-url", compact=True,
                            placeholder="https://... (this machine downloads it)")
            yield Static("", id="image-error", classes="error")
            yield Static(Text(f"Suitable: {pr.SUITABLE_IMAGE}. The default URL is CirrOS.",
                              style="dim"), id="image-note", classes="hint image-row")
            with Horizontal(classes="buttons"):
                yield Button("Back (esc)", id="back", compact=True)
                yield Button("Next (ctrl+n)", id="next", variant="primary", compact=True)
        yield Footer(compact=True)

    def on_mount(self) -> None:
        for s in self.query(".error"):
            s.display = False
        self.update_enabled()
        self.query_one("#service-list").focus()

    # -- dependencies -----------------------------------------------------------------
    @property
    def selected(self) -> set[str]:
        return set(self.query_one("#service-list", SelectionList).selected)

    @on(SelectionList.SelectionToggled)
    def toggled(self, event: SelectionList.SelectionToggled) -> None:
        sl = self.query_one("#service-list", SelectionList)
        svc = event.selection.value
        now_on = svc in sl.selected
        before = set(sl.selected) - {svc} if now_on else set(sl.selected) | {svc}
        after, msg = toggle(before, svc, now_on)
        for s in pr.SERVICES:
            if s in after and s not in sl.selected:
                sl.select(s)
            elif s not in after and s in sl.selected:
                sl.deselect(s)
        self.query_one("#deps-note", Static).update(Text(msg, style="yellow") if msg else "")
        self.update_enabled(after)

    @property
    def upload(self) -> bool:
        return self.query_one("#image-upload", Checkbox).value

    def update_enabled(self, selected: set[str] | None = None) -> None:
        selected = self.selected if selected is None else selected
        glance = "glance" in selected
        self.query_one("#image-upload", Checkbox).disabled = not glance
        for row in self.query(".image-row"):
            row.disabled = not (glance and self.upload)
        self.query_one("#demo", Checkbox).disabled = "keystone" not in selected
        if not (glance and self.upload):
            self.query_one("#image-error").display = False

    @on(Checkbox.Changed, "#image-upload")
    def upload_changed(self) -> None:
        self.update_enabled()
        self.show_errors()

    # -- checks ------------------------------------------------------------------------
    def value(self, fid: str) -> str:
        return self.query_one(f"#{fid}", Field).value.strip()

    def image_url(self) -> str:
        """The URL field, except the untouched default when a file is given (the file wins)."""
        url = self.value("image-url")
        return "" if url == pr.DEFAULT_IMAGE_URL and self.value("image-file") else url

    def image_problem(self) -> str | None:
        if "glance" not in self.selected or not self.upload:
            return None
        f, u = self.value("image-file"), self.image_url()
        if not self.value("image-name"):
            return "give the image a name"
        if f and u:
            return "give either an image file or a URL, not both"
        if not f and not u:
            return ("choose an image file (ctrl+o) or give its URL; or untick 'upload an "
                    "image' to install without one")
        if f and not Path(f).expanduser().is_file():
            return f"image file {f} does not exist"
        if u and not re.match(r"^(https?|file)://", u):
            return f"'{u}' is not an http(s) URL"
        return None

    def checks(self) -> dict[str, str | None]:
        return {"region": check_region(self.value("region")),
                "endpoint": check_endpoint(self.value("endpoint")),
                "image": self.image_problem()}

    def show_errors(self, everything: bool = False) -> dict[str, str | None]:
        if everything:
            self.tried = True
        found = self.checks()
        if not getattr(self, "tried", False):
            found["image"] = None  # not before the first Next: an empty new form is no error
        for key, why in found.items():
            err = self.query_one(f"#{key}-error", Static)
            err.update(Text(f"  {why}") if why else "")
            err.display = bool(why)
        for fid in ("region", "endpoint"):
            self.query_one(f"#{fid}", Field).set_class(bool(found[fid]), "-invalid")
        return found

    @on(Field.Changed)
    def changed(self, event: Field.Changed) -> None:
        url = self.query_one("#image-url", Field)
        if event.input.id == "image-file" and event.value.strip() \
                and url.value.strip() == pr.DEFAULT_IMAGE_URL:
            url.value = ""  # a file given: it replaces the default URL (no "not both")
        self.show_errors()

    def store(self) -> list[str]:
        st = self.app.state
        o, img = st.profile.openstack, st.profile.image
        sel = self.selected
        o.services = [s for s in pr.SERVICES if s in sel]
        if check_region(self.value("region")) is None:
            o.region = self.value("region")
        o.endpoint_host = self.value("endpoint") or None
        o.demo = self.query_one("#demo", Checkbox).value
        img.upload = self.upload
        img.name = self.value("image-name")
        img.file = self.value("image-file") or None
        img.url = self.image_url() or None
        fmt = self.query_one("#disk-format", Select).value
        if isinstance(fmt, str):
            img.disk_format = fmt
        return [v for v in self.checks().values() if v]

    # -- actions -------------------------------------------------------------------------
    def action_back(self) -> None:
        self.app.go("credentials")

    def action_next(self) -> None:
        if not self.selected:
            self.notify("Choose at least one service.", severity="warning")
            return
        found = self.show_errors(everything=True)
        bad = [k for k, v in found.items() if v]
        if bad:
            focus = {"region": "#region", "endpoint": "#endpoint", "image": "#image-file"}[bad[0]]
            self.query_one(focus).focus()
            self.notify("Fix the marked fields first.", severity="warning")
            return
        self.app.go("review")

    def action_browse(self) -> None:
        from .modals import FilePickerModal

        def chosen(path: str | None) -> None:
            if path:
                self.query_one("#image-file", Field).value = path
                self.query_one("#image-url", Field).value = ""

        self.app.push_screen(FilePickerModal("Choose the image to upload",
                                             self.value("image-file") or None), chosen)

    def check_action(self, action: str, parameters) -> bool | None:
        if action == "browse" and self.is_mounted:
            return ("glance" in self.selected and self.upload) or None
        return True

    @on(Button.Pressed)
    def pressed(self, event: Button.Pressed) -> None:
        {"next": self.action_next, "back": self.action_back,
         "browse": self.action_browse}[event.button.id]()
