"""What a newcomer meets on the screens (issue 13), driven with Textual's Pilot through the
real screens: the default image and "no image", an unreachable image URL skipped to a
finished install, the file picker's typed path, package progress, selection glyphs."""

from __future__ import annotations

import socket

import pytest

from tests.test_tui_fakes import (
    make_test_app,
    runner_factory,
    screen_name,
    setup_home,
    small_plan,
    wait_for,
)
from tests.test_tui_pilot import SIZE, start_install, text, to_host
from tui.tasks import engine as e
from tui.tasks import profile as pr


@pytest.fixture
def home(monkeypatch, tmp_path):
    return setup_home(monkeypatch, tmp_path)


def all_text(app) -> str:
    """Every Static's text on the current screen, in order."""
    from textual.widgets import Static

    out = []
    for w in app.screen.query(Static):
        if w.id:
            out.append(text(app, f"#{w.id}"))
        else:
            c = w.content
            out.append(c if isinstance(c, str) else getattr(c, "plain", str(c)))
    return "\n".join(out)


async def to_services(pilot):
    await to_host(pilot)
    await pilot.press("ctrl+n", "ctrl+n")
    await pilot.pause()
    assert screen_name(pilot.app) == "ServicesScreen"


# -- 1. no image, no dead end ------------------------------------------------------------------
async def test_services_offers_the_cirros_url_and_says_what_a_suitable_image_is(home):
    app = make_test_app()
    async with app.run_test(size=SIZE) as pilot:
        await to_services(pilot)
        scr = app.screen
        assert scr.query_one("#image-url").value == pr.DEFAULT_IMAGE_URL
        assert scr.query_one("#image-upload").value is True
        note = text(app, "#image-note")
        assert "Suitable: a bootable cloud disk image (qcow2 or raw)" in note
        assert "CirrOS" in note
        # Enter only: the defaults are enough, and enter in the service list goes on
        # (it used to turn MariaDB, Keystone and Glance off).
        assert app.focused.id == "service-list"
        await pilot.press("enter")
        await pilot.pause()
        assert screen_name(app) == "ReviewScreen"
        assert app.state.profile.openstack.services == list(pr.DEFAULT_SERVICES)
        assert app.state.profile.image.source() == pr.DEFAULT_IMAGE_URL
        assert (f"Image cirros: downloaded by this machine from {pr.DEFAULT_IMAGE_URL}"
                in text(app, "#target"))
        phases = [str(n.label) for n in app.screen.query_one("#plan").root.children]
        assert "Image" in phases


async def test_no_image_skips_the_image_phase_and_the_summary_says_so(home):
    plan = small_plan()
    rf = runner_factory(plan=plan)
    app = make_test_app(runner_factory=rf)
    async with app.run_test(size=SIZE) as pilot:
        await to_services(pilot)
        scr = app.screen
        scr.query_one("#image-upload").focus()
        await pilot.press("space")  # untick "upload an image"
        await pilot.pause()
        assert scr.query_one("#image-upload").value is False
        assert scr.query_one("#image-url").parent.disabled, "image fields off without an image"
        assert scr.query_one("#image-file").parent.disabled
        scr.query_one("#image-url").value = ""  # even empty fields are no error now
        await pilot.press("ctrl+n")
        await pilot.pause()
        assert screen_name(app) == "ReviewScreen"
        assert app.state.profile.image.upload is False
        assert "No image: Glance is installed empty (the image phase is skipped)" in text(
            app, "#target")
        phases = [str(n.label) for n in app.screen.query_one("#plan").root.children]
        assert "Glance (images)" in phases and "Image" not in phases
        await start_install(pilot)
        await wait_for(pilot, lambda: getattr(app.screen, "stage", "") == "finished",
                       what="run end")
        await pilot.press("ctrl+n")
        await wait_for(pilot, lambda: screen_name(app) == "SummaryScreen", what="summary")
        body = all_text(app)
        assert "no image (none chosen: Glance is empty)" in body


