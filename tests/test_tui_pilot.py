"""The TUI's behaviour, driven with Textual's Pilot (no SSH: fake transport, real engine
with fake steps).  Each test runs in its own STACK_TUI_HOME and HOME."""

from __future__ import annotations

import os
import stat
import sys
import tomllib

import pytest

from tests.test_tui_fakes import (
    FINGERPRINT,
    FakeTransport,
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
from tui.tasks import engine as e
from tui.tasks import profile as pr

SIZE = (100, 30)


@pytest.fixture
def home(monkeypatch, tmp_path):
    return setup_home(monkeypatch, tmp_path)


def text(app, selector: str) -> str:
    """The plain text a Static shows."""
    from rich.console import Console

    content = app.screen.query_one(selector).content
    if isinstance(content, str):
        return content
    console = Console(width=200, record=True, color_system=None, file=open(os.devnull, "w"))
    console.print(content)
    return console.export_text().rstrip("\n")


async def to_host(pilot, address="10.0.0.2"):
    await pilot.press("n")
    await pilot.pause()
    assert screen_name(pilot.app) == "HostScreen"
    if address:
        pilot.app.screen.query_one("#address").value = address
        await pilot.pause()


async def to_review(pilot, address="10.0.0.2"):
    await to_host(pilot, address)
    await pilot.press("ctrl+n")
    await pilot.pause()
    assert screen_name(pilot.app) == "CredentialsScreen"
    await pilot.press("ctrl+n")
    await pilot.pause()
    assert screen_name(pilot.app) == "ServicesScreen"
    pilot.app.screen.query_one("#image-file").value = "~/cirros.img"
    await pilot.press("ctrl+n")
    await pilot.pause()
    assert screen_name(pilot.app) == "ReviewScreen"


async def start_install(pilot):
    await pilot.press("ctrl+n")
    await wait_for(pilot, lambda: screen_name(pilot.app) in ("ProgressScreen", "FailureModal",
                                                            "HostKeyModal"),
                   what="progress screen")


# -- host screen ------------------------------------------------------------------------
async def test_host_validation_messages(home):
    app = make_test_app()
    async with app.run_test(size=SIZE) as pilot:
        await to_host(pilot, address="")
        scr = app.screen
        # Next with an empty address: refused, the message is shown inline.
        await pilot.press("ctrl+n")
        await pilot.pause()
        assert screen_name(app) == "HostScreen"
        assert "enter the server's host name or IP address" in text(app, "#address-error")
        # A bad host name, a port out of range, a bad user.
        scr.query_one("#address").value = "bad_host!"
        scr.query_one("#port").value = "70000"
        scr.query_one("#user").value = "Bad User"
        await pilot.pause()
        assert "'bad_host!' is not a host name or IP address" in text(app, "#address-error")
        assert "port 70000 is outside 1-65535" in text(app, "#port-error")
        assert "not a valid user name" in text(app, "#user-error")
        assert scr.query_one("#address").has_class("-invalid")
        scr.query_one("#port").value = "ssh"
        await pilot.pause()
        assert "the port is a number from 1 to 65535" in text(app, "#port-error")
        # Fixed: the messages go away.
        scr.query_one("#address").value = "192.0.2.10"
        scr.query_one("#port").value = "2222"
        scr.query_one("#user").value = "ubuntu"
        await pilot.pause()
        assert not scr.query_one("#address-error").display
        assert not scr.query_one("#port-error").display
        # Not root: the sudo password field appears.
        assert scr.query_one("#sudo-row").display
        # Key file: missing, a directory, then a readable file.
        scr.query_one("#auth-key").value = True
        await pilot.pause()
        assert scr.query_one("#key-row").display
        scr.query_one("#key_file").value = "~/.ssh/nope"
        await pilot.pause()
        assert "does not exist" in text(app, "#key_file-error")
        scr.query_one("#key_file").value = "~/.ssh"
        await pilot.pause()
        assert "is a directory" in text(app, "#key_file-error")
        if os.geteuid() != 0:  # root reads everything
            locked = home / "locked_key"
            locked.write_text("x")
            locked.chmod(0)
            scr.query_one("#key_file").value = str(locked)
            await pilot.pause()
            assert "is not readable" in text(app, "#key_file-error")
        scr.query_one("#key_file").value = "~/.ssh/id_ed25519"
        await pilot.pause()
        assert not scr.query_one("#key_file-error").display
        # Password login needs the password.
        scr.query_one("#auth-password").value = True
        await pilot.pause()
        await pilot.press("ctrl+n")
        await pilot.pause()
        assert screen_name(app) == "HostScreen"
        assert "enter the SSH password" in text(app, "#ssh_password-error")
        scr.query_one("#auth-agent").value = True
        await pilot.pause()
        await pilot.press("ctrl+n")
        await pilot.pause()
        assert screen_name(app) == "CredentialsScreen"
        h = app.state.profile.host
        assert (h.address, h.port, h.user, h.key_file) == ("192.0.2.10", 2222, "ubuntu", None)


async def test_back_and_next_keep_typed_values(home):
    app = make_test_app()
    async with app.run_test(size=SIZE) as pilot:
        await to_host(pilot, "10.9.8.7")
        await pilot.press("ctrl+n")
        await pilot.pause()
        app.screen.query_one("#secret-admin_password").value = "Typed-Admin-Passw0rd!"
        await pilot.press("ctrl+n")
        await pilot.pause()
        app.screen.query_one("#region").value = "RegionTwo"
        await pilot.press("escape")  # back to credentials
        await pilot.pause()
        assert app.screen.query_one("#secret-admin_password").value == "Typed-Admin-Passw0rd!"
        await pilot.press("escape")  # back to host
        await pilot.pause()
        assert app.screen.query_one("#address").value == "10.9.8.7"
        await pilot.press("ctrl+n", "ctrl+n")
        await pilot.pause()
        assert screen_name(app) == "ServicesScreen"
        assert app.screen.query_one("#region").value == "RegionTwo"


async def test_host_key_modal_trust_and_cancel(home):
    FakeTransport.instances.clear()
    app = make_test_app(transport_factory=transport_factory())
    async with app.run_test(size=SIZE) as pilot:
        await to_host(pilot)
        await pilot.press("ctrl+t")
        await wait_for(pilot, lambda: screen_name(app) == "HostKeyModal", what="host key modal")
        assert FINGERPRINT in text(app, "#fingerprint")
        await pilot.press("t")  # Trust
        await wait_for(pilot, lambda: app.state.facts is not None, what="test result")
        result = text(app, "#test-result")
        assert "Debian GNU/Linux 13 (trixie)" in result
        assert "4 CPUs" in result and "7.8 GiB" in result and "34.3 GiB in /var" in result
        assert "yes, OpenStack 2025.1 (Epoxy) (verified)" in result
        assert "Epoxy is maintained upstream" in result  # the support state, not only the name
        assert FakeTransport.instances[-1].ran, "the probe ran after trusting"
        # Cancel: nothing runs.
        await pilot.press("ctrl+t")
        await wait_for(pilot, lambda: screen_name(app) == "HostKeyModal", what="host key modal")
        await pilot.press("c")
        await wait_for(pilot, lambda: "not trusted" in text(app, "#test-status"),
                       what="declined status")
        assert FakeTransport.instances[-1].ran == []


async def test_changed_host_key_is_refused_with_an_explanation(home):
    app = make_test_app(transport_factory=transport_factory(changed=True))
    async with app.run_test(size=SIZE) as pilot:
        await to_host(pilot)
        await pilot.press("ctrl+t")
        await wait_for(pilot, lambda: screen_name(app) == "MessageModal", what="refusal")
        msg = text(app, "#message")
        assert "HAS CHANGED" in msg and "man-in-the-middle" in msg
        assert "ssh-keygen -R" in msg
        await pilot.press("enter")
        await pilot.pause()
        assert "Refused" in text(app, "#test-status")


async def test_connection_error_is_explained(home):
    from tui.tasks.transport import AuthError

    err = AuthError("SSH login to root@10.0.0.2:22 was refused.", "bad key", "check the key")
    app = make_test_app(transport_factory=transport_factory(fail=err))
    async with app.run_test(size=SIZE) as pilot:
        await to_host(pilot)
        await pilot.press("ctrl+t")
        await wait_for(pilot, lambda: "failed" in text(app, "#test-status"), what="failure")
        assert "was refused" in text(app, "#test-result")
        assert "Try: check the key" in text(app, "#test-result")


# -- credentials --------------------------------------------------------------------------
async def test_credentials_masked_reveal_generate_strength(home):
    app = make_test_app()
    async with app.run_test(size=SIZE) as pilot:
        await to_host(pilot)
        await pilot.press("ctrl+n")
        await pilot.pause()
        scr = app.screen
        f = scr.query_one("#secret-admin_password")
        assert f.password, "masked by default"
        f.value = "abc"
        await pilot.pause()
        assert text(app, "#strength-admin_password") == "weak"
        scr.query_one("#show-admin_password").press()
        await pilot.pause()
        assert not f.password
        assert str(scr.query_one("#show-admin_password").label) == "Hide"
        await pilot.pause(0.3)  # a button ignores presses while it shows the last one
        scr.query_one("#show-admin_password").press()
        await pilot.pause()
        assert f.password
        await pilot.click("#gen-admin_password")
        await pilot.pause()
        assert len(f.value) == 24 and text(app, "#strength-admin_password") == "strong"
        # A '%' in a database password is refused with the reason.
        scr.query_one("#secret-keystone_db_password").value = "pa%ss-word-123"
        await pilot.pause()
        assert "configparser" in text(app, "#error-keystone_db_password")
        await pilot.press("ctrl+n")
        await pilot.pause()
        assert screen_name(app) == "CredentialsScreen"
        scr.query_one("#secret-keystone_db_password").value = ""
        # Generate all fills the empty ones and keeps the set ones.
        admin = f.value
        await pilot.press("ctrl+g")
        await pilot.pause()
        from tui.tasks.profile import DEFAULT_SERVICES
        from tui.tasks.secrets import GENERATABLE, OWNER

        # Rows of services left off (the compute ones by default) are hidden and stay empty.
        for n in GENERATABLE:
            shown = OWNER[n] in DEFAULT_SERVICES
            assert scr.query_one(f"#row-{n}").display == shown, n
            assert bool(scr.query_one(f"#secret-{n}").value) == shown, n
        assert any(OWNER[n] not in DEFAULT_SERVICES for n in GENERATABLE)
        assert f.value == admin
        assert not scr.query_one("#save-secrets").value, "save-secrets is off by default"


# -- services ---------------------------------------------------------------------------------
def test_dependency_rules_pure():
    from tui.screens.services import dependents, requires, toggle

    assert requires("glance") == {"keystone", "mariadb", "memcached"}
    assert dependents("mariadb") == {"keystone", "glance", "placement", "neutron", "nova",
                                     "horizon"}
    sel, msg = toggle(set(), "horizon", True)
    assert sel == {"horizon", "keystone", "mariadb", "memcached"}
    assert msg == "Horizon needs MariaDB, Memcached and Keystone: turned on too."
    sel, msg = toggle({"rabbitmq"}, "glance", True)
    assert sel == {"rabbitmq", "glance", "keystone", "mariadb", "memcached"}
    assert msg == "Glance needs MariaDB, Memcached and Keystone: turned on too."
    sel, msg = toggle(sel, "memcached", False)
    assert sel == {"rabbitmq", "mariadb"}
    assert msg == "Keystone and Glance turned off too: they need Memcached."


async def test_dependency_rules_on_screen(home):
    from textual.widgets import SelectionList

    app = make_test_app()
    async with app.run_test(size=SIZE) as pilot:
        await to_host(pilot)
        await pilot.press("ctrl+n", "ctrl+n")
        await pilot.pause()
        assert screen_name(app) == "ServicesScreen"
        sl = app.screen.query_one("#service-list", SelectionList)
        sl.focus()
        # MariaDB is the first row: turning it off turns off Keystone and Glance.
        sl.highlighted = 0
        await pilot.press("space")
        await pilot.pause()
        assert set(sl.selected) == {"rabbitmq", "memcached"}
        assert "Keystone and Glance turned off too: they need MariaDB." in text(app, "#deps-note")
        assert app.screen.query_one("#image-file").parent.disabled, "no Glance, no image"
        # Glance (last row) back on brings what it needs.
        sl.highlighted = 4
        await pilot.press("space")
        await pilot.pause()
        assert set(sl.selected) == set(pr.DEFAULT_SERVICES)
        assert "Glance needs MariaDB and Keystone: turned on too." in text(app, "#deps-note")
        # The stored profile is always consistent.
        app.store_all()
        assert pr.validation_errors(app.state.profile) == [] or all(
            k != "openstack.services" for k, _ in pr.validation_errors(app.state.profile))


async def test_services_validation(home):
    app = make_test_app()
    async with app.run_test(size=SIZE) as pilot:
        await to_host(pilot)
        await pilot.press("ctrl+n", "ctrl+n")
        await pilot.pause()
        scr = app.screen
        assert scr.query_one("#image-url").value == pr.DEFAULT_IMAGE_URL  # the default
        scr.query_one("#image-url").value = ""
        await pilot.press("ctrl+n")  # neither a file nor a URL
        await pilot.pause()
        assert screen_name(app) == "ServicesScreen"
        assert ("choose an image file (ctrl+o) or give its URL; or untick 'upload an image'"
                in text(app, "#image-error"))
        scr.query_one("#image-file").value = "~/cirros.img"
        await pilot.pause()
        scr.query_one("#image-url").value = "https://example.org/x.img"
        await pilot.pause()
        assert "not both" in text(app, "#image-error")
        scr.query_one("#image-file").value = ""
        scr.query_one("#image-url").value = "ftp://example.org/x.img"
        scr.query_one("#region").value = "bad region"
        scr.query_one("#endpoint").value = "not a host"
        await pilot.pause()
        assert "not an http(s) URL" in text(app, "#image-error")
        assert "RegionOne" in text(app, "#region-error")
        assert "not a host name or IP address" in text(app, "#endpoint-error")
        scr.query_one("#image-url").value = "https://example.org/x.img"
        scr.query_one("#region").value = "RegionTwo"
        scr.query_one("#endpoint").value = "api.example.org"
        await pilot.pause()
        await pilot.press("ctrl+n")
        await pilot.pause()
        assert screen_name(app) == "ReviewScreen"
        o = app.state.profile.openstack
        assert (o.region, o.endpoint_host) == ("RegionTwo", "api.example.org")
        assert app.state.profile.image.url == "https://example.org/x.img"


# -- review -------------------------------------------------------------------------------
async def test_review_shows_plan_and_step_detail_masked(home):
    from textual.widgets import Tree

    app = make_test_app()
    async with app.run_test(size=SIZE) as pilot:
        await to_review(pilot)
        tree = app.screen.query_one("#plan", Tree)
        phases = [n.data.id for n in tree.root.children]
        assert phases[:3] == ["preflight", "prepare", "mariadb"] and "glance" in phases
        mariadb = next(n for n in tree.root.children if n.data.id == "mariadb")
        dbs = next(n for n in mariadb.children if n.data.id == "mariadb.databases")
        tree.move_cursor(dbs)
        await pilot.pause()
        detail = text(app, "#step-detail")
        assert "Databases, users and grants" in detail
        assert "********" in detail
        for value in app.state.secrets.values():
            assert value not in detail
        keystone = next(n for n in tree.root.children if n.data.id == "keystone")
        conf = keystone.children[0]
        tree.move_cursor(conf)
        await pilot.pause()
        assert "/etc/keystone/keystone.conf" in text(app, "#step-detail")


# -- progress: retry / skip / abort reach the engine -------------------------------------------
async def test_retry_reaches_the_engine(home):
    plan = small_plan()
    calls = fail_first(plan, "prepare.packages")
    rf = runner_factory(plan=plan)
    app = make_test_app(runner_factory=rf)
    async with app.run_test(size=SIZE) as pilot:
        await to_review(pilot)
        await start_install(pilot)
        await wait_for(pilot, lambda: screen_name(app) == "FailureModal", what="failure modal")
        assert "The package install failed." in text(app, "#error-text")
        assert "check the package repository" in text(app, "#error-text")
        tail = app.screen.query_one("#tail")
        assert "E: Unable to locate package glance-apii" in "\n".join(tail.lines)
        await pilot.press("r")
        prog = app.screen_stack[-1]
        await wait_for(pilot, lambda: getattr(app.screen, "stage", "") == "finished",
                       what="run end")
        runner = rf.made[-1]
        assert runner.decisions == [("prepare.packages", e.Decision.RETRY)]
        assert calls["calls"] == 2
        assert app.screen.result.ok
        assert app.screen.steps["prepare.packages"].status == "done"
        st = e.RunState.load(e.state_path(app.state.profile.name, "10.0.0.2"))
        assert st.finished and st.status("prepare.packages") == e.Status.DONE
        # Summary from the progress screen.
        await pilot.press("ctrl+n")
        await pilot.pause()
        assert screen_name(app) == "SummaryScreen"
        assert prog is not app.screen


async def test_skip_reaches_the_engine(home):
    plan = small_plan()
    fail_first(plan, "mariadb.service", times=99)
    rf = runner_factory(plan=plan)
    app = make_test_app(runner_factory=rf)
    async with app.run_test(size=SIZE) as pilot:
        await to_review(pilot)
        await start_install(pilot)
        await wait_for(pilot, lambda: screen_name(app) == "FailureModal", what="failure modal")
        await pilot.press("s")
        await wait_for(pilot, lambda: getattr(app.screen, "stage", "") == "finished",
                       what="run end")
        scr = app.screen
        assert rf.made[-1].decisions == [("mariadb.service", e.Decision.SKIP)]
        assert scr.steps["mariadb.service"].status == "skipped"
        assert scr.steps["finish.verify"].status == "done", "the run went on after the skip"
        assert not scr.result.ok and not scr.result.aborted
        assert str(scr.step_label(scr.steps["mariadb.service"])).startswith("↷")


async def test_abort_reaches_the_engine_and_run_again_resumes(home):
    plan = small_plan()
    calls = fail_first(plan, "mariadb.config", times=1)
    rf = runner_factory(plan=plan)
    app = make_test_app(runner_factory=rf)
    async with app.run_test(size=SIZE) as pilot:
        await to_review(pilot)
        await start_install(pilot)
        await wait_for(pilot, lambda: screen_name(app) == "FailureModal", what="failure modal")
        await pilot.press("a")
        await wait_for(pilot, lambda: getattr(app.screen, "stage", "") == "finished",
                       what="run end")
        scr = app.screen
        assert rf.made[-1].decisions == [("mariadb.config", e.Decision.ABORT)]
        assert scr.result.aborted
        assert scr.steps["mariadb.service"].status == "pending", "nothing after the abort"
        st = e.RunState.load(e.state_path(app.state.profile.name, "10.0.0.2"))
        assert st.unfinished() and st.status("mariadb.config") == e.Status.FAILED
        assert scr.check_action("rerun", ()) and not scr.check_action("cancel_step", ())
        # ctrl+r runs again: the failed step now passes, the run finishes.
        await pilot.press("ctrl+r")
        await wait_for(pilot, lambda: scr.stage == "finished" and scr.result is not None
                       and scr.result.ok, what="second run")
        assert calls["calls"] == 2
        assert e.RunState.load(e.state_path(app.state.profile.name, "10.0.0.2")).finished


async def test_cancel_a_running_step(home):
    plan = small_plan()
    block_step(plan, "prepare.packages", ["Unpacking mariadb-server ..."])
    rf = runner_factory(plan=plan)
    app = make_test_app(runner_factory=rf)
    async with app.run_test(size=SIZE) as pilot:
        await to_review(pilot)
        await start_install(pilot)
        scr = app.screen
        await wait_for(pilot, lambda: scr.running_id == "prepare.packages", what="running")
        await wait_for(pilot, lambda: "Unpacking mariadb-server ..." in scr.query_one("#log").lines,
                       what="output in the log pane")
        assert "Install the packages" in text(app, "#log-title")
        await pilot.press("c")
        await wait_for(pilot, lambda: screen_name(app) == "FailureModal", what="failure modal")
        assert "Cancelled" in text(app, "#error-text")
        await pilot.press("a")
        await wait_for(pilot, lambda: scr.stage == "finished", what="run end")
        assert scr.steps["prepare.packages"].status == "failed"


async def test_full_log_from_the_failure_modal(home):
    plan = small_plan()
    fail_first(plan, "prepare.packages")
    app = make_test_app(runner_factory=runner_factory(plan=plan))
    async with app.run_test(size=SIZE) as pilot:
        await to_review(pilot)
        await start_install(pilot)
        await wait_for(pilot, lambda: screen_name(app) == "FailureModal", what="failure modal")
        await pilot.press("l")
        await wait_for(pilot, lambda: screen_name(app) == "FullLogScreen", what="full log")
        lines = "\n".join(app.screen.query_one("#full-log").lines)
        assert "prepare.packages" in lines and "The package install failed." in lines
        await pilot.press("escape")
        await pilot.pause()
        assert screen_name(app) == "FailureModal"
        await pilot.press("r")
        await wait_for(pilot, lambda: getattr(app.screen, "stage", "") == "finished",
                       what="run end")


async def test_quit_mid_run_asks_first_and_keeps_the_state(home):
    plan = small_plan()
    block_step(plan, "mariadb.config")
    app = make_test_app(runner_factory=runner_factory(plan=plan))
    async with app.run_test(size=SIZE) as pilot:
        await to_review(pilot)
        await start_install(pilot)
        scr = app.screen
        await wait_for(pilot, lambda: scr.running_id == "mariadb.config", what="running")
        await pilot.press("ctrl+q")
        await wait_for(pilot, lambda: screen_name(app) == "ConfirmModal", what="confirm")
        await pilot.press("n")  # keep installing
        await pilot.pause()
        assert app.screen is scr and scr.installing
        await pilot.press("ctrl+q")
        await wait_for(pilot, lambda: screen_name(app) == "ConfirmModal", what="confirm")
        await pilot.press("y")
        await wait_for(pilot, lambda: app.return_code is not None,
                       timeout=20, what="exit")
    st = e.RunState.load(e.state_path("stack-1", "10.0.0.2"))
    assert st.unfinished(), "the state is kept for a resume"
    assert st.status("mariadb.config") == e.Status.FAILED
    assert st.status("prepare.packages") == e.Status.DONE


async def test_connect_refused_host_key_at_run_start(home):
    rf = runner_factory(host_key=True)
    app = make_test_app(runner_factory=rf)
    async with app.run_test(size=SIZE) as pilot:
        await to_review(pilot)
        await start_install(pilot)
        await wait_for(pilot, lambda: screen_name(app) == "HostKeyModal", what="host key")
        await pilot.press("c")
        await wait_for(pilot, lambda: getattr(app.screen, "stage", "") == "stopped",
                       what="stopped")
        assert "not trusted" in text(app, "#run-status")
        await pilot.press("ctrl+r")
        await wait_for(pilot, lambda: screen_name(app) == "HostKeyModal", what="host key")
        await pilot.press("t")
        await wait_for(pilot, lambda: getattr(app.screen, "stage", "") == "finished",
                       what="run end")
        assert app.screen.result.ok and rf.made[-1].connects == 2


async def test_unreadable_run_state_says_what_to_do_in_the_tui(home):
    rf = runner_factory()
    app = make_test_app(runner_factory=rf)
    async with app.run_test(size=SIZE) as pilot:
        await to_review(pilot)
        path = e.state_path(app.state.profile.name, "10.0.0.2")
        path.write_text("{not json")
        await pilot.press("ctrl+n")
        await wait_for(pilot, lambda: screen_name(app) == "MessageModal", what="explanation")
        msg = text(app, "#message")
        assert "cannot be read" in msg and "ctrl+r to start over" in msg
        assert "--reset-state" not in msg, "a CLI flag means nothing in the TUI"
        await pilot.press("enter")
        await wait_for(pilot, lambda: screen_name(app) == "ProgressScreen", what="progress")
        assert "ctrl+r: start over" in text(app, "#run-status")
        await pilot.press("ctrl+r")
        await wait_for(pilot, lambda: getattr(app.screen, "stage", "") == "finished",
                       what="run end")
        assert app.screen.result.ok
        assert path.with_name(path.name + ".unreadable").read_text() == "{not json"
        assert e.RunState.load(path).finished


async def test_summary_verification_details_have_no_terminal_controls(home):
    facts = {"platform": "debian-13", "verification": [
        ["image \x1b]0;owned\x07cirros\x1b[2J active", False, "401 \x1b[31mdenied\r\x00"]]}
    rf = runner_factory(facts=facts)
    app = make_test_app(runner_factory=rf)
    async with app.run_test(size=SIZE) as pilot:
        await to_review(pilot)
        await start_install(pilot)
        await wait_for(pilot, lambda: getattr(app.screen, "stage", "") == "finished",
                       what="run end")
        await pilot.press("ctrl+n")
        await pilot.pause()
        assert screen_name(app) == "SummaryScreen"
        shown = text(app, "#verification")
        assert "image cirros active" in shown and "401 denied" in shown
        assert not any(ch in shown for ch in "\x1b\x07\r\x00"), repr(shown)


# -- start screen: resume, profiles ---------------------------------------------------------------
async def test_resume_offer_for_an_unfinished_run(home):
    p = save_profile("lab")
    unfinished_state(p)
    rf = runner_factory()
    app = make_test_app(runner_factory=rf)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert "unfinished (2 done)" in str(app.screen.query_one("#profiles").get_row("lab"))
        assert "r: resume it" in text(app, "#profile-hint")
        await pilot.press("enter")  # load: the offer comes up
        await wait_for(pilot, lambda: screen_name(app) == "ResumeModal", what="resume offer")
        assert "stopped at prepare.packages" in text(app, "#resume-text")
        await pilot.press("r")
        await wait_for(pilot, lambda: getattr(app.screen, "stage", "") == "finished",
                       what="resumed run")
        assert app.screen.resumed and app.screen.result.ok
        started = [ev for ev in rf.made[-1].events if isinstance(ev, e.RunStarted)]
        assert started[0].resumed


def test_the_resume_offer_names_every_step_cut_off_on_every_host(home):
    """Several hosts at work when the run died: the offer names each host's interrupted step
    (the controller's first), not the first unfinished one in plan order."""
    from tui.app import StackApp

    p = save_profile("lab")
    st = unfinished_state(p, failed=None)
    st.steps["lab-3:prepare.packages"] = {"status": "running"}
    st.steps["nova.schema"] = {"status": "running"}
    st.steps["lab-2:prepare.packages"] = {"status": "running"}
    st.save()
    assert StackApp.unfinished_run(p) == (
        2, 5, "nova.schema, lab-3:prepare.packages and lab-2:prepare.packages")
    st.steps["lab-3:prepare.packages"] = st.steps["lab-2:prepare.packages"] = {"status": "done"}
    st.save()
    assert StackApp.unfinished_run(p) == (4, 5, "nova.schema")
    unfinished_state(p)
    assert StackApp.unfinished_run(p)[2] == "prepare.packages"   # failed: the first not done


async def test_resume_offer_with_profile_argument(home):
    p = save_profile("lab")
    unfinished_state(p)
    app = make_test_app(profile="lab")
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: screen_name(app) == "ResumeModal", what="resume offer")
        await pilot.press("v")  # review first
        await wait_for(pilot, lambda: screen_name(app) == "ReviewScreen", what="review")
    app = make_test_app(profile="lab")
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: screen_name(app) == "ResumeModal", what="resume offer")
        await pilot.press("escape")
        await wait_for(pilot, lambda: screen_name(app) == "HostScreen", what="host")


