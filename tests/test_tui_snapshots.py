"""Snapshots of every screen (pytest-textual-snapshot), 100x30, stable across runs:
fixed clock, no cursor blink, no animation, pinned step durations, temp HOME shown as ~.

Update the baselines with `pytest tests/test_tui_snapshots.py --snapshot-update`.
docs/screens/generate.py renders the same scenarios into docs/ at 100x30 and 80x24.
"""

from __future__ import annotations

from typing import Awaitable, Callable

import pytest

from tests.test_tui_fakes import (
    FACTS,
    block_step,
    fail_first,
    make_test_app,
    runner_factory,
    save_profile,
    screen_name,
    setup_home,
    small_plan,
    transport_factory,
    unfinished_state,
    wait_for,
)

SIZE = (100, 30)


def _secrets(profile, **values):
    from tui.tasks.secrets import write_secrets_file

    write_secrets_file(profile.secrets_file, values)


async def _to_review(pilot):
    app = pilot.app
    await wait_for(pilot, lambda: screen_name(app) == "HostScreen", what="host")
    await pilot.press("ctrl+n")
    await wait_for(pilot, lambda: screen_name(app) == "CredentialsScreen", what="credentials")
    await pilot.press("ctrl+n")
    await wait_for(pilot, lambda: screen_name(app) == "ServicesScreen", what="services")
    await pilot.press("ctrl+n")
    await wait_for(pilot, lambda: screen_name(app) == "ReviewScreen", what="review")


async def _start(pilot):
    await _to_review(pilot)
    await pilot.press("ctrl+n")
    await wait_for(pilot, lambda: hasattr(pilot.app.screen_stack[-1], "stage")
                   or screen_name(pilot.app) == "FailureModal", what="progress")


def footer_text(app) -> str:
    from textual.widgets import Footer

    try:
        footer = app.screen.query_one(Footer)
    except Exception:
        return ""
    return " ".join(str(c.render()) for c in footer.children)


async def settle(pilot, *words: str):
    """Wait until the footer shows the current bindings (it recomposes after a refresh)."""
    pilot.app.screen.refresh_bindings()
    await wait_for(pilot, lambda: all(w in footer_text(pilot.app) for w in words),
                   what=f"footer with {words}")
    await pilot.pause()


def _progress(app):
    return next(s for s in app.screen_stack if hasattr(s, "stage"))


# -- scenarios: (setup() -> app, run_before(pilot)) ---------------------------------------------
def start_setup():
    save_profile("edge", "edge.example.org")
    lab = save_profile("lab", "10.0.0.2")
    unfinished_state(lab)
    return make_test_app()


async def start_run(pilot):
    await wait_for(pilot, lambda: screen_name(pilot.app) == "StartScreen", what="start")
    await pilot.press("down")
    await settle(pilot, "New session")


def lab_setup(**runner):
    def setup():
        p = save_profile("lab", "10.0.0.2")
        _secrets(p, admin_password="Correct-Horse-Battery-9", keystone_db_password="short")
        return make_test_app(profile="lab", runner_factory=runner_factory(**runner))
    return setup


async def host_run(pilot):
    app = pilot.app
    await wait_for(pilot, lambda: screen_name(app) == "HostScreen", what="host")
    await pilot.press("ctrl+t")
    await wait_for(pilot, lambda: screen_name(app) == "HostKeyModal", what="host key")
    await pilot.press("t")
    await wait_for(pilot, lambda: app.state.facts is not None, what="test result")
    await settle(pilot, "Test")


async def host_key_run(pilot):
    app = pilot.app
    await wait_for(pilot, lambda: screen_name(app) == "HostScreen", what="host")
    await pilot.press("ctrl+t")
    await wait_for(pilot, lambda: screen_name(app) == "HostKeyModal", what="host key")
    await settle(pilot, "Trust")


def new_setup():
    return make_test_app()


async def host_errors_run(pilot):
    app = pilot.app
    await wait_for(pilot, lambda: screen_name(app) == "StartScreen", what="start")
    await pilot.press("n")
    await wait_for(pilot, lambda: screen_name(app) == "HostScreen", what="host")
    scr = app.screen
    scr.query_one("#address").value = "bad_host!"
    scr.query_one("#port").value = "0"
    scr.query_one("#user").value = "deploy"
    scr.query_one("#auth-key").value = True
    scr.query_one("#key_file").value = "~/.ssh/missing_key"
    await pilot.press("ctrl+n")
    await pilot.pause()
    app.clear_notifications()  # a toast's lifetime depends on the machine's speed
    await settle(pilot, "Test")


