"""The Host screen's list of hosts and the Review's "what goes where", driven with Pilot:
add a compute host, edit it, remove it, the controller's rules, saving every host, the
connection test and host key of the picked host (fake transport, no SSH)."""

from __future__ import annotations

import pytest

from tests.test_tui_fakes import (
    FakeTransport,
    make_test_app,
    save_profile,
    screen_name,
    setup_home,
    transport_factory,
    wait_for,
)
from tests.test_tui_pilot import text, to_host
from tui.tasks import profile as pr

SIZE = (100, 30)


@pytest.fixture
def home(monkeypatch, tmp_path):
    return setup_home(monkeypatch, tmp_path)


def three_hosts(services=None):
    """A saved profile 'lab': the controller and compute1, compute2."""
    p = save_profile("lab", "10.0.0.2")
    p.hosts += [pr.HostConfig(name=f"compute{n}", roles=["compute"], address=f"10.0.0.{n + 2}",
                              key_file="~/.ssh/id_ed25519") for n in (1, 2)]
    if services is not None:
        p.openstack.services = services
    pr.save(p)
    return p


def rows(app) -> list[list[str]]:
    """The host list as plain text, one list of cells per row."""
    table = app.screen.query_one("#host-list")
    return [[str(getattr(c, "plain", c)) for c in table.get_row_at(i)]
            for i in range(table.row_count)]


def notes(app) -> str:
    return "\n".join(n.message for n in app._notifications)


async def pick(pilot, index: int):
    """Move the list's cursor to the host at ``index`` (the form then edits it)."""
    table = pilot.app.screen.query_one("#host-list")
    table.focus()
    table.move_cursor(row=index)
    await wait_for(pilot, lambda: pilot.app.screen.current == index, what=f"host {index}")
    await pilot.pause()


async def test_one_host_shows_no_list_and_adding_a_host_shows_it(home):
    app = make_test_app()
    async with app.run_test(size=SIZE) as pilot:
        await to_host(pilot, "10.0.0.2")
        scr = app.screen
        assert not scr.query_one("#host-list").display
        assert not scr.query_one("#host-name-row").display
        await pilot.press("ctrl+b")
        await pilot.pause()
        hosts = app.state.profile.hosts
        assert [(h.name, h.roles) for h in hosts] == [("controller", ["controller", "compute"]),
                                                      ("compute1", ["compute"])]
        # The new host logs in like the controller, has no address yet and is in the form.
        assert (hosts[1].address, hosts[1].port, hosts[1].user) == ("", 22, "root")
        assert scr.query_one("#host-list").display and scr.query_one("#host-name-row").display
        assert scr.query_one("#host_name").value == "compute1"
        assert scr.query_one("#address").value == ""
        assert app.focused is scr.query_one("#address")
        assert not scr.query_one("#address-error").display  # not shouted at before typing
        assert not scr.query_one("#role-controller").value and scr.query_one("#role-compute").value
        assert [r[0] for r in rows(app)] == ["controller", "compute1"]
        # A second one is compute2 ("a" in the list adds too); a freed name is used again.
        scr.query_one("#host-list").focus()
        await pilot.press("a")
        await pilot.pause()
        assert [h.name for h in hosts] == ["controller", "compute1", "compute2"]
        scr.query_one("#host_name").value = "spare"
        await pilot.press("ctrl+b")
        await pilot.pause()
        assert [h.name for h in hosts] == ["controller", "compute1", "spare", "compute2"]


async def test_the_host_screens_footer_keeps_quit_on_80_columns(home):
    """Every key the footer shows fits an 80-column terminal beside the palette's (Browse,
    whose button names its key, is not among them)."""
    from textual.widgets._footer import FooterKey

    three_hosts()
    app = make_test_app(profile="lab")
    async with app.run_test(size=(80, 24)) as pilot:
        await to_host(pilot, "10.0.0.2")
        await pilot.pause()
        keys = [k for k in app.screen.query(FooterKey) if k.display]
        shown = {k.description for k in keys}
        assert {"Back", "Next", "Test", "Add host", "Remove host", "Quit"} <= shown, shown
        assert "Browse" not in shown
        palette = [k for k in keys if k.key == "ctrl+p"]
        right = min([k.region.x for k in palette] or [80])
        assert all(k.region.right <= right for k in keys if k.key != "ctrl+p"), \
            [(k.description, k.region) for k in keys]
        assert "Browse (ctrl+o)" in str(app.screen.query_one("#browse").label)


