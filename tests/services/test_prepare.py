"""prepare's steps on a scripted fake host: the detect and host-name checks only read (no
facts, no output), the runs record the facts, and a re-run from the saved state finds
them already done with the management address still known."""

from __future__ import annotations

import pytest

from tests.fakehost import FakeHost, run_plan
from tui.tasks.engine import Plan, RunState, Status, StepError
from tui.tasks.platforms import PLATFORMS
from tui.tasks.profile import Profile
from tui.tasks.redact import Redactor
from tui.tasks.services import prepare

OS_RELEASE = 'PRETTY_NAME="Debian GNU/Linux 13 (trixie)"\nID=debian\nVERSION_ID="13"\n'


def _profile() -> Profile:
    p = Profile(name="t")
    p.host.address = "10.0.0.5"
    return p


def _host(resolved: str = "10.0.0.5") -> FakeHost:
    host = FakeHost().put("/etc/os-release", OS_RELEASE)
    host.on(r"^hostname; echo ---; getent ahostsv4",
            (0, f"node1\n---\n{resolved}\n---\n127.0.0.1\n10.0.0.5\n"))
    return host


def _steps(plat: str = "debian-13"):
    steps = prepare.phases(_profile(), PLATFORMS[plat], [])[0].steps
    return {s.id: s for s in steps}


def _run(host: FakeHost, state_path) -> tuple[dict[str, Status], dict]:
    ctx = host.ctx(_profile(), state_path=state_path)
    ctx.state = RunState.load(state_path, Redactor()) if state_path.exists() else ctx.state
    ctx.facts = ctx.state.facts
    steps = _steps()
    plan = Plan([prepare.Phase("prepare", "Prepare", [steps["prepare.detect"],
                                                      steps["prepare.hostname"]])],
                platform="debian-13")
    return run_plan(plan, ctx), dict(ctx.facts)


def _outputs(ctx) -> list[str]:
    lines: list[str] = []
    ctx.output = lines.append
    return lines


def test_detect_check_only_reads(tmp_path):
    host = _host()
    ctx = host.ctx(_profile(), state_path=tmp_path / "s.json")
    before = dict(ctx.facts)
    out = _outputs(ctx)
    mark = host.mark()
    assert _steps()["prepare.detect"].check(ctx) is False   # os / release not yet recorded
    assert ctx.facts == before and out == []
    assert host.since(mark) == ([], [])


def test_hosts_check_writes_no_facts_even_when_the_name_resolves(tmp_path):
    host = _host()
    ctx = host.ctx(_profile(), state_path=tmp_path / "s.json")
    before = dict(ctx.facts)
    out = _outputs(ctx)
    assert _steps()["prepare.hostname"].check(ctx) is False  # nothing recorded yet
    assert ctx.facts == before and out == []
    assert host.writes == []


def test_fresh_run_records_facts_and_rerun_from_state_is_already_done(tmp_path):
    host = _host()
    state = tmp_path / "state.json"
    seen, facts = _run(host, state)
    assert seen == {"prepare.detect": Status.DONE, "prepare.hostname": Status.DONE}
    assert facts["hostname"] == "node1" and facts["mgmt_address"] == "10.0.0.5"
    assert facts["os"] == "Debian GNU/Linux 13 (trixie)"
    assert host.writes == []                      # the name already resolved: /etc/hosts kept

    seen, facts = _run(host, state)
    assert seen == {"prepare.detect": Status.ALREADY_DONE,
                    "prepare.hostname": Status.ALREADY_DONE}
    assert facts["mgmt_address"] == "10.0.0.5"   # later steps read it


def test_a_changed_address_is_recorded_again(tmp_path):
    state = tmp_path / "state.json"
    _run(_host(), state)
    host = _host()
    host.on(r"^hostname; echo ---; getent ahostsv4",
            (0, "node1\n---\n10.0.0.6\n---\n127.0.0.1\n10.0.0.6\n"))
    seen, facts = _run(host, state)
    assert seen["prepare.hostname"] == Status.DONE
    assert facts["mgmt_address"] == "10.0.0.6"


def test_unresolved_name_is_fixed_in_etc_hosts_when_allowed(tmp_path):
    host = _host(resolved="127.0.1.1")
    calls = {"n": 0}

    def answer(h, m, _stdin):
        calls["n"] += 1
        ip = "10.0.0.5" if b"10.0.0.5 node1" in h.files.get("/etc/hosts", b"") else "127.0.1.1"
        return 0, f"node1\n---\n{ip}\n---\n127.0.0.1\n10.0.0.5\n"

    host.put("/etc/hosts", "127.0.0.1 localhost\n127.0.1.1 node1\n")
    host.on(r"^hostname; echo ---; getent ahostsv4", answer)
    host.on(r".", (0, ""))  # fix_hosts_file's helper commands (backup etc.)
    host.on(r"^hostname; echo ---; getent ahostsv4", answer)
    profile = _profile()
    profile.openstack.fix_hosts = True
    ctx = host.ctx(profile, state_path=tmp_path / "s.json")
    step = _steps()["prepare.hostname"]
    assert step.check(ctx) is False
    step.run(ctx)
    assert ctx.facts["mgmt_address"] == "10.0.0.5"
    assert "/etc/hosts" in host.writes