async def credentials_run(pilot):
    app = pilot.app
    await wait_for(pilot, lambda: screen_name(app) == "HostScreen", what="host")
    await pilot.press("ctrl+n")
    await wait_for(pilot, lambda: screen_name(app) == "CredentialsScreen", what="credentials")
    app.screen.query_one("#secret-glance_db_password").value = "pa%ss"
    app.screen.query_one("#secret-keystone_db_password").focus()
    await settle(pilot, "Generate all")


async def services_run(pilot):
    app = pilot.app
    await wait_for(pilot, lambda: screen_name(app) == "HostScreen", what="host")
    await pilot.press("ctrl+n", "ctrl+n")
    await wait_for(pilot, lambda: screen_name(app) == "ServicesScreen", what="services")
    sl = app.screen.query_one("#service-list")
    sl.highlighted = 2  # memcached
    await pilot.press("space")
    await settle(pilot, "Browse")


async def review_run(pilot):
    from textual.widgets import Tree

    await _to_review(pilot)
    tree = pilot.app.screen.query_one("#plan", Tree)
    mariadb = next(n for n in tree.root.children if n.data.id == "mariadb")
    tree.move_cursor(mariadb.children[2])
    await settle(pilot, "Start install")


def running_setup():
    plan = small_plan()
    block_step(plan, "prepare.packages",
               ["0 upgraded, 120 newly installed, 0 to remove and 0 not upgraded.",
                "Fetched 52.3 MB in 3s (17.4 MB/s)"]
               + [f"Unpacking package-{i} (1.{i}) ..." for i in range(30)], apt=True)
    return lab_setup(plan=plan)()


async def running_run(pilot):
    await _start(pilot)
    scr = _progress(pilot.app)
    await wait_for(pilot, lambda: scr.running_id == "prepare.packages"
                   and len(scr.query_one("#log").lines) >= 30, what="running step output")
    await settle(pilot, "Cancel step")


def failed_setup():
    plan = small_plan()
    fail_first(plan, "mariadb.service", times=99)
    return lab_setup(plan=plan)()


async def failed_run(pilot):
    await _start(pilot)
    await wait_for(pilot, lambda: screen_name(pilot.app) == "FailureModal", what="failure modal")
    await settle(pilot, "Retry", "Full log")


async def finished_run(pilot):
    await _start(pilot)
    await wait_for(pilot, lambda: _progress(pilot.app).stage == "finished", what="finished")
    await settle(pilot, "Summary")


async def summary_run(pilot):
    await finished_run(pilot)
    await pilot.press("ctrl+n")
    await wait_for(pilot, lambda: screen_name(pilot.app) == "SummaryScreen", what="summary")
    await settle(pilot, "New session")


def resume_setup():
    lab = save_profile("lab", "10.0.0.2")
    unfinished_state(lab)
    return make_test_app(profile="lab")


async def resume_run(pilot):
    await wait_for(pilot, lambda: screen_name(pilot.app) == "ResumeModal", what="resume offer")
    await settle(pilot, "Resume")


async def quit_run(pilot):
    await running_run(pilot)
    await pilot.press("ctrl+q")
    await wait_for(pilot, lambda: screen_name(pilot.app) == "ConfirmModal", what="confirm")
    await settle(pilot, "Yes")