async def test_edit_a_compute_host_then_remove_it(home):
    app = make_test_app()
    async with app.run_test(size=SIZE) as pilot:
        await to_host(pilot, "10.0.0.2")
        await pilot.press("ctrl+b")
        await pilot.pause()
        scr = app.screen
        scr.query_one("#host_name").value = "node-a"
        scr.query_one("#address").value = "10.0.0.3"
        await pilot.pause()
        hosts = app.state.profile.hosts
        assert (hosts[1].name, hosts[1].address) == ("node-a", "10.0.0.3")
        assert rows(app)[1][:3] == ["node-a", "compute", "10.0.0.3"]
        # Picking the controller loads it; picking node-a again shows what was typed.
        await pick(pilot, 0)
        assert scr.query_one("#address").value == "10.0.0.2"
        assert scr.query_one("#host_name").value == "controller"
        await pick(pilot, 1)
        assert scr.query_one("#address").value == "10.0.0.3"
        # Remove it: asked first; "no" keeps it, "yes" removes it.
        await pilot.press("ctrl+r")
        await wait_for(pilot, lambda: screen_name(app) == "ConfirmModal", what="confirm")
        assert "node-a (10.0.0.3)" in str(app.screen.query_one(".box-body").render())
        await pilot.press("n")
        await wait_for(pilot, lambda: screen_name(app) == "HostScreen", what="host")
        assert len(hosts) == 2
        await pilot.press("ctrl+r")
        await wait_for(pilot, lambda: screen_name(app) == "ConfirmModal", what="confirm")
        await pilot.press("y")
        await wait_for(pilot, lambda: len(app.state.profile.hosts) == 1, what="removed")
        await pilot.pause()
        # One host again: the screen is the one-host form, editing the controller.
        assert not scr.query_one("#host-list").display
        assert scr.query_one("#address").value == "10.0.0.2"
        assert app.state.profile.host.address == "10.0.0.2"


async def test_the_controller_is_never_removed(home):
    three_hosts()
    app = make_test_app(profile="lab")
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: screen_name(app) == "HostScreen", what="host")
        assert app.screen.current == 0  # the form starts on the controller
        await pilot.press("ctrl+r")
        await pilot.pause()
        assert screen_name(app) == "HostScreen"  # no question: refused at once
        assert len(app.state.profile.hosts) == 3
        assert "controller (10.0.0.2) is the controller" in notes(app)
        app.screen.query_one("#host-list").focus()
        await pilot.press("x")   # the list's own key: refused the same way
        await pilot.pause()
        assert screen_name(app) == "HostScreen" and len(app.state.profile.hosts) == 3


async def test_a_second_controller_is_refused_with_a_message(home):
    three_hosts()
    app = make_test_app(profile="lab")
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: screen_name(app) == "HostScreen", what="host")
        await pick(pilot, 1)
        scr = app.screen
        scr.query_one("#role-controller").value = True
        await pilot.pause()
        assert not scr.query_one("#role-controller").value
        assert app.state.profile.hosts[1].roles == ["compute"]
        assert "controller (10.0.0.2) is the controller already; exactly one host is" in text(
            app, "#roles-error")
        # Moving the role: untick it on the controller, then tick it on compute1.
        await pick(pilot, 0)
        scr.query_one("#role-controller").value = False
        await pilot.pause()
        assert "no host has the controller role" in text(app, "#roles-error")
        await pick(pilot, 1)
        scr.query_one("#role-controller").value = True
        await pilot.pause()
        assert app.state.profile.host.name == "compute1"
        assert not scr.query_one("#roles-error").display


async def test_names_and_addresses_are_checked_across_the_hosts(home):
    three_hosts()
    app = make_test_app(profile="lab")
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: screen_name(app) == "HostScreen", what="host")
        await pick(pilot, 2)
        scr = app.screen
        scr.query_one("#host_name").value = "Compute1"
        scr.query_one("#address").value = "10.0.0.3"
        await pilot.pause()
        # The profile's own rules, naming the other host as the list does (not hosts[2]).
        assert "'Compute1' is already used by compute1" in text(app, "#host_name-error")
        assert "'10.0.0.3' port 22 is already compute1;" in text(app, "#address-error")
        scr.query_one("#host_name").value = "bad_name"
        await pilot.pause()
        assert "is not a host name" in text(app, "#host_name-error")
        await pilot.press("ctrl+n")
        await pilot.pause()
        assert screen_name(app) == "HostScreen"