async def test_unreachable_image_url_is_said_plainly_and_skip_finishes(home, monkeypatch):
    """No internet here (the default CirrOS URL's name does not resolve): the real image
    step fails plainly, Skip (s) finishes the install, the summary names what was skipped."""
    from tui.tasks.services import glance

    def no_dns(*a, **kw):
        raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")

    monkeypatch.setattr(socket, "getaddrinfo", no_dns)
    plan = small_plan()
    image = e.Step("image.upload", "Upload image cirros", run=lambda c: glance.image_source(c),
                   retries=0)
    plan.phases.insert(-1, e.Phase("image", "Image", [image]))
    image.phase = "image"
    rf = runner_factory(plan=plan)
    app = make_test_app(runner_factory=rf)
    async with app.run_test(size=SIZE) as pilot:
        await to_services(pilot)
        await pilot.press("ctrl+n")  # the default URL
        await pilot.pause()
        await start_install(pilot)
        await wait_for(pilot, lambda: screen_name(app) == "FailureModal", what="failure modal")
        err = text(app, "#error-text")
        assert ("This machine cannot download the image: download.cirros-cloud.net does "
                "not resolve here.") in err
        assert "no internet access or no DNS" in err
        assert "Skip (s) finishes the install without an image" in err
        tail = list(app.screen.query_one("#tail").lines)
        assert tail == [f"downloading {pr.DEFAULT_IMAGE_URL}"], "not the message above again"
        await pilot.press("s")
        await wait_for(pilot, lambda: getattr(app.screen, "stage", "") == "finished",
                       what="run end")
        prog = app.screen
        assert prog.steps["image.upload"].status == "skipped"
        assert prog.steps["finish.verify"].status == "done"
        assert "Finished with skipped steps" in text(app, "#run-status")
        await pilot.press("ctrl+n")
        await wait_for(pilot, lambda: screen_name(app) == "SummaryScreen", what="summary")
        body = all_text(app)
        assert "! Installed, with skipped steps" in body
        assert "image cirros not uploaded (skipped)" in body
        assert ("Upload image cirros: skipped (This machine cannot download the image: "
                "download.cirros-cloud.net does not resolve here.)") in body
        assert "MariaDB" in body and "Keystone" in body  # what was installed


# -- 2. the file picker: typing a path is the obvious way -------------------------------------
async def open_picker(pilot):
    await to_services(pilot)
    await pilot.press("ctrl+o")
    await wait_for(pilot, lambda: screen_name(pilot.app) == "FilePickerModal", what="picker")


async def test_file_picker_tab_from_the_tree_lands_in_the_path_field(home):
    app = make_test_app()
    async with app.run_test(size=SIZE) as pilot:
        await open_picker(pilot)
        assert app.focused.id == "path", "the path field has the focus first"
        await pilot.press("shift+tab")
        assert app.focused.id == "tree"
        await pilot.press("down")
        await pilot.press("tab")
        await pilot.pause()
        assert app.focused.id == "path"
        app.screen.query_one("#path").value = ""
        await pilot.press(*"~/cirros.img", "enter")
        await wait_for(pilot, lambda: screen_name(app) == "ServicesScreen", what="services")
        assert app.screen.query_one("#image-file").value == "~/cirros.img"
        assert app.screen.query_one("#image-url").value == "", "the file replaces the URL"


async def test_file_picker_typing_in_the_tree_starts_a_path(home):
    app = make_test_app()
    async with app.run_test(size=SIZE) as pilot:
        await open_picker(pilot)
        app.screen.query_one("#tree").focus()
        await pilot.pause()
        await pilot.press(*"~/cirros.img")
        await pilot.pause()
        assert app.focused.id == "path"
        assert app.screen.query_one("#path").value == "~/cirros.img"
        await pilot.press("enter")
        await wait_for(pilot, lambda: screen_name(app) == "ServicesScreen", what="services")
        assert app.screen.query_one("#image-file").value == "~/cirros.img"


async def test_file_picker_says_what_is_wrong_with_the_path(home):
    app = make_test_app()
    async with app.run_test(size=SIZE) as pilot:
        await open_picker(pilot)
        field = app.screen.query_one("#path")
        assert "Type the path (~ is your home directory)" in text(app, "#path-hint")
        field.value = ""
        await pilot.press("enter")
        await pilot.pause()
        assert text(app, "#path-error") == ("type the path of the image file, or pick it in "
                                            "the tree (enter on a file)")
        field.value = "~/nope.img"
        await pilot.press("enter")
        await pilot.pause()
        assert text(app, "#path-error") == f"no such file: {home}/nope.img (from ~/nope.img)"
        field.value = "/nonexistent/x.img"
        await pilot.press("enter")
        await pilot.pause()
        assert text(app, "#path-error") == "no such file: /nonexistent/x.img"
        (home / "images").mkdir()
        field.value = "~/images"
        await pilot.press("enter")
        await pilot.pause()
        assert "is a directory: the tree now shows it" in text(app, "#path-error")
        assert str(app.screen.query_one("#tree").path) == str(home / "images")
        assert screen_name(app) == "FilePickerModal"