def _image_unreachable(ctx):
    """The image step on a machine without internet: the default URL's name does not resolve."""
    import socket
    import urllib.error

    from tui.tasks import profile as pr
    from tui.tasks.services import glance

    raise glance.download_error(pr.DEFAULT_IMAGE_URL, urllib.error.URLError(
        socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")))


def image_skip_setup():
    from tui.tasks import engine as e
    from tui.tasks import profile as pr

    plan = small_plan()
    step = e.Step("image.upload", "Upload image cirros", run=_image_unreachable, phase="image")
    plan.phases.insert(-1, e.Phase("image", "Image", [step]))
    p = save_profile("lab", "10.0.0.2")
    p.image.file = None  # the default: CirrOS from download.cirros-cloud.net
    pr.save(p)
    _secrets(p, admin_password="Correct-Horse-Battery-9")
    facts = dict(FACTS, verification=[v for v in FACTS["verification"]
                                      if not v[0].startswith("image ")])  # no image: no check
    return make_test_app(profile="lab", runner_factory=runner_factory(plan=plan, facts=facts))


async def image_failed_run(pilot):
    await _start(pilot)
    await wait_for(pilot, lambda: screen_name(pilot.app) == "FailureModal", what="failure modal")
    await settle(pilot, "Retry", "Full log")


async def image_skipped_summary_run(pilot):
    await image_failed_run(pilot)
    await pilot.press("s")
    await wait_for(pilot, lambda: _progress(pilot.app).stage == "finished", what="finished")
    await pilot.press("ctrl+n")
    await wait_for(pilot, lambda: screen_name(pilot.app) == "SummaryScreen", what="summary")
    await settle(pilot, "New session")


async def services_compute_run(pilot):
    """Horizon, then Nova ticked: what Nova needs (Placement, Neutron) is turned on and said."""
    from tui.tasks import profile as pr

    await services_run(pilot)
    sl = pilot.app.screen.query_one("#service-list")
    for svc in ("horizon", "nova"):
        sl.highlighted = pr.SERVICES.index(svc)
        await pilot.press("space")
    await wait_for(pilot, lambda: "Nova needs" in str(
        pilot.app.screen.query_one("#deps-note").render()), what="Nova's dependencies")
    await settle(pilot, "Browse")


COMPUTE_FACTS = dict(FACTS, virt_type="qemu", networks={
    "provider": "provider", "floating": "172.24.4.100-172.24.4.199", "network": "demo-net",
    "cidr": "192.168.100.0/24", "router": "demo-router"})


def compute_setup():
    from tui.tasks import profile as pr

    p = save_profile("lab", "10.0.0.2")
    p.openstack.services = list(pr.SERVICES)  # compute, networking and the dashboard
    pr.save(p)
    _secrets(p, admin_password="Correct-Horse-Battery-9")
    return make_test_app(profile="lab", runner_factory=runner_factory(facts=COMPUTE_FACTS))


def hosts3_setup():
    """A profile of three hosts: the controller and two compute hosts."""
    from tui.tasks import profile as pr

    p = save_profile("lab", "10.0.0.2")
    p.hosts += [pr.HostConfig(name=f"compute{n}", roles=["compute"], address=f"10.0.0.{n + 2}",
                              key_file="~/.ssh/id_ed25519") for n in (1, 2)]
    p.openstack.services = list(pr.SERVICES)
    pr.save(p)
    _secrets(p, admin_password="Correct-Horse-Battery-9")
    return make_test_app(profile="lab", transport_factory=transport_factory(known=True))


async def hosts3_run(pilot):
    """The controller tested, then compute1 picked in the list: the form edits compute1."""
    app = pilot.app
    await wait_for(pilot, lambda: screen_name(app) == "HostScreen", what="host")
    await pilot.press("ctrl+t")
    await wait_for(pilot, lambda: app.state.facts is not None, what="test result")
    app.screen.query_one("#host-list").focus()
    await pilot.press("down")
    await wait_for(pilot, lambda: app.screen.query_one("#address").value == "10.0.0.3",
                   what="compute1 in the form")
    await settle(pilot, "Remove host")


async def hosts3_review_run(pilot):
    await _to_review(pilot)
    await settle(pilot, "Start install")


SCENARIOS: dict[str, tuple[Callable, Callable[..., Awaitable[None]]]] = {
    "01-start": (start_setup, start_run),
    "02-host": (lab_setup(), host_run),
    "03-host-key": (lab_setup(), host_key_run),
    "04-host-errors": (new_setup, host_errors_run),
    "05-credentials": (lab_setup(), credentials_run),
    "06-services": (lab_setup(), services_run),
    "07-review": (lab_setup(), review_run),
    "08-progress-running": (running_setup, running_run),
    "09-progress-failed": (failed_setup, failed_run),
    "10-progress-finished": (lab_setup(), finished_run),
    "11-summary": (lab_setup(), summary_run),
    "12-resume": (resume_setup, resume_run),
    "13-quit-confirm": (running_setup, quit_run),
    "14-image-unreachable": (image_skip_setup, image_failed_run),
    "15-summary-image-skipped": (image_skip_setup, image_skipped_summary_run),
    "16-services-compute": (lab_setup(), services_compute_run),
    "17-summary-compute": (compute_setup, summary_run),
    "18-hosts-three": (hosts3_setup, hosts3_run),
    "19-review-three-hosts": (hosts3_setup, hosts3_review_run),
}


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_screen_snapshot(name, snap_compare, monkeypatch, tmp_path):
    setup_home(monkeypatch, tmp_path)
    setup, run_before = SCENARIOS[name]
    app = setup()
    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


@pytest.mark.parametrize("name", ["02-host", "06-services"])
def test_selection_glyphs_without_colour(name, snap_compare, monkeypatch, tmp_path):
    """NO_COLOR=1: radio buttons and checkboxes still say which is chosen (● / ○, X / blank)."""
    setup_home(monkeypatch, tmp_path)
    monkeypatch.setenv("NO_COLOR", "1")
    setup, run_before = SCENARIOS[name]
    app = setup()
    assert app.no_color
    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)
