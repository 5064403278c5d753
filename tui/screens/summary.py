"""Summary: what was installed, endpoints, where the credentials files are, checks, times."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Header, Static

from .common import Responsive, fmt_duration, tildify
from ..tasks.engine import Status
from ..tasks.redact import strip_controls
from ..tasks.services import summary_lines
from ..tasks.services.common import url_host
from .services import TITLES


def image_outcome(prof, statuses: dict[str, Status]) -> Text:
    """'; image cirros', or why there is none: not chosen, or its upload was skipped."""
    if not prof.image.upload:
        return Text("; no image (none chosen: Glance is empty)")
    status = statuses.get("image.upload")
    if status in (Status.SKIPPED, Status.FAILED, Status.PENDING):
        why = "not run" if status == Status.PENDING else Status(status).value
        return Text.assemble("; ", (f"image {prof.image.name} not uploaded ({why})",
                                    "bold yellow"))
    return Text(f"; image {prof.image.name}")


def head_text(r) -> Text:
    """The outcome line: installed and verified, with skipped steps, or not complete."""
    prof, c = r.profile, r.counts
    head = Text()
    if r.ok:
        head.append("✓ Installed and verified", style="bold green")
    elif not r.aborted and c and not c.get("failed") and c.get("skipped"):
        head.append("! Installed, with skipped steps (below)", style="bold yellow")
    else:
        head.append("✗ Not complete", style="bold red")
    head.append(f" on {prof.host.user}@{prof.host.address}")
    if r.platform:
        from ..tasks.platforms import PLATFORMS

        plat = PLATFORMS.get(r.platform)
        head.append(f" · {plat.name if plat else r.platform}")
    head.append(f" · {fmt_duration(r.duration)}")
    if c:
        head.append(f"\n{c.get('done', 0)} done, {c.get('already done', 0)} already "
                    f"done, {c.get('skipped', 0)} skipped, {c.get('failed', 0)} failed",
                    style="dim")
    return head


def installed_text(r) -> Text:
    prof = r.profile
    services = ", ".join(TITLES[s] for s in prof.openstack.services)
    installed = Text.assemble(services, f"; region {prof.openstack.region}")
    if "keystone" in prof.openstack.services:
        installed.append("; demo project " + ("yes" if prof.openstack.demo else "no"))
    if "glance" in prof.openstack.services:
        installed.append_text(image_outcome(prof, r.statuses))
    return installed


def _grid() -> Table:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", width=10)
    grid.add_column()
    return grid


def endpoints_table(prof, facts=None) -> Table:
    """The APIs' URLs, then the endpoint lines of the services' summary hooks."""
    ep = url_host(prof.endpoint_host)
    endpoints = _grid()
    if "keystone" in prof.openstack.services:
        endpoints.add_row("Identity", f"http://{ep}:5000/v3")
    if "glance" in prof.openstack.services:
        endpoints.add_row("Image", f"http://{ep}:9292")
    for line in summary_lines(prof, facts):
        if line.endpoint:
            endpoints.add_row(line.label, line.text)
    return endpoints


def cloud_table(prof, facts) -> Table | None:
    """The services' other summary lines (virt_type, the networks left for the user), or
    None when there are none."""
    lines = [line for line in summary_lines(prof, facts) if not line.endpoint]
    if not lines:
        return None
    grid = _grid()
    for line in lines:
        grid.add_row(line.label, line.text)
    return grid


def files_text(r) -> Text:
    """Where the openrc files and clouds.yaml were written (locally and on the host)."""
    prof = r.profile
    local = tildify(r.facts["local_files"]) if r.facts.get("local_files") else None
    files = Text()
    if not local:
        files.append("not written (the finish phase did not run)", style="yellow")
        return files
    local = strip_controls(local)
    names = ["admin-openrc.sh"]
    if prof.openstack.demo:
        names.append("demo-openrc.sh")
    names.append("clouds.yaml")
    files.append(f"{local}/\n", style="bold")
    files.append("  " + ", ".join(names) + " (mode 0600)\n")
    files.append("  on the host too: "
                 + ", ".join(f"~/{n}" for n in names if n.endswith(".sh")) + "\n")
    files.append(f"  try: source {local}/admin-openrc.sh; openstack image list", style="dim")
    return files


def checks_table(r) -> Table:
    """The recorded verification: remote text (an error, an image name) without controls."""
    checks = Table.grid(padding=(0, 1))
    checks.add_column(width=1)
    checks.add_column()
    checks.add_column(style="dim")
    results = r.facts.get("verification") or []
    for item in results:
        what, ok, detail = (list(item) + ["", False, ""])[:3]
        checks.add_row(Text("✓", style="green") if ok else Text("✗", style="bold red"),
                       Text(strip_controls(str(what))), Text(strip_controls(str(detail))))
    if not results:
        checks.add_row("", Text("no verification results", style="yellow"), "")
    return checks


def times_table(r) -> Table:
    times = Table.grid(padding=(0, 1))
    times.add_column()
    times.add_column(justify="right", width=7)
    times.add_column(style="dim")
    for title, secs, outcome in r.phases:
        times.add_row(title, fmt_duration(secs), "" if outcome == "done" else outcome)
    return times


class SummaryScreen(Responsive, Screen):
    SUB_TITLE = "Summary"
    BINDINGS = [
        Binding("n", "new", "New session"),
        Binding("p", "profiles", "Profiles"),
        Binding("l", "full_log", "Full log"),
        Binding("t", "tempest", "Run Tempest"),
    ]

    def __init__(self, report):
        super().__init__()
        self.report = report
        self.tempest_running = False
        self.tempest_result = None

    def compose(self) -> ComposeResult:
        r = self.report
        prof = r.profile
        yield Header()
        with VerticalScroll(id="summary"):
            yield Static(head_text(r), id="summary-head")
            yield Static(Text("Installed", style="bold underline"), classes="summary-title")
            yield Static(installed_text(r), classes="summary-block")
            yield Static(Text("Endpoints", style="bold underline"), classes="summary-title")
            yield Static(endpoints_table(prof, r.facts), classes="summary-block")
            cloud = cloud_table(prof, r.facts)
            if cloud is not None:
                yield Static(Text("Your cloud", style="bold underline"), classes="summary-title")
                yield Static(cloud, classes="summary-block", id="summary-cloud")
            yield Static(Text("Credentials files", style="bold underline"),
                         classes="summary-title")
            yield Static(files_text(r), classes="summary-block")
            with Horizontal(id="summary-columns"):
                with Vertical():
                    yield Static(Text("Verification", style="bold underline"),
                                 classes="summary-title")
                    yield Static(checks_table(r), classes="summary-block", id="verification")
                with Vertical():
                    yield Static(Text("Time per phase", style="bold underline"),
                                 classes="summary-title")
                    yield Static(times_table(r), classes="summary-block", id="phase-times")

            yield Static(Text("Tempest", style="bold underline"), classes="summary-title")
            yield Static(Text("t runs OpenStack's integration suite (identity and image API "
                              "tests) from this machine against the cloud", style="dim"),
                         classes="summary-block", id="tempest")
            if r.problems:
                yield Static(Text("Skipped or failed: needs attention",
                                  style="bold underline red"), classes="summary-title")
                yield Static(Text(strip_controls("\n".join(r.problems))),
                             classes="summary-block")
            if r.log_path:
                yield Static(Text.assemble(("Full log  ", "bold"), tildify(r.log_path)),
                             id="summary-log")
        yield Footer(compact=True)

    def action_tempest(self) -> None:
        if self.tempest_running:
            self.notify("Tempest is already running.")
            return
        self.tempest_running = True
        self._tempest_show("Tempest: starting (the first run installs Tempest, about a minute)")
        self.run_worker(self._tempest_worker, thread=True, exclusive=True, group="tempest")

    def _tempest_show(self, text: str, style: str = "") -> None:
        self.query_one("#tempest", Static).update(Text(text, style=style))

    def _tempest_worker(self) -> None:
        from ..tasks import tempest

        counts = {"ok": 0, "failed": 0, "skipped": 0}

        def on_result(tid: str, status: str, n: int) -> None:
            counts[status] += 1
            self.app.call_from_thread(
                self._tempest_show,
                f"Tempest running: {n} tests so far, {counts['ok']} passed, "
                f"{counts['failed']} failed, {counts['skipped']} skipped\n"
                f"last: {tid.rsplit('.', 1)[-1]}")

        def log(line: str) -> None:
            self.app.call_from_thread(self._tempest_show, line, "dim")

        try:
            res = tempest.run_for_profile(self.report.profile, on_result=on_result, log=log)
        except tempest.TempestError as exc:
            text, style = f"Tempest could not run: {exc}", "bold red"
        else:
            self.tempest_result = res
            text = res.summary() + "".join(f"\n  failed: {t}" for t in res.failures[:10])
            text += f"\nreport: {tildify(str(res.report or res.output))}"
            style = "green" if res.ok else "bold red"
        self.app.call_from_thread(self._tempest_done, text, style)

    def _tempest_done(self, text: str, style: str) -> None:
        self.tempest_running = False
        self._tempest_show(text, style)

    def action_new(self) -> None:
        self.app.new_session()

    def action_profiles(self) -> None:
        from .start import StartScreen

        self.app.switch_screen(StartScreen())

    def action_full_log(self) -> None:
        from .modals import FullLogScreen

        self.app.push_screen(FullLogScreen(self.report.log_path))
