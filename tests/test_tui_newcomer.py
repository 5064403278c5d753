"""What a newcomer meets on the screens (issue 13), driven with Textual's Pilot through the
real screens: the default image and "no image", an unreachable image URL skipped to a
finished install, the file picker's typed path, package progress, selection glyphs."""

from __future__ import annotations

import os
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
        # Enter / ctrl+n only: the defaults are enough.
        await pilot.press("ctrl+n")
        await pilot.pause()
        assert screen_name(app) == "ReviewScreen"
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