async def test_profile_save_load_round_trip(home):
    app = make_test_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("ctrl+s")  # nothing loaded yet: says so, saves nothing
        await pilot.pause()
        assert pr.list_profiles() == []
        await to_host(pilot, "192.0.2.44")
        scr = app.screen
        scr.query_one("#name").value = "rack1"
        scr.query_one("#port").value = "2200"
        scr.query_one("#user").value = "deploy"
        scr.query_one("#auth-key").value = True
        scr.query_one("#key_file").value = "~/.ssh/id_ed25519"
        scr.query_one("#sudo_password").value = "sudo-Pa55word"
        await pilot.pause()
        await pilot.press("ctrl+n")
        await pilot.pause()
        app.screen.query_one("#secret-admin_password").value = "Adm1n-Secret-Value"
        await pilot.press("ctrl+n")
        await pilot.pause()
        app.screen.query_one("#region").value = "RegionTwo"
        app.screen.query_one("#demo").value = False
        app.screen.query_one("#image-file").value = "~/cirros.img"
        await pilot.press("ctrl+s")  # saves from any screen
        await pilot.pause()
    path = pr.paths.profiles_dir() / "rack1.toml"
    raw = path.read_text()
    assert "Adm1n-Secret-Value" not in raw and "sudo-Pa55word" not in raw
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    loaded = pr.load("rack1")
    assert (loaded.host.address, loaded.host.port, loaded.host.user) == ("192.0.2.44", 2200,
                                                                        "deploy")
    assert loaded.host.key_file == "~/.ssh/id_ed25519"
    assert (loaded.openstack.region, loaded.openstack.demo) == ("RegionTwo", False)
    assert loaded.image.file == "~/cirros.img"
    assert loaded.inline_secrets == {}
    secrets_file = loaded.secrets_file
    assert stat.S_IMODE(secrets_file.stat().st_mode) == 0o600
    stored = tomllib.loads(secrets_file.read_text())
    assert stored["admin_password"] == "Adm1n-Secret-Value"
    assert stored["sudo_password"] == "sudo-Pa55word"

    # Load it back through the start screen: every screen shows what was saved.
    app = make_test_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await pilot.press("enter")
        await wait_for(pilot, lambda: screen_name(app) == "HostScreen", what="host")
        scr = app.screen
        assert scr.query_one("#address").value == "192.0.2.44"
        assert scr.query_one("#port").value == "2200"
        assert scr.query_one("#auth-key").value
        assert scr.query_one("#sudo_password").value == "sudo-Pa55word"
        await pilot.press("ctrl+n")
        await pilot.pause()
        f = app.screen.query_one("#secret-admin_password")
        assert f.value == "Adm1n-Secret-Value" and f.password
        # Now keep the secrets in the profile itself.
        app.screen.query_one("#save-secrets").value = True
        await pilot.press("ctrl+n")
        await pilot.pause()
        assert app.screen.query_one("#region").value == "RegionTwo"
        await pilot.press("ctrl+s")
        await pilot.pause()
    loaded = pr.load("rack1")
    assert loaded.inline_secrets["admin_password"] == "Adm1n-Secret-Value"
    assert "[secrets]" in path.read_text()


