"""Review: the plan as a tree of phases and steps; a step shows what it runs and changes."""

from __future__ import annotations

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import Button, Footer, Header, Static, Tree

from .common import Responsive, breadcrumb


def step_detail(step, redact) -> Text:
    t = Text()
    t.append(step.title + "\n", style="bold")
    t.append(f"{step.id}\n\n", style="dim")
    if step.detail:
        t.append("Runs: ", style="bold")
        t.append(redact(step.detail) + "\n\n")
    if step.files:
        t.append("Changes: ", style="bold")
        t.append(", ".join(redact(f) for f in step.files) + "\n\n")
    else:
        t.append("Changes no files directly.\n\n", style="dim")
    if step.check is not None:
        t.append("Looks first: when the host already is as wanted, the step is "
                 "reported 'already done' and changes nothing.\n", style="dim")
    if step.retries:
        t.append(f"Retried automatically up to {step.retries} time(s) on passing errors.\n",
                 style="dim")
    return t


def image_choice(img) -> str:
    """One line: which image the run uploads, or that it uploads none."""
    if not img.upload:
        return "No image: Glance is installed empty (the image phase is skipped)"
    src = img.source() or ""
    if img.file:
        return f"Image {img.name}: the file {src}"
    return f"Image {img.name}: downloaded by this machine from {src}"


def host_services(prof, host) -> str:
    """What one host gets, said plainly: the controller everything selected, a compute host
    nova-compute and the Neutron agent when Nova is selected, else nothing."""
    from ..tasks import profile as pr
    from ..tasks.services import REGISTRY

    chosen = set(prof.openstack.services)
    nova = "nova" in chosen
    if pr.CONTROLLER in host.roles:
        n = sum(1 for s in REGISTRY if s.id in chosen)
        text = f"everything selected ({n} services)"
        if pr.COMPUTE in host.roles and nova:
            text += " and nova-compute"
        return text
    if nova:
        return "nova-compute and the Neutron agent"
    return "nothing: a compute host runs instances only when Nova is selected"


def where_text(prof) -> Text:
    """'What goes where': per host its roles and services, and the order they are installed in."""
    from .hosts_list import roles_text

    t = Text()
    t.append(f"\nWhat goes where ({len(prof.hosts)} hosts):", style="bold")
    width = max(len(h.name) for h in prof.hosts)
    for h in prof.hosts:
        t.append(f"\n  {h.name:<{width}}  ", style="bold")
        t.append(f"{h.address} ", style="dim")
        t.append(f"{roles_text(h.roles)}: ", style="dim italic")
        t.append(host_services(prof, h))
    t.append(f"\n{prof.host.name}'s packages first; then its services while the other hosts "
             "install theirs; then the compute hosts at once; then a test server on each "
             "compute host.", style="dim")
    return t


def phase_detail(phase) -> Text:
    t = Text()
    t.append(phase.title + "\n", style="bold")
    t.append(f"{len(phase.steps)} step(s):\n", style="dim")
    for s in phase.steps:
        t.append(f"  • {s.title}\n")
    return t


class ReviewScreen(Responsive, Screen):
    SUB_TITLE = "Review"
    BINDINGS = [
        Binding("escape", "back", "Back"),
        Binding("ctrl+n", "start", "Start install"),
    ]

    def compose(self) -> ComposeResult:
        yield Header()
        with Vertical(id="review"):
            yield Static(breadcrumb("review"), classes="crumbs")
            yield Static("", id="target")
            with Horizontal(id="review-main"):
                tree: Tree = Tree("plan", id="plan")
                tree.show_root = False
                yield tree
                with VerticalScroll(id="detail-pane"):
                    yield Static("", id="step-detail")
            with Horizontal(classes="buttons"):
                yield Button("Back (esc)", id="back", compact=True)
                yield Button("Start install (ctrl+n)", id="start", variant="success",
                             compact=True)
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.rebuild()
        self.query_one("#plan", Tree).focus()

    def on_screen_resume(self) -> None:
        if self.is_mounted:
            self.rebuild()

    def rebuild(self) -> None:
        from ..tasks.deploy import build_plan
        from ..tasks.platforms import PLATFORMS

        st = self.app.state
        prof = st.profile
        facts = st.facts
        detected = facts.platform_id if facts is not None and facts.platform_id else None
        pid = detected or (prof.openstack.platform if prof.openstack.platform != "auto"
                           else None)
        plan = build_plan(prof, pid)
        self.plan = plan
        self.redact = st.build_secrets(generate=False).redactor()
        plat = PLATFORMS[plan.platform]
        how = ("detected" if detected else "forced in the profile"
               if prof.openstack.platform != "auto" else "assumed until connected")
        n = len(plan.steps())
        target = Text()
        target.append(f"{prof.host.user}@{prof.host.address}:{prof.host.port}", style="bold")
        target.append(f"  {plat.name}, OpenStack {plat.openstack} ({how})")
        if plat.maintained:
            target.append(" · maintained upstream\n")
        else:
            target.append(" · past upstream maintenance\n", style="yellow")
        target.append(f"{n} steps in {len(plan.phases)} phases · region {prof.openstack.region}"
                      f" · endpoints on {prof.endpoint_host} · profile {prof.name}", style="dim")
        if "glance" in prof.openstack.services:
            target.append(f"\n{image_choice(prof.image)}",
                          style="dim" if prof.image.upload else "yellow")
        if len(prof.hosts) > 1:
            target.append_text(where_text(prof))
        self.query_one("#target", Static).update(target)
        tree = self.query_one("#plan", Tree)
        tree.clear()
        for phase in plan.phases:
            node = tree.root.add(Text(phase.title, style="bold"), data=phase, expand=True)
            for step in phase.steps:
                node.add_leaf(Text(step.title), data=step)
        tree.move_cursor(tree.root.children[0] if tree.root.children else None)
        first = plan.phases[0] if plan.phases else None
        self.query_one("#step-detail", Static).update(phase_detail(first) if first else "")

    @on(Tree.NodeHighlighted, "#plan")
    def highlighted(self, event: Tree.NodeHighlighted) -> None:
        data = event.node.data
        if data is None:
            return
        detail = self.query_one("#step-detail", Static)
        if hasattr(data, "steps"):
            detail.update(phase_detail(data))
        else:
            detail.update(step_detail(data, self.redact))

    def store(self) -> list[str]:
        return []

    def action_back(self) -> None:
        self.app.go("services")

    def action_start(self) -> None:
        self.app.start_run()

    @on(Button.Pressed)
    def pressed(self, event: Button.Pressed) -> None:
        {"back": self.action_back, "start": self.action_start}[event.button.id]()