async def test_next_goes_to_the_host_with_a_problem(home):
    """A new compute host left without an address: Next picks it and says what is missing."""
    app = make_test_app()
    async with app.run_test(size=SIZE) as pilot:
        await to_host(pilot, "10.0.0.2")
        await pilot.press("ctrl+b")
        await pilot.pause()
        await pick(pilot, 0)
        await pilot.press("ctrl+n")
        await pilot.pause()
        assert screen_name(app) == "HostScreen"
        assert app.screen.current == 1
        assert "enter the server's host name or IP address" in text(app, "#address-error")
        assert app.focused is app.screen.query_one("#address")


async def test_save_and_reload_keeps_every_host(home):
    app = make_test_app()
    async with app.run_test(size=SIZE) as pilot:
        await to_host(pilot, "10.0.0.2")
        scr = app.screen
        scr.query_one("#name").value = "pair"
        scr.query_one("#auth-key").value = True
        scr.query_one("#key_file").value = "~/.ssh/id_ed25519"
        await pilot.pause()
        await pilot.press("ctrl+b")
        await pilot.pause()
        scr.query_one("#address").value = "10.0.0.3"
        scr.query_one("#user").value = "deploy"
        await pilot.pause()
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: (pr.paths.profiles_dir() / "pair.toml").exists(),
                       what="saved profile")
    loaded = pr.load("pair")
    assert [(h.name, h.roles, h.address, h.user, h.key_file) for h in loaded.hosts] == [
        ("controller", ["controller", "compute"], "10.0.0.2", "root", "~/.ssh/id_ed25519"),
        ("compute1", ["compute"], "10.0.0.3", "deploy", "~/.ssh/id_ed25519")]

    app = make_test_app(profile="pair")
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: screen_name(app) == "HostScreen", what="host")
        assert [r[:3] for r in rows(app)] == [["controller", "controller, compute", "10.0.0.2"],
                                              ["compute1", "compute", "10.0.0.3"]]
        await pick(pilot, 1)
        assert app.screen.query_one("#user").value == "deploy"


async def test_log_in_with_follows_the_picked_host_and_no_key_is_lost(home):
    """The controller logs in with a key, compute1 with the agent: picking a host shows its
    own login, and saving keeps the controller's key file."""
    p = three_hosts()
    p.hosts[1].key_file = None
    pr.save(p)
    app = make_test_app(profile="lab")
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: screen_name(app) == "HostScreen", what="host")
        scr = app.screen
        assert scr.query_one("#auth-key").value
        await pick(pilot, 1)
        await wait_for(pilot, lambda: scr.query_one("#auth-agent").value, what="agent login")
        assert not scr.query_one("#key-row").display
        await pick(pilot, 2)
        await wait_for(pilot, lambda: scr.query_one("#auth-key").value, what="key login")
        assert scr.query_one("#key_file").value == "~/.ssh/id_ed25519"
        await pilot.press("ctrl+s")
        await pilot.pause()
    assert [h.key_file for h in pr.load("lab").hosts] == ["~/.ssh/id_ed25519", None,
                                                         "~/.ssh/id_ed25519"]


async def test_test_connection_tests_the_picked_host_and_names_it(home):
    three_hosts()
    FakeTransport.instances.clear()
    app = make_test_app(profile="lab", transport_factory=transport_factory())
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: screen_name(app) == "HostScreen", what="host")
        await pick(pilot, 1)
        await pilot.press("ctrl+t")
        await wait_for(pilot, lambda: screen_name(app) == "HostKeyModal", what="host key")
        assert "Host compute1 (10.0.0.3) is not known yet" in str(
            app.screen.query_one("#fingerprint").render())
        await pilot.press("t")
        await wait_for(pilot, lambda: rows(app)[1][3] == "✓ connected", what="compute1 tested")
        assert FakeTransport.instances[-1].address == "10.0.0.3"
        assert [r[3] for r in rows(app)] == ["not tested", "✓ connected", "not tested"]
        assert "Connected." in text(app, "#test-status")
        # The controller's facts (the plan's platform) are not a compute host's.
        assert app.state.facts is None
        await pick(pilot, 0)
        assert text(app, "#test-status") == ""