async def test_duplicate_and_delete_profiles(home):
    save_profile("lab")
    app = make_test_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await pilot.press("d")
        await wait_for(pilot, lambda: screen_name(app) == "NameModal", what="name modal")
        assert app.screen.query_one("#name").value == "lab-copy"
        app.screen.query_one("#name").value = "lab"
        await pilot.press("enter")
        await pilot.pause()
        assert "exists already" in text(app, "#name-error")
        app.screen.query_one("#name").value = "lab2"
        await pilot.press("enter")
        await pilot.pause()
        assert pr.list_profiles() == ["lab", "lab2"]
        assert pr.load("lab2").host.address == "10.0.0.2"
        await pilot.press("x")
        await wait_for(pilot, lambda: screen_name(app) == "ConfirmModal", what="confirm")
        await pilot.press("n")
        await pilot.pause()
        assert pr.list_profiles() == ["lab", "lab2"]
        await pilot.press("x")
        await wait_for(pilot, lambda: screen_name(app) == "ConfirmModal", what="confirm")
        await pilot.press("y")
        await pilot.pause()
        assert pr.list_profiles() == ["lab"]


async def test_broken_profile_is_explained(home):
    save_profile("lab")
    (pr.paths.profiles_dir() / "bad.toml").write_text("version = 1\n[host]\naddress = 3\n")
    app = make_test_app(profile=None)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        row = app.screen.query_one("#profiles").get_row("bad")
        assert "broken" in str(row[1])
        app.open_profile("bad")
        await pilot.pause()
        assert screen_name(app) == "StartScreen"


