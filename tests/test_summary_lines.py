"""What the end of a run tells the user, through each service's ``summary`` hook: Horizon's
dashboard line (unchanged, byte for byte), the virt_type Nova's libvirt step chose (recorded
by its check too, so a resumed run still says it), the networks the verification left for
the user; printed by `stack-tui apply` and shown on the Summary screen; never a secret."""

from __future__ import annotations

import argparse
import re
import types
from pathlib import Path

import pytest
from rich.console import Console

from tests.fakehost import FakeHost, run_plan
from tui.tasks.engine import Phase, Plan, RunState, Status
from tui.tasks.profile import Profile
from tui.tasks.services import REGISTRY, cloudobjects, nova, summary_lines

ROOT = Path(__file__).resolve().parent.parent
COMPUTE = ["mariadb", "rabbitmq", "memcached", "keystone", "glance", "placement", "neutron",
           "nova", "horizon"]
NETWORKS = {"provider": "provider", "floating": "172.24.4.100-172.24.4.199",
            "network": "demo-net", "cidr": "192.168.100.0/24", "router": "demo-router"}
QEMU = "virt_type qemu — no usable /dev/kvm, guests run under QEMU emulation, slower"


def _profile(services=COMPUTE, endpoint="cloud.example.org") -> Profile:
    p = Profile(name="t")
    p.host.address = "10.0.0.5"
    p.openstack.endpoint_host = endpoint
    p.openstack.services = list(services)
    return p


def _shown(renderable) -> str:
    console = Console(width=160, record=True)
    console.print(renderable)
    return console.export_text()


# -- the hook ----------------------------------------------------------------------------------
def test_every_service_has_the_hook_and_only_selected_ones_speak():
    facts = {"virt_type": "kvm", "networks": NETWORKS}
    assert all(callable(s.summary) for s in REGISTRY)
    assert summary_lines(_profile(["mariadb", "keystone", "glance"]), facts) == []
    labels = [ln.label for ln in summary_lines(_profile(), facts)]
    assert labels == ["Provider", "Demo", "Compute", "Dashboard"]  # registry order


def test_horizon_lines_are_the_old_ones_byte_for_byte():
    prof = _profile()
    (line,) = [ln for ln in summary_lines(prof, {}) if ln.label == "Dashboard"]
    assert line.line() == ("Dashboard: http://cloud.example.org/horizon/ - log in as demo "
                           "(project demo), domain Default; the password is in "
                           f"{prof.secrets_file}")
    assert line.endpoint and line.text == ("http://cloud.example.org/horizon/  (log in as demo "
                                           "(project demo), domain Default)")
    prof.openstack.demo = False
    (line,) = [ln for ln in summary_lines(prof, {}) if ln.label == "Dashboard"]
    assert line.line().startswith("Dashboard: http://cloud.example.org/horizon/ - log in as "
                                  "admin, domain Default; the password is in ")


def test_no_screen_or_cli_wires_a_service_by_name():
    for rel in ("tui/cli.py", "tui/screens/summary.py"):
        text = (ROOT / rel).read_text()
        assert not re.search(r"\bhorizon\b", text, re.I), rel
        assert "summary_lines" in text, rel


@pytest.mark.parametrize("vt,text", [
    ("kvm", "virt_type kvm (hardware virtualisation through /dev/kvm)"), ("qemu", QEMU)])
def test_nova_says_which_virt_type_from_the_recorded_fact(vt, text):
    (line,) = nova.summary(_profile(), {"virt_type": vt})
    assert (line.label, line.text) == ("Compute", text)
    assert line.line() == "Compute: " + text.replace("—", "-")
    assert line.line().isascii()


@pytest.mark.parametrize("facts", [{}, {"virt_type": "xen"}, {"virt_type": ["kvm"]},
                                   {"virt_type": None}])
def test_nova_says_nothing_without_a_sound_fact(facts):
    assert nova.summary(_profile(), facts) == ()


def test_nova_says_nothing_when_not_selected():
    assert nova.summary(_profile(["keystone", "neutron"]), {"virt_type": "kvm"}) == ()


def test_neutron_names_the_networks_left_for_the_user():
    prov, demo = summary_lines(_profile(["neutron"]), {"networks": NETWORKS})
    assert prov.text == "network provider, floating IPs 172.24.4.100-172.24.4.199"
    assert prov.line() == "Provider network: provider, floating IPs 172.24.4.100-172.24.4.199"
    assert demo.text == "network demo-net 192.168.100.0/24, router demo-router"
    assert demo.line().startswith("Demo network: demo-net 192.168.100.0/24, router demo-router "
                                  "(project demo;")
    assert not prov.endpoint and not demo.endpoint


