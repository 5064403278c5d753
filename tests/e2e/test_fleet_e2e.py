"""Several hosts: `stack-tui apply` on a controller and two compute hosts.

Three hosts of one sandbox group (`stack-tui sandbox up --hosts 3`: a management and a
provider network between them), the group's profile with compute ticked, installed through the
command line as a user would.  Every host is prepared at once, the controller gets its services,
the compute hosts theirs at once, the controller discovers them; the verification boots one
server on each compute host (the controller computes too) and pings each.  The real `openstack`
CLI agrees (three hypervisors, three nova-computes up, a Neutron agent alive on each host), and a
re-run changes nothing.  Debian 12 (`STACK_TUI_FLEET=13` for Debian 13).
"""

from __future__ import annotations

import json
import os
import re
import time

import pytest

from tests import cloud

pytestmark = pytest.mark.e2e

RELEASE = os.environ.get("STACK_TUI_FLEET", "12")


@pytest.fixture(scope="module")
def fleet(sandbox_factory, stack_home):
    from tui.tasks import profile as pr
    from tui.tasks import sandbox
    from tui.tasks.sandbox import guest

    name = f"flt{os.getpid() % 100000}"
    hosts = [f"{name}-{k}" for k in (1, 2, 3)]
    try:
        t0 = time.monotonic()
        up = cloud.cli("sandbox", "up", "--hosts", "3", "--name", name, "--release", RELEASE,
                       timeout=600)
        assert up.returncode == 0, up.stdout + up.stderr
        infos = [sandbox._load_info(h) for h in hosts]
        prof = pr.load(name)
        prof.openstack.services = [s for s in pr.SERVICES if s != "horizon"]
        prof.image.file, prof.image.url = str(guest.guest_image(infos[0])), ""
        pr.save(prof)
        booted = time.monotonic() - t0
        t0 = time.monotonic()
        first = cloud.cli("apply", name, "--yes", "--accept-new-host-key", timeout=3000)
        res = {"name": name, "hosts": hosts, "infos": infos, "home": stack_home,
               "first": first, "ok": first.returncode == 0,
               "out": first.stdout + first.stderr,
               "install": time.monotonic() - t0, "boot": booted}
        from tui.tasks import paths
        res["logs"] = "\n".join(p.read_text(errors="replace")
                                for p in sorted(paths.log_dir().glob(f"{name}-*.log")))
        for info in infos:
            sandbox.harvest_debs(info)
        yield res
    finally:   # the whole group, whatever happened (down refuses one host of a group)
        cloud.cli("sandbox", "down", "--name", name, timeout=300)


def test_a_server_boots_and_answers_ping_on_each_compute_host(fleet):
    assert fleet["ok"], fleet["out"][-6000:]
    out, log = fleet["out"], fleet["logs"]
    assert "OK:" in out and "FAILED" not in out, out[-3000:]
    for h in fleet["hosts"]:
        assert re.search(rf"ok +server on {h}: stack-tui-verify-{h} ACTIVE on {h}, floating IP "
                         r"172\.24\.4\.\d+ answers ping", log), log[-4000:]
    # the compute hosts' steps ran on them, at the same time as each other
    for h in fleet["hosts"][1:]:
        assert f"{h}:prepare.packages" in log
    print(f"3-host install: {fleet['install']:.1f} s (group boot {fleet['boot']:.1f} s)")


def test_the_openstack_cli_sees_three_compute_hosts(fleet):
    assert fleet["ok"]
    name = fleet["name"]
    clouds = fleet["home"] / "data" / "clouds" / name / "clouds.yaml"

    def osc(*args):
        r = cloud.openstack(clouds, name, *args, "-f", "json")
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout)

    computes = [s for s in osc("compute", "service", "list") if s["Binary"] == "nova-compute"]
    assert sorted(s["Host"] for s in computes) == fleet["hosts"], computes
    assert all(s["State"] == "up" for s in computes), computes
    assert sorted(h["Hypervisor Hostname"] for h in osc("hypervisor", "list")) == fleet["hosts"]
    agents = osc("network", "agent", "list")
    assert {a["Host"] for a in agents} == set(fleet["hosts"]), agents
    assert all(a["Alive"] in (True, ":-)") for a in agents), agents
    servers = osc("server", "list", "--all-projects", "--long")
    on = {s["Name"]: s["Host"] for s in servers if s["Name"].startswith("stack-tui-verify-")}
    assert on == {f"stack-tui-verify-{h}": h for h in fleet["hosts"]}, servers


def test_a_rerun_changes_nothing(fleet):
    assert fleet["ok"]
    t0 = time.monotonic()
    r = cloud.cli("apply", fleet["name"], "--yes", timeout=900)
    took = time.monotonic() - t0
    assert r.returncode == 0, r.stdout[-3000:]
    assert "OK: 0 done," in r.stdout and " 0 skipped" in r.stdout, r.stdout[-3000:]
    print(f"3-host re-run: {took:.1f} s")
    assert took < 30, f"a re-run that changes nothing took {took:.1f} s"