def test_run_app_refuses_a_missing_profile(home, capsys):
    from tui.app import run_app

    assert run_app("nosuch") == 2
    assert "cannot use profile" in capsys.readouterr().err


# -- palette, bindings, first paint -------------------------------------------------------------
async def test_command_palette_has_the_main_actions(home):
    app = make_test_app()
    async with app.run_test(size=SIZE) as pilot:
        await to_host(pilot)
        titles = [c.title for c in app.get_system_commands(app.screen)]
        for want in ("Save profile", "New session", "Test connection", "Generate all secrets",
                     "Start install", "Go to Review", "Quit"):
            assert want in titles
        await pilot.press("ctrl+p")
        await pilot.pause()
        assert screen_name(app) == "CommandPalette"
        await pilot.press(*"test conn")
        await pilot.pause(0.3)
        await pilot.press("enter")
        await wait_for(pilot, lambda: screen_name(app) == "HostKeyModal", what="palette test")
        await pilot.press("c")


async def test_every_screen_shows_its_bindings_in_the_footer(home):
    from textual.widgets import Footer

    app = make_test_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()

        def footer_keys():
            footer = app.screen.query_one(Footer)
            return " ".join(str(c.render()) for c in footer.children)

        await wait_for(pilot, lambda: "New session" in footer_keys(), what="start footer")
        await to_host(pilot)
        await wait_for(pilot, lambda: "Test" in footer_keys(), what="host footer")
        for word in ("Back", "Next", "Quit", "Save"):
            assert word in footer_keys()