def test_neutron_says_nothing_before_the_verification_made_them():
    assert summary_lines(_profile(["neutron"]), {}) == []
    assert summary_lines(_profile(["neutron"]), {"networks": "provider"}) == []


def test_names_from_the_cloud_lose_their_control_characters():
    nets = dict(NETWORKS, network="demo\x1b[31m-net\nFAKE: line", router="r\x07")
    lines = summary_lines(_profile(["neutron"]), {"networks": nets})
    for ln in lines:
        for part in (ln.label, ln.text, ln.line()):
            assert part.isprintable(), part
    assert "demo-net FAKE: line" in lines[1].text


# -- the facts behind them ---------------------------------------------------------------------
def _libvirt_host(kvm: bool) -> FakeHost:
    host = FakeHost().systemd("libvirtd", active=True, enabled=True)
    host.on(r"^\[ -e \S+\.stack-tui\.orig \] \|\| cp -p ", (0, ""))
    host.on(r"^test -c /dev/kvm", (0, "kvm\n") if kvm else (1, ""))
    host.on(r"^systemd-detect-virt --container", (0, "systemd-nspawn\n"))
    return host


def test_the_libvirt_step_records_its_virt_type_and_a_resumed_run_still_does(tmp_path):
    prof = _profile()
    host = _libvirt_host(kvm=False)
    (step,) = [s for s in _nova_steps(prof) if s.id == "nova.libvirt"]
    plan = Plan([Phase("nova", "Nova", [step])], platform="debian-13")
    ctx = host.ctx(prof, state_path=tmp_path / "a.json")
    assert run_plan(plan, ctx) == {"nova.libvirt": Status.DONE}
    assert ctx.facts["virt_type"] == "qemu"
    # the next run (fresh state, fresh cache): the step is already done, the fact is still made
    ctx2 = host.ctx(prof, state_path=tmp_path / "b.json")
    assert "virt_type" not in ctx2.facts
    assert run_plan(plan, ctx2) == {"nova.libvirt": Status.ALREADY_DONE}
    assert ctx2.facts["virt_type"] == "qemu"
    assert RunState.load(tmp_path / "b.json").facts["virt_type"] == "qemu"  # saved


def _nova_steps(prof):
    from tui.tasks.platforms import PLATFORMS

    return [s for ph in nova.phases(prof, PLATFORMS["debian-13"]) for s in ph.steps]


def test_virt_type_kvm_is_recorded_as_decided():
    ctx = _libvirt_host(kvm=True).ctx(_profile())
    assert nova.virt_type(ctx) == "kvm" and ctx.facts["virt_type"] == "kvm"


def _cloud_state():
    return {
        "flavor": {"id": "f1", "name": cloudobjects.FLAVOR},
        "provider": {"id": "p1", "name": "public"},
        "net": {"id": "n1", "name": cloudobjects.NET},
        "router": {"id": "r1", "name": cloudobjects.ROUTER,
                   "external_gateway_info": {"network_id": "p1"}},
        "keypair": True,
        "subnets": [{"network_id": "p1", "cidr": "172.24.4.0/24", "allocation_pools": [
                        {"start": "172.24.4.100", "end": "172.24.4.199"}]},
                    {"network_id": "n1", "cidr": cloudobjects.DEMO_CIDR}],
        "sg": {"id": "sg", "security_group_rules": [
            {"direction": "ingress", "protocol": "icmp"},
            {"direction": "ingress", "protocol": "tcp", "port_range_min": 22}]},
    }


def test_the_objects_check_records_what_it_found(monkeypatch):
    monkeypatch.setattr(cloudobjects, "_state", lambda ctx: _cloud_state())
    ctx = FakeHost().ctx(_profile())
    assert cloudobjects._objects_check(ctx)
    assert ctx.facts["networks"] == {
        "provider": "public", "floating": "172.24.4.100-172.24.4.199", "network": "demo-net",
        "cidr": "192.168.100.0/24", "router": "demo-router"}


def test_an_unfinished_cloud_records_nothing(monkeypatch):
    state = dict(_cloud_state(), router=None)
    monkeypatch.setattr(cloudobjects, "_state", lambda ctx: state)
    ctx = FakeHost().ctx(_profile())
    assert not cloudobjects._objects_check(ctx)
    assert "networks" not in ctx.facts


