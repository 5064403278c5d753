"""Several hosts: `stack-tui apply` on a controller and two compute hosts.

Three hosts of one sandbox group (`stack-tui sandbox up --hosts 3`: a management and a
provider network between them), the group's profile with compute ticked, installed through the
command line as a user would.  The controller gets its packages, then its services while the
compute hosts get their packages, then the compute hosts theirs at once, the controller discovers them; the verification boots one
server on each compute host (the controller computes too) and pings each.  The real `openstack`
CLI agrees (three hypervisors, three nova-computes up, a Neutron agent alive on each host), and a
re-run changes nothing.

Debian 12 through the screens, the pilot test, with the faults that matter most (the compute
e2e's way in, tests/e2e/test_compute_e2e.py, on the group's profile): a first TUI (Host screen
with its three hosts, the controller's connection tested, Credentials generated, Nova and
Horizon ticked, Review's "what goes where", Start) is SIGKILLed while `nova-manage` migrates
Nova's databases on the controller; a second TUI resumes, gets an injected failure of the test
boots (Retry: the real boots on the three hosts run) and of Horizon's check (Skip), and ends on
the Summary with a verification line per host; its progress tree has a node per host. Then
`stack-tui apply` finds everything done and re-checks each server. This is also the Debian 12
compute install of the suite (the controller computes: Linux bridge, all in one plus two).
`STACK_TUI_FLEET=13:apply` (release:way) changes it.
"""

from __future__ import annotations

import json
import os
import re
import time

import pytest

from tests import cloud

pytestmark = pytest.mark.e2e

RELEASE, _, WAY = os.environ.get("STACK_TUI_FLEET", "12:tui").partition(":")
WAY = WAY or "tui"


@pytest.fixture(scope="module")
def fleet(sandbox_factory, stack_home, tmp_path_factory):
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
        if WAY != "tui":   # through the screens, Nova (and with it the rest) is ticked there
            prof.openstack.services = [s for s in pr.SERVICES if s != "horizon"]
        prof.image.file, prof.image.url = str(guest.guest_image(infos[0])), ""
        pr.save(prof)
        booted = time.monotonic() - t0
        t0 = time.monotonic()
        res = {"name": name, "hosts": hosts, "infos": infos, "home": stack_home,
               "boot": booted, "way": WAY}
        try:
            if WAY == "tui":
                from tests.e2e.test_compute_e2e import _through_the_screens

                res.update(_through_the_screens(infos[0], name, tmp_path_factory.mktemp("fleet"),
                                                trusted=True))
                res.update(ok=res["summary_ok"], out=res.get("first_out", ""))
            else:
                first = cloud.cli("apply", name, "--yes", "--accept-new-host-key", timeout=3000)
                res.update(ok=first.returncode == 0, out=first.stdout + first.stderr)
        except (Exception, pytest.fail.Exception) as exc:
            # CI shows only the test output: the services' own words go with the failure
            pytest.fail(f"{exc}\n\nThe hosts' logs:\n{cloud.log_digest(infos)}")
        if not res["ok"]:
            res["out"] = res.get("out", "") + "\n\nThe hosts' logs:\n" + cloud.log_digest(infos)
        res["install"] = time.monotonic() - t0
        from tui.tasks import paths
        res["logs"] = "\n".join(p.read_text(errors="replace")
                                for p in sorted(paths.log_dir().glob(f"{name}-*.log")))
        for info in infos:
            sandbox.harvest_debs(info)
        yield res
    finally:   # the whole group, whatever happened (down refuses one host of a group)
        cloud.cli("sandbox", "down", "--name", name, timeout=300)


def test_a_server_boots_and_answers_ping_on_each_compute_host(fleet):
    assert fleet["ok"], fleet.get("out", "")[-12000:] + str(fleet.get("verification"))
    out, log = fleet["out"], fleet["logs"]
    if fleet["way"] == "apply":
        assert "OK:" in out and "FAILED" not in out, out[-3000:]
    else:
        from tests.e2e.test_compute_e2e import KILL_STEP, RETRY_STEP, SKIP_STEP

        assert "What goes where (3 hosts):" in fleet["first_out"], fleet["first_out"][-3000:]
        assert fleet["nova_manage_seen"] and fleet["killed_rc"] == -9
        assert KILL_STEP in fleet["resume_text"], fleet["resume_text"]
        # several hosts: Horizon (the controller's services) comes before the boots
        assert fleet["failures_seen"] == [SKIP_STEP, RETRY_STEP]
        assert fleet["tree_top"] == [f"{fleet['hosts'][0]} (controller, compute)",
                                     *(f"{h} (compute)" for h in fleet["hosts"][1:])]
        bad = {k: v for k, v in fleet["statuses"].items() if v.value not in ("done", "already done")}
        assert bad == {SKIP_STEP: bad.get(SKIP_STEP)} and bad[SKIP_STEP].value == "skipped", bad
        lines = {w: d for w, _ok, d in fleet["verification"]}
        for h in fleet["hosts"]:
            assert f"stack-tui-verify-{h} ACTIVE on {h}" in lines.get(f"server on {h}", ""), lines
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
    print(f"3-host re-run: {cloud.rerun_changes_nothing(fleet['name'], 30):.1f} s")


def test_the_bundle_collects_every_compute_host_without_a_secret(fleet, tmp_path):
    """`stack-tui bundle` reaches every host: each compute host's nova.conf, redacted."""
    import tarfile

    assert fleet["ok"]
    r = cloud.cli("bundle", fleet["name"], "-o", str(tmp_path), timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    [path] = tmp_path.glob("*.tar.gz")
    with tarfile.open(path) as tar:
        texts = {m.name.split("/", 1)[1]: tar.extractfile(m).read().decode("utf-8", "replace")
                 for m in tar.getmembers() if m.isfile()}
    for h in fleet["hosts"][1:]:
        assert texts.get(f"hosts/{h}/etc/nova/nova.conf"), (sorted(texts), texts["MANIFEST.txt"])
    leaked = cloud.leaked_secrets(fleet["name"], "\n".join(texts.values()), at_least=13)
    assert not leaked, leaked


def test_no_secret_in_the_log_or_the_screens_output(fleet):
    """Three hosts' output interleaved in one log: still no secret (the RabbitMQ password in
    every compute host's transport_url, the metadata secret, the services' passwords)."""
    shown = fleet["logs"] + fleet.get("out", "") + str(fleet.get("verification"))
    leaked = cloud.leaked_secrets(fleet["name"], shown, at_least=13)
    assert not leaked, leaked
