"""End to end through the screens: a fresh sandbox host, the TUI driven with the Pilot from
Start to Summary, one injected step failure answered with Retry, then the cloud checked from
outside with keystoneauth1 and glanceclient.

Nothing is faked but the one failure: real SSH (the test trusts the new host key in the
modal), the real engine and deploy steps, real packages.
"""

from __future__ import annotations

import time

import pytest

from tests import cloud
from tests.test_tui_fakes import screen_name, wait_for

pytestmark = pytest.mark.e2e

FAIL_STEP = "mariadb.service"


def failing_once_runner():
    """The real LiveRunner; after connecting, FAIL_STEP fails once with a StepError."""
    from tui.app import LiveRunner
    from tui.tasks.engine import StepError

    calls = {"run": 0, "check": 0}

    class FailingOnce(LiveRunner):
        def connect(self, confirm_host_key):
            plan = super().connect(confirm_host_key)
            step = plan.find(FAIL_STEP)
            run, check = step.run, step.check

            def first_check(ctx):  # the first attempt must reach run() even on a warm host
                calls["check"] += 1
                return False if calls["check"] == 1 else bool(check and check(ctx))

            def failing_run(ctx):
                calls["run"] += 1
                if calls["run"] == 1:
                    ctx.output("injected failure: pretending MariaDB did not start")
                    raise StepError("Could not start mariadb (injected by the test).",
                                    "the test makes this step fail once",
                                    "Retry: the second attempt runs the real step")
                return run(ctx)

            step.check, step.run = first_check, failing_run
            return plan

    return FailingOnce, calls


@pytest.mark.one_release  # Debian 12 goes through the screens in tests/e2e/test_compute_e2e.py
async def test_tui_installs_a_fresh_host_with_one_retry(sandbox_factory, stack_home, release):
    """On Debian 13 (the default, what `bash try.sh` opens) only Enter and ctrl+n are pressed,
    as a newcomer taking every default would: `sandbox up` has trusted the host keys it
    made, the injected failure's dialog has Retry focused.  On Debian 12 the connection is
    tested first and the unknown host key is trusted in its dialog."""
    from tui.app import make_app
    from tui.cli import write_sandbox_profile
    from tui.tasks import engine as e
    from tui.tasks import sandbox

    enter_only = release == "13"
    name = f"tui-e2e{release}"
    info = sandbox_factory(name, release=release)
    write_sandbox_profile(info, name=name)
    if enter_only:
        sandbox.trust_own_host_keys(info)  # what `stack-tui sandbox up` does
    runner_cls, calls = failing_once_runner()
    app = make_app(name, runner_factory=runner_cls, blink=False, animations=False)
    t0 = time.monotonic()
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: screen_name(app) == "HostScreen", what="host screen")
        assert app.screen.query_one("#address").value == info.address

        if not enter_only:
            # Test connection: the new host's key is unknown, so the modal asks; trust it.
            await pilot.press("ctrl+t")
            await wait_for(pilot, lambda: screen_name(app) == "HostKeyModal", timeout=60,
                           what="host key modal")
            assert "SHA256:" in str(app.screen.fingerprint)
            await pilot.press("t")
            await wait_for(pilot, lambda: app.state.facts is not None, timeout=60,
                           what="connection test result")
            facts = app.state.facts
            assert facts.platform_id == f"debian-{info.release}" and facts.ram and facts.disk_free

        # Credentials (empty: generated), Services as the profile says, Review, Start.
        await pilot.press("ctrl+n")
        await wait_for(pilot, lambda: screen_name(app) == "CredentialsScreen", what="creds")
        if not enter_only:
            await pilot.press("ctrl+g")
        await pilot.press("ctrl+n")
        await wait_for(pilot, lambda: screen_name(app) == "ServicesScreen", what="services")
        await pilot.press("enter" if enter_only else "ctrl+n")
        await wait_for(pilot, lambda: screen_name(app) == "ReviewScreen", what="review")
        await pilot.press("ctrl+n")
        await wait_for(pilot, lambda: screen_name(app) in ("ProgressScreen", "HostKeyModal"),
                       what="progress screen")
        progress = next(s for s in app.screen_stack if hasattr(s, "stage"))

        # The injected failure: the modal explains it; Retry.
        def failure_or_end():
            if screen_name(app) == "HostKeyModal":
                assert not enter_only, "asked about a key `sandbox up` had trusted"
                app.screen.dismiss(True)
            return screen_name(app) == "FailureModal" or progress.stage in ("finished",
                                                                             "stopped")

        await wait_for(pilot, failure_or_end, timeout=900, what="the injected failure")
        assert screen_name(app) == "FailureModal", progress.query_one("#run-status").content
        assert app.screen.step_id == FAIL_STEP
        assert "injected by the test" in app.screen.info.what
        await pilot.press("enter" if enter_only else "r")

        # The rest of the install, to the end.
        def ended():
            if screen_name(app) == "FailureModal":  # an unexpected failure: stop and show it
                return True
            return progress.stage in ("finished", "stopped")

        await wait_for(pilot, ended, timeout=1500, what="the end of the install")
        if screen_name(app) == "FailureModal":
            modal = app.screen
            pytest.fail(f"{modal.step_id} failed: {modal.info.text()}\n" + "\n".join(modal.tail))
        assert progress.result is not None and progress.result.ok, progress.result
        assert calls["run"] >= 2, "the failed step was retried"
        assert progress.steps[FAIL_STEP].status == "done"
        assert all(sv.status in ("done", "already done") for sv in progress.steps.values())

        await pilot.press("ctrl+n")
        await wait_for(pilot, lambda: screen_name(app) == "SummaryScreen", what="summary")
        report = app.screen.report
        assert report.ok
        checks = report.facts["verification"]
        assert checks and all(ok for _, ok, _ in checks), checks
        admin_password = app.state.secrets["admin_password"]
        demo_password = app.state.secrets["demo_password"]
        local = report.facts["local_files"]
    took = time.monotonic() - t0
    print(f"TUI install of a fresh host with one retry: {took:.0f} s")

    st = e.RunState.load(e.state_path(name, info.address))
    assert st.finished

    # The cloud works, seen from outside.
    from pathlib import Path

    for name in ("admin-openrc.sh", "demo-openrc.sh", "clouds.yaml"):
        assert (Path(local) / name).is_file()
    assert cloud.token(info.address, "admin", admin_password, "admin")
    assert cloud.token(info.address, "demo", demo_password, "demo")
    images = cloud.images(info.address, admin_password)
    assert any(i["name"] == "cirros" and i["status"] == "active" for i in images), images
    sandbox_factory.remove(name)