def test_the_objects_run_records_what_it_made(monkeypatch):
    monkeypatch.setattr(cloudobjects, "_state", lambda ctx: _cloud_state())
    monkeypatch.setattr(cloudobjects, "admin_session", lambda ctx: None)
    monkeypatch.setattr(cloudobjects, "_demo", lambda ctx: None)
    ctx = FakeHost().ctx(_profile())
    cloudobjects._objects_run(ctx)
    assert ctx.facts["networks"]["router"] == "demo-router"


# -- where they are shown ----------------------------------------------------------------------
def test_summary_screen_shows_endpoint_and_cloud_lines():
    from tui.screens.summary import cloud_table, endpoints_table

    prof = _profile()
    facts = {"virt_type": "qemu", "networks": NETWORKS}
    endpoints = _shown(endpoints_table(prof, facts))
    assert "Dashboard   http://cloud.example.org/horizon/  (log in as demo (project demo), " \
           "domain Default)" in endpoints
    assert "virt_type" not in endpoints
    cloud = _shown(cloud_table(prof, facts))
    assert f"Compute     {QEMU}" in cloud
    assert "Provider    network provider, floating IPs 172.24.4.100-172.24.4.199" in cloud
    assert "Demo        network demo-net 192.168.100.0/24, router demo-router" in cloud
    assert cloud_table(_profile(["keystone", "horizon"]), facts) is None


def _fake_apply(monkeypatch, prof, facts, ok=True):
    from tui import cli
    from tui.tasks import runner

    state = types.SimpleNamespace(facts=facts, unfinished=lambda: False)
    session = types.SimpleNamespace(generated=[], transport=None, state=state,
                                    log_path="run.log", close=lambda: None)
    result = types.SimpleNamespace(ok=ok, duration=1.0, counts={
        "done": 3, "already done": 0, "skipped": 0, "failed": 0 if ok else 1})
    monkeypatch.setattr(cli, "_load", lambda name: prof)
    monkeypatch.setattr(runner, "open_session", lambda *a, **k: session)
    monkeypatch.setattr(runner, "connect_and_plan",
                        lambda s: types.SimpleNamespace(platform="debian-13"))
    monkeypatch.setattr(runner, "make_engine",
                        lambda *a, **k: types.SimpleNamespace(run=lambda: result))
    return cli.cmd_apply(argparse.Namespace(
        profile="t", yes=True, accept_new_host_key=True, from_step=None, only=None,
        reset_state=False, quiet=True, fix=False))


def test_apply_prints_the_lines_at_the_end(monkeypatch, capsys):
    prof = _profile()
    facts = {"local_files": "/x/clouds/t", "virt_type": "qemu", "networks": NETWORKS}
    assert _fake_apply(monkeypatch, prof, facts) == 0
    out = capsys.readouterr().out.splitlines()
    end = out[out.index("admin-openrc.sh, demo-openrc.sh and clouds.yaml saved in /x/clouds/t")
              + 1:]
    assert end == [
        "Provider network: provider, floating IPs 172.24.4.100-172.24.4.199",
        "Demo network: demo-net 192.168.100.0/24, router demo-router (project demo; made by "
        "the verification and kept for your servers)",
        "Compute: virt_type qemu - no usable /dev/kvm, guests run under QEMU emulation, slower",
        "Dashboard: http://cloud.example.org/horizon/ - log in as demo (project demo), domain "
        f"Default; the password is in {prof.secrets_file}",
    ]


def test_apply_without_compute_ends_as_before(monkeypatch, capsys):
    prof = _profile(["mariadb", "memcached", "keystone", "glance", "horizon"])
    assert _fake_apply(monkeypatch, prof, {"local_files": "/x"}) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-2:] == ["admin-openrc.sh, demo-openrc.sh and clouds.yaml saved in /x",
                        "Dashboard: http://cloud.example.org/horizon/ - log in as demo (project "
                        f"demo), domain Default; the password is in {prof.secrets_file}"]


def test_apply_that_failed_prints_no_summary_lines(monkeypatch, capsys):
    from tui.cli import EXIT_FAILED

    assert _fake_apply(monkeypatch, _profile(), {"virt_type": "kvm"}, ok=False) == EXIT_FAILED
    out = capsys.readouterr().out
    assert "NOT COMPLETE" in out and "virt_type" not in out and "Dashboard" not in out


def test_a_half_made_cloud_after_the_run_records_nothing(monkeypatch):
    monkeypatch.setattr(cloudobjects, "_state", lambda ctx: dict(_cloud_state(), net=None,
                                                                 router=None))
    ctx = FakeHost().ctx(_profile())
    cloudobjects._record(ctx, cloudobjects._state(ctx))
    assert "networks" not in ctx.facts