def test_first_paint_imports_no_ssh_or_openstack_clients():
    import subprocess

    code = ("import sys, time; t = time.perf_counter(); import tui.app, tui.screens.start; "
            "bad = [m for m in ('paramiko', 'keystoneauth1', 'glanceclient', 'pymysql') "
            "if m in sys.modules]; print(bad, round(time.perf_counter() - t, 3))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, cwd=os.path.dirname(os.path.dirname(__file__)))
    bad, secs = out.stdout.split("]")
    assert bad == "[", out.stdout + out.stderr
    print(f"import of the TUI: {float(secs):.3f} s")


async def test_first_paint_is_fast(home):
    import time

    t0 = time.perf_counter()
    app = make_test_app()
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: screen_name(app) == "StartScreen", what="start")
        took = time.perf_counter() - t0
    print(f"first paint (headless): {took:.3f} s")
    assert took < 3.0


async def test_generated_secrets_survive_a_later_save(home):
    """The run generates the empty passwords; going back and saving keeps them."""
    import tomllib

    app = make_test_app()
    async with app.run_test(size=SIZE) as pilot:
        await to_review(pilot)
        await start_install(pilot)
        await wait_for(pilot, lambda: getattr(app.screen, "stage", "") == "finished",
                       what="run end")
        generated = dict(app.state.secrets)
        assert {"admin_password", "keystone_db_password"} <= set(generated)
        await pilot.press("escape")  # back to the review, then the credentials
        await wait_for(pilot, lambda: screen_name(app) == "ReviewScreen", what="review")
        app.go("credentials")
        await pilot.pause()
        f = app.screen.query_one("#secret-admin_password")
        assert f.value == generated["admin_password"] and f.password
        await pilot.press("ctrl+s")
        await pilot.pause()
    stored = tomllib.loads(pr.load("stack-1").secrets_file.read_text())
    for name in ("admin_password", "demo_password", "keystone_db_password"):
        assert stored[name] == generated[name]