def test_packages_ask_the_package_manager_not_the_family(tmp_path, monkeypatch):
    import dataclasses
    import inspect

    assert "family" not in inspect.getsource(prepare)
    # a deb-format platform whose package manager does not block service starts:
    # no policy-rc.d grep, the installed set comes from the strategy's parser
    pm = dataclasses.replace(PLATFORMS["debian-13"].pm, blocks_service_starts=False,
                             installed=lambda pkgs, out: set(pkgs))
    plat = dataclasses.replace(PLATFORMS["debian-13"], pm=pm)
    monkeypatch.setattr(prepare, "distro_unit", lambda plat: None)  # no packaged keystone unit
    host = FakeHost().on(r"^dpkg-query", (0, "nothing parsable\n"))
    ctx = host.ctx(_profile(), state_path=tmp_path / "s.json")
    ctx.facts["platform"] = "debian-13"
    prepare_platform = prepare.platform_of
    prepare.platform_of = lambda c: plat
    try:
        assert prepare._packages_check(ctx) is True
    finally:
        prepare.platform_of = prepare_platform
    assert all(c.startswith("dpkg-query") for c in host.commands), host.commands


# -- a management address the profile gives -------------------------------------------

MGMT = "10.198.1.11"


def _mgmt_profile(fix_hosts: bool = True) -> Profile:
    p = _profile()
    p.host.mgmt_address = MGMT
    p.openstack.fix_hosts = fix_hosts
    return p


def _mgmt_host(have: str = f"127.0.0.1\n10.0.0.5\n{MGMT}\n") -> FakeHost:
    """node1 (reached over SSH at 10.0.0.5) resolves to whatever /etc/hosts maps it to."""
    def answer(h, _m, _stdin):
        text = h.files.get("/etc/hosts", b"").decode()
        ip = next((ln.split()[0] for ln in text.splitlines()
                   if "node1" in ln.split()[1:] and not ln.startswith("127.0.0.1")), "")
        return 0, f"node1\n---\n{ip}\n---\n{have}"

    host = FakeHost().put("/etc/os-release", OS_RELEASE)
    host.put("/etc/hosts", "127.0.0.1 localhost\n10.0.0.5 node1\n")
    host.on(r".", (0, ""))  # fix_hosts_file's helper commands (backup etc.)
    host.on(r"^hostname; echo ---; getent ahostsv4", answer)   # later rules win
    return host


def test_the_name_is_mapped_to_the_management_address_the_profile_gives(tmp_path):
    # The name resolves to a local address (the SSH one): fine without mgmt_address, but the
    # profile says the services talk on the management network.
    host = _mgmt_host()
    ctx = host.ctx(_mgmt_profile(), state_path=tmp_path / "s.json")
    step = _steps()["prepare.hostname"]
    assert step.check(ctx) is False and host.writes == []
    out = _outputs(ctx)
    step.run(ctx)
    assert ctx.facts["mgmt_address"] == MGMT and ctx.facts["hostname"] == "node1"
    assert host.writes == ["/etc/hosts"]
    lines = host.files["/etc/hosts"].decode().splitlines()
    assert f"{MGMT} node1" in lines and "10.0.0.5 node1" not in lines
    assert "127.0.0.1 localhost" in lines
    assert any("the management address the profile gives" in ln for ln in out)
    assert step.check(ctx) is True   # and a re-run finds it done


def test_a_name_already_on_the_management_address_is_recorded_without_a_write(tmp_path):
    host = _mgmt_host()
    host.put("/etc/hosts", f"127.0.0.1 localhost\n{MGMT} node1\n")
    ctx = host.ctx(_mgmt_profile(), state_path=tmp_path / "s.json")
    step = _steps()["prepare.hostname"]
    mark = host.mark()
    step.run(ctx)
    assert ctx.facts["mgmt_address"] == MGMT and host.since(mark)[1] == []


def test_without_a_management_address_the_detected_one_is_kept(tmp_path):
    # The same host, mgmt_address left out: the name's local address (10.0.0.5) is used.
    host = _mgmt_host()
    ctx = host.ctx(_profile(), state_path=tmp_path / "s.json")
    _steps()["prepare.hostname"].run(ctx)
    assert ctx.facts["mgmt_address"] == "10.0.0.5" and host.writes == []


def test_a_management_address_the_host_lacks_stops_before_any_write(tmp_path):
    host = _mgmt_host(have="127.0.0.1\n10.0.0.5\n")
    ctx = host.ctx(_mgmt_profile(), state_path=tmp_path / "s.json")
    with pytest.raises(StepError) as err:
        _steps()["prepare.hostname"].run(ctx)
    assert MGMT in err.value.what and "mgmt_address" in err.value.what
    assert "mgmt_address" in err.value.hint and host.writes == []
    assert "mgmt_address" not in ctx.facts


def test_without_fix_hosts_the_mismatch_names_the_management_address(tmp_path):
    host = _mgmt_host()
    ctx = host.ctx(_mgmt_profile(fix_hosts=False), state_path=tmp_path / "s.json")
    with pytest.raises(StepError) as err:
        _steps()["prepare.hostname"].run(ctx)
    assert f"to {MGMT}, the management address the profile gives" in err.value.what
    assert f"'{MGMT} node1'" in err.value.hint and host.writes == []


def test_before_prepare_records_it_the_services_use_the_profiles_management_address(tmp_path):
    from tui.tasks.services.common import mgmt

    ctx = FakeHost().ctx(_mgmt_profile(), state_path=tmp_path / "s.json")
    assert mgmt(ctx) == MGMT                       # not the SSH address 10.0.0.5
    ctx.facts["mgmt_address"] = "10.198.1.99"      # what the host name step recorded wins
    assert mgmt(ctx) == "10.198.1.99"
    assert mgmt(FakeHost().ctx(_profile(), state_path=tmp_path / "t.json")) == "10.0.0.5"
