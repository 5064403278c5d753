"""Opening a profile from the command line (`stack-tui NAME`, what the e2e and try.sh do).

The Start screen used to be switched away while it was still composing, which left the Host
screen without its fields (NoMatches '#address' in CI).  It failed on the first attempt here
before the fix; a few rounds keep it honest on a fast machine."""

from __future__ import annotations

import pytest

from tests.test_tui_fakes import make_test_app, screen_name, wait_for


@pytest.mark.parametrize("round_", range(5))
async def test_opening_a_profile_shows_a_whole_host_screen(isolated_home, round_):
    from tui.tasks import profile as pr

    p = pr.Profile(name="opened")
    p.host.address = "192.0.2.5"
    pr.save(p)
    app = make_test_app(profile="opened")
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: screen_name(app) == "HostScreen", what="host screen")
        assert app.screen.query_one("#address").value == "192.0.2.5"
        assert app.screen.auth in ("key", "agent", "password")
        assert [type(s).__name__ for s in app.screen_stack][-1] == "HostScreen"