# -- 3. package installation progress --------------------------------------------------------
async def test_package_progress_moves_the_tree_the_bar_and_names_the_package(home):
    """The packages step replays a real apt install through the real parser, pausing
    half-way: its tree line counts packages, the bar is past the steps done, the log pane
    names the current package."""
    import threading
    from pathlib import Path

    from textual.widgets import ProgressBar

    from tests.test_tui_pilot import to_review
    from tui.tasks.services.prepare import AptProgress

    out = (Path(__file__).parent / "data" / "apt-install-debian13.txt").read_text().splitlines()
    half = next(i for i, ln in enumerate(out) if ln.startswith("Setting up python3-keystone "))
    release, paused = threading.Event(), threading.Event()

    def run(ctx):
        watch = AptProgress(ctx).feed
        for i, line in enumerate(out):
            if i == half + 1:
                paused.set()
                release.wait(20)
            ctx.output(line)
            watch(line)

    plan = small_plan()
    plan.find("prepare.packages").run = run
    app = make_test_app(runner_factory=runner_factory(plan=plan))
    async with app.run_test(size=SIZE) as pilot:
        await to_review(pilot)
        await start_install(pilot)
        prog = app.screen
        await wait_for(pilot, paused.is_set, what="half-way through the packages")
        await pilot.pause(0.3)
        sv = prog.steps["prepare.packages"]
        n = sum(1 for ln in out[:half + 1] if ln.startswith("Setting up "))
        now = f"set up {n}/377: python3-keystone"
        assert sv.progress[2] == now, "the package at work, not an earlier one"
        assert f"[set up {n}/377] Install the packages" in str(prog.step_label(sv))
        bar = prog.query_one("#bar", ProgressBar)
        steps_done = sum(1 for s in prog.steps.values() if s.status == "done")
        assert steps_done == 2 and 2.5 < bar.progress < 3, "the bar moves within the step"
        assert text(app, "#log-title").startswith(f"{now} · Install the packages")
        assert f"Step 3 of 9: Install the packages (one transaction) · {now}" in text(
            app, "#run-status")
        assert "Setting up python3-keystone" in "\n".join(prog.query_one("#log").lines)
        release.set()
        await wait_for(pilot, lambda: prog.stage == "finished", what="run end")
        assert prog.query_one("#bar", ProgressBar).progress == len(prog.steps)
        assert "[set up" not in str(prog.step_label(prog.steps["prepare.packages"]))


# -- 4. selection state by glyph, not only colour -----------------------------------------------
async def test_selection_state_shows_by_glyph(home, monkeypatch):
    from textual.widgets import SelectionList

    monkeypatch.setenv("NO_COLOR", "1")
    app = make_test_app()
    async with app.run_test(size=SIZE) as pilot:
        assert app.no_color
        await to_host(pilot)
        scr = app.screen
        radios = {r.id: r.render().plain[:3] for r in scr.query("#auth > *")}
        assert radios == {"auth-key": "▐○▌", "auth-agent": "▐●▌", "auth-password": "▐○▌"}
        scr.query_one("#auth-password").value = True
        await pilot.pause()
        assert scr.query_one("#auth-password").render().plain.startswith("▐●▌")
        assert scr.query_one("#auth-agent").render().plain.startswith("▐○▌")
        scr.query_one("#auth-agent").value = True
        await pilot.press("ctrl+n", "ctrl+n")
        await pilot.pause()
        scr = app.screen
        sl = scr.query_one("#service-list", SelectionList)
        sl.deselect("glance")
        await pilot.pause()
        rows = [sl.render_line(y).text for y in range(5)]
        assert [r[:3] for r in rows] == ["▐X▌", "▐X▌", "▐X▌", "▐X▌", "▐ ▌"], rows
        demo = scr.query_one("#demo")
        assert demo.render().plain.startswith("▐X▌")
        demo.value = False
        await pilot.pause()
        assert demo.render().plain.startswith("▐ ▌")


# -- which OpenStack do I get? ------------------------------------------------------------------
async def test_start_screen_names_each_release_and_its_support_state(home):
    app = make_test_app()
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: screen_name(app) == "StartScreen", what="start")
        intro = " ".join(text(app, "#intro").split())
        assert ("What you get: Debian 13 (trixie): OpenStack 2025.1 (Epoxy), maintained upstream"
                " · Debian 12 (bookworm): OpenStack Zed, past upstream maintenance") in intro


async def test_enter_on_an_empty_start_screen_starts_a_new_session(home):
    app = make_test_app()
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: screen_name(app) == "StartScreen", what="start")
        await pilot.press("enter")
        await wait_for(pilot, lambda: screen_name(app) == "HostScreen", what="host")