async def test_new_session_from_a_wizard_screen_starts_clean(home):
    save_profile("lab", "10.3.3.3")
    app = make_test_app()
    async with app.run_test(size=SIZE) as pilot:
        await to_host(pilot, "10.7.7.7")
        first = app.screen
        app.new_session()  # e.g. from the command palette
        await pilot.pause()
        assert screen_name(app) == "HostScreen" and app.screen is not first
        assert app.screen.query_one("#address").value == ""
        assert app.state.profile.host.address == ""
        app.open_profile("lab")
        await pilot.pause()
        assert app.screen.query_one("#address").value == "10.3.3.3"
        await pilot.pause(0.6)
        assert app.is_screen_installed("host-3")
        assert not any(app.is_screen_installed(f"host-{g}") for g in (1, 2)), "old ones pruned"


async def test_summary_runs_tempest_with_progress(home, monkeypatch):
    """t on the summary runs Tempest (the engine's tempest module) and shows its count."""
    from pathlib import Path

    from tui.tasks import tempest

    seen = {}

    def fake_run(profile, *, on_result=None, log=print, **kw):
        seen["profile"] = profile.name
        log("running Tempest 47.0.0")
        for n, (tid, st) in enumerate([("tempest.api.identity.v3.T.test_a", "ok"),
                                       ("tempest.api.image.v2.T.test_b", "skipped"),
                                       ("tempest.api.image.v2.T.test_c", "ok")], 1):
            on_result(tid, st, n)
        return tempest.TempestResult(passed=2, skipped=1, duration=3,
                                     report=Path("/tmp/x/tempest.subunit"))

    monkeypatch.setattr(tempest, "run_for_profile", fake_run)
    rf = runner_factory(plan=small_plan())
    app = make_test_app(runner_factory=rf)
    async with app.run_test(size=SIZE) as pilot:
        await to_review(pilot)
        await start_install(pilot)
        await wait_for(pilot, lambda: getattr(app.screen, "stage", "") == "finished",
                       what="run end")
        await pilot.press("ctrl+n")
        await pilot.pause()
        assert screen_name(app) == "SummaryScreen"
        await pilot.press("t")
        await wait_for(pilot, lambda: "Tempest: 2 passed, 0 failed, 1 skipped"
                       in text(app, "#tempest"), what="tempest summary")
        assert "tempest.subunit" in text(app, "#tempest")
        assert seen["profile"] == app.state.profile.name
        assert app.screen.tempest_result.ok and not app.screen.tempest_running