async def test_one_host_key_question_is_unchanged(home):
    save_profile("lab", "10.0.0.2")
    app = make_test_app(profile="lab")
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: screen_name(app) == "HostScreen", what="host")
        await pilot.press("ctrl+t")
        await wait_for(pilot, lambda: screen_name(app) == "HostKeyModal", what="host key")
        body = str(app.screen.query_one("#fingerprint").render())
        assert body.startswith("10.0.0.2 is not known yet")


async def _review(pilot):
    app = pilot.app
    await wait_for(pilot, lambda: screen_name(app) == "HostScreen", what="host")
    app.go("review")
    await wait_for(pilot, lambda: screen_name(app) == "ReviewScreen", what="review")
    await pilot.pause()
    return text(app, "#target")


async def test_review_says_what_goes_where_and_in_what_order(home):
    three_hosts(services=list(pr.SERVICES))
    app = make_test_app(profile="lab")
    async with app.run_test(size=SIZE) as pilot:
        shown = " ".join((await _review(pilot)).split())
    assert "What goes where (3 hosts):" in shown
    assert "controller 10.0.0.2 controller, compute: everything selected (9 services) and " \
           "nova-compute" in shown
    assert "compute1 10.0.0.3 compute: nova-compute and the Neutron agent" in shown
    assert "compute2 10.0.0.4 compute: nova-compute and the Neutron agent" in shown
    assert "controller's packages first; then its services while the other hosts install " \
           "theirs; then the compute hosts at once; then a test server on each compute " \
           "host." in shown
    assert "Start refuses" not in shown


async def test_review_without_nova_says_compute_hosts_get_nothing(home):
    three_hosts()  # the default services: no Nova
    app = make_test_app(profile="lab")
    async with app.run_test(size=SIZE) as pilot:
        shown = " ".join((await _review(pilot)).split())
    assert "everything selected (5 services)" in shown and "nova-compute" not in shown
    assert "compute1 10.0.0.3 compute: nothing: a compute host runs instances only when Nova " \
           "is selected" in shown


async def test_review_of_one_host_has_no_hosts_section(home):
    save_profile("lab", "10.0.0.2")
    app = make_test_app(profile="lab")
    async with app.run_test(size=SIZE) as pilot:
        shown = await _review(pilot)
    assert "What goes where" not in shown and "Start refuses" not in shown


async def test_the_progress_tree_groups_the_steps_per_host(home):
    """Start with three hosts: a node per host (its roles), its phases under it; the other
    hosts' phases without their name (the node says it), every step run."""
    from tests.test_tui_fakes import runner_factory, small_plan
    from tests.test_tui_pilot import start_install
    from tui.tasks import engine as e
    from tui.tasks.fleet import on_host

    three_hosts()
    plan = small_plan()
    for n, h in enumerate(("compute1", "compute2")):
        plan.phases.append(on_host(h, e.Phase("prepare", "Prepare the host", [
            e.Step("prepare.packages", "Install the packages", run=lambda c: None)]), 0))
    rf = runner_factory(plan=plan)
    app = make_test_app(profile="lab", runner_factory=rf)
    async with app.run_test(size=SIZE) as pilot:
        app.go("review")
        await wait_for(pilot, lambda: screen_name(app) == "ReviewScreen", what="review")
        await start_install(pilot)
        progress = app.screen
        await wait_for(pilot, lambda: progress.stage in ("finished", "stopped"), what="the end")
        root = progress.query_one("#steps").root
        labels = [str(n.label) for n in root.children]
        under = {str(n.label): [str(c.label) for c in n.children] for n in root.children}
    assert labels == ["controller (controller, compute)", "compute1 (compute)",
                      "compute2 (compute)"]
    assert len(under["controller (controller, compute)"]) == len(small_plan().phases)
    (phase,) = under["compute1 (compute)"]
    assert "Prepare the host" in phase and "compute1" not in phase
    assert progress.stage == "finished"
    assert rf.made[-1].state.status("compute2:prepare.packages") == e.Status.DONE
