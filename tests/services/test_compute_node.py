"""A compute-only host's steps on a scripted fake host (several hosts, issue 16): the files it
writes point at the controller's management address and its own, a re-run finds everything
done, no secret reaches a command line; the controller's discover and agents steps and their
explained failures; the refusal of what is not supported yet."""

from __future__ import annotations

import pytest

from tests.fakehost import FakeHost, run_plan
from tui.tasks.engine import Plan, Status, StepError
from tui.tasks.platforms import PLATFORMS
from tui.tasks.profile import HostConfig, Profile
from tui.tasks.services import compute_node, neutron, nova

SECRETS = {"nova_password": "n0va'$(x)\"", "nova_db_password": "novadb-1",
           "neutron_password": "neu'tr\"on", "neutron_db_password": "neudb-2",
           "placement_password": "pl-3", "rabbit_password": "ra@b/b:it",
           "metadata_secret": "meta-S3cret", "admin_password": "adm-Pw1", "demo_password": "demo-Pw2"}
CTRL_MGMT, OWN_MGMT, CTRL_SSH = "10.198.1.11", "10.198.1.12", "10.199.0.2"
D12 = PLATFORMS["debian-12"]


def _profile(ctrl_roles=("controller", "compute")) -> Profile:
    p = Profile("lab", hosts=[
        HostConfig(name="lab-1", roles=list(ctrl_roles), address=CTRL_SSH,
                   mgmt_address=CTRL_MGMT),
        HostConfig(name="lab-2", roles=["compute"], address="10.199.0.6", mgmt_address=OWN_MGMT),
        HostConfig(name="lab-3", roles=["compute"], address="10.199.0.10",
                   mgmt_address="10.198.1.13")])
    p.openstack.services = ["mariadb", "rabbitmq", "memcached", "keystone", "glance",
                            "placement", "neutron", "nova"]
    return p


def _compute_host(bridge_nf: bool = True) -> FakeHost:
    """lab-2 after prepare: its packages installed, nothing configured."""
    host = FakeHost().systemd("libvirtd", "nova-compute", "neutron-linuxbridge-agent")
    host.on(r"^\[ -e \S+\.stack-tui\.orig \] \|\| cp -p ", (0, ""))
    host.on(r"^test -c /dev/kvm", (1, ""))
    host.on(r"^systemd-detect-virt --container", (0, "systemd-nspawn\n"))
    host.put(nova.LIBVIRTD_CONF, "#unix_sock_group = \"libvirt\"\n")
    host.put(neutron.LB_CONF, "[linux_bridge]\nphysical_interface_mappings = provider:eth1\n")
    host.put(nova.NOVA_CONF, "[DEFAULT]\nstate_path = /var/lib/nova\n")
    loaded = {"br": bridge_nf, "sysctl": False}

    def cat(_h, _m, _i):
        if not loaded["br"]:
            return (1, "")
        return (0, "1\n1\n" if loaded["sysctl"] else "0\n0\n")

    def sysctl(_h, _m, _i):
        loaded["sysctl"] = True
        return (0, "")
    host.on(r"^cat /proc/sys/net/bridge/bridge-nf-call-iptables ", cat)
    host.on(r"^test -e /proc/sys/net/bridge/bridge-nf-call-iptables \|\| modprobe", (0, ""))
    host.on(r"^test -e /proc/sys/net/bridge/bridge-nf-call-iptables$",
            lambda h, m, i: (0 if loaded["br"] else 1, ""))
    host.on(r"^sysctl -q -p /etc/sysctl.d/stack-tui-neutron.conf$", sysctl)
    return host


def _ctx(host, tmp_path, view="lab-2", secrets=SECRETS):
    ctx = host.ctx(_profile().on(view), platform="debian-12", secrets=secrets,
                   state_path=tmp_path / f"{view}.json")
    ctx.facts["mgmt_address"] = OWN_MGMT
    ctx.controller_facts = {"mgmt_address": CTRL_MGMT}
    return ctx


def _run(host, tmp_path, secrets=SECRETS):
    return run_plan(Plan(compute_node.phases(_profile().on("lab-2"), D12), platform="debian-12"),
                    _ctx(host, tmp_path, secrets=secrets))


def _ini(text: str) -> dict:
    import configparser

    cp = configparser.RawConfigParser(strict=False, interpolation=None)
    cp.read_string(text)
    return {(s, k): v for s in cp.sections() for k, v in cp[s].items()} | {
        ("DEFAULT", k): v for k, v in cp.defaults().items()}


def test_a_compute_node_talks_to_the_controller_on_its_management_address(tmp_path):
    host = _compute_host()
    steps = ["compute.kernel", "compute.nova_config", "compute.libvirt",
             "compute.neutron_config", "compute.services"]
    assert _run(host, tmp_path) == {s: Status.DONE for s in steps}
    conf = _ini(host.read_file(nova.NOVA_CONF))
    assert conf[("DEFAULT", "transport_url")] == f"rabbit://openstack:ra%40b%2Fb%3Ait@{CTRL_MGMT}:5672/"
    assert conf[("DEFAULT", "host")] == "lab-2"           # its name in Nova: the profile's
    assert conf[("DEFAULT", "my_ip")] == OWN_MGMT
    assert conf[("vnc", "server_proxyclient_address")] == OWN_MGMT
    assert conf[("vnc", "server_listen")] == OWN_MGMT
    assert conf[("vnc", "novncproxy_base_url")] == f"http://{CTRL_SSH}:6080/vnc_auto.html"
    assert conf[("glance", "api_servers")] == f"http://{CTRL_MGMT}:9292"
    for section in ("placement", "neutron", "service_user"):
        assert conf[(section, "auth_url")] == f"http://{CTRL_MGMT}:5000/v3", section
    assert conf[("placement", "password")] == "pl-3"
    assert conf[("oslo_concurrency", "lock_path")] == "/var/lib/nova/tmp"
    # a compute node has no database, validates no token and proxies no metadata
    assert not {("database", "connection"), ("api_database", "connection"),
                ("keystone_authtoken", "password"),
                ("neutron", "metadata_proxy_shared_secret")} & conf.keys()
    assert host.modes[nova.NOVA_CONF] == (0o640, "root", "nova")
    ncf = _ini(host.read_file(neutron.NEUTRON_CONF))
    assert ncf[("DEFAULT", "host")] == "lab-2"
    assert ncf[("DEFAULT", "transport_url")].endswith(f"@{CTRL_MGMT}:5672/")
    assert ncf[("experimental", "linuxbridge")] == "true"
    assert ("database", "connection") not in ncf
    lb = _ini(host.read_file(neutron.LB_CONF))
    assert lb[("vxlan", "local_ip")] == OWN_MGMT and lb[("vxlan", "l2_population")] == "true"
    assert lb[("linux_bridge", "physical_interface_mappings")] == ""   # eth1 was the package's
    assert lb[("securitygroup", "firewall_driver")].endswith("IptablesFirewallDriver")
    assert "cgroup_controllers = [ ]" in host.read_file(nova.QEMU_CONF)   # nova's libvirt step
    assert "virt_type = qemu" in host.read_file(nova.NOVA_COMPUTE_CONF)
    assert host.read_file(compute_node.MODULES_LOAD) == "br_netfilter\n"
    for unit in ("libvirtd", "nova-compute", "neutron-linuxbridge-agent"):
        assert host.units[unit].active and host.units[unit].enabled, unit
    assert host.units["nova-compute"].starts == 1


def test_a_re_run_changes_nothing_and_no_secret_is_in_a_command(tmp_path):
    host = _compute_host()
    _run(host, tmp_path)
    assert not any(v in c for c in host.commands for v in SECRETS.values())
    mark = host.mark()
    assert set(_run(host, tmp_path).values()) == {Status.ALREADY_DONE}
    assert host.since(mark)[1] == []
    assert not any(c.startswith("date +%s; systemctl enable") for c in host.since(mark)[0])
    assert host.units["nova-compute"].restarts == 0


def test_a_changed_password_restarts_only_what_reads_it(tmp_path):
    host = _compute_host()
    _run(host, tmp_path)
    statuses = _run(host, tmp_path, secrets={**SECRETS, "placement_password": "pl-4"})
    assert statuses["compute.nova_config"] == Status.DONE
    assert statuses["compute.neutron_config"] == Status.ALREADY_DONE
    assert host.units["nova-compute"].restarts == 1
    assert host.units["neutron-linuxbridge-agent"].restarts == 0


def test_a_kernel_without_br_netfilter_is_explained(tmp_path):
    host = _compute_host(bridge_nf=False)
    ctx = _ctx(host, tmp_path)
    (step,) = [s for ph in compute_node.phases(_profile().on("lab-2"), D12) for s in ph.steps
               if s.id == "compute.kernel"]
    assert not step.check(ctx)
    with pytest.raises(StepError) as exc:
        step.run(ctx)
    assert "br_netfilter" in exc.value.what and "modprobe br_netfilter" in exc.value.hint


def test_the_packages_of_a_compute_node():
    assert compute_node.PACKAGES(D12) == ("nova-compute", "nova-compute-kvm",
                                          "neutron-linuxbridge-agent")


# -- what is refused up front ----------------------------------------------------------------

def test_several_hosts_are_accepted_on_debian_13_and_12_without_nova_refused():
    d13 = PLATFORMS["debian-13"]
    # Open vSwitch's userspace VXLAN through br-phy (ovs_tunnel): no longer refused
    assert compute_node.unsupported(_profile(), d13) is None
    assert "Nova and Neutron" in compute_node.unsupported(_no_nova(), d13)
    assert compute_node.unsupported(_profile(), D12) is None
    one = Profile("one")
    one.openstack.services = list(_profile().openstack.services)
    assert compute_node.unsupported(one, d13) is None
    assert compute_node.unsupported(_profile(ctrl_roles=("controller",)), D12) is None
    assert "Nova and Neutron" in compute_node.unsupported(_no_nova(), D12)


def _no_nova() -> Profile:
    p = _profile()
    p.openstack.services = ["mariadb", "rabbitmq", "memcached", "keystone"]
    return p


# -- the controller's side ---------------------------------------------------------------------

def _controller(mapped: set[str], registered: dict[str, str] | None = None) -> FakeHost:
    host = FakeHost()
    host.on(r"^runuser -u nova -- nova-manage cell_v2 discover_hosts", (0, ""))
    host.on(r"nova_api\.host_mappings", lambda h, m, i: (0, "".join(f"{n}\n" for n in mapped)))
    host.on(r"FROM nova\.services", lambda h, m, i: (0, "".join(
        f"{n}\t{s}\n" for n, s in (registered or {}).items())))
    host.on(r"^grep -hE 'ERROR\|CRITICAL' /var/log/nova/",
            (0, "ERROR nova.conductor MessagingTimeout\n"))
    host.on(r"^grep -hE 'ERROR\|CRITICAL' /var/log/neutron/", (0, "ERROR agent gone\n"))
    return host


def _ctrl_step(step_id):
    return next(s for ph in compute_node.controller_phases(_profile(), D12) for s in ph.steps
                if s.id == step_id)


def _ctrl_ctx(host, tmp_path):
    ctx = host.ctx(_profile(), platform="debian-12", secrets=SECRETS,
                   state_path=tmp_path / "ctrl.json")
    ctx.facts["mgmt_address"] = CTRL_MGMT
    return ctx


def test_discover_is_done_when_every_compute_host_is_mapped(tmp_path, monkeypatch):
    step = _ctrl_step("computes.discover")
    host = _controller({"lab-2", "lab-3"})
    assert step.check(_ctrl_ctx(host, tmp_path))
    assert not any("nova-manage" in c for c in host.commands)   # the check is SQL only
    assert not step.check(_ctrl_ctx(_controller({"lab-2"}), tmp_path))
    import shlex

    sql = shlex.split(next(c for c in host.commands if "host_mappings" in c))[4]
    assert sql == "SELECT host FROM nova_api.host_mappings WHERE host IN ('lab-2', 'lab-3')"


def test_discover_explains_which_host_is_missing_and_why(tmp_path, monkeypatch):
    monkeypatch.setattr(compute_node, "DISCOVER_TIMEOUT", 0)
    host = _controller({"lab-2"}, registered={})
    with pytest.raises(StepError) as exc:
        _ctrl_step("computes.discover").run(_ctrl_ctx(host, tmp_path))
    err = exc.value
    assert "lab-3" in err.what and "lab-2" not in err.what
    assert "no nova-compute service record" in err.why and f"{CTRL_MGMT}:5672" in err.why
    assert "journalctl -u nova-compute" in err.hint
    assert err.tail == ["ERROR nova.conductor MessagingTimeout"]
    host = _controller({"lab-2"}, registered={"lab-3": "12"})
    with pytest.raises(StepError) as exc:
        _ctrl_step("computes.discover").run(_ctrl_ctx(host, tmp_path))
    assert "registered (last report 12 s ago) but is not mapped" in exc.value.why


def test_discover_runs_until_every_host_is_mapped(tmp_path):
    host = _controller(set(), registered={"lab-3": "4"})
    runs = []   # lab-3 (registered, not mapped) is mapped by its service, the 2nd time
    host.on(r"^runuser -u nova -- nova-manage cell_v2 discover_hosts",
            lambda h, m, i: (runs.append(m.string.split()[7]), (0, ""))[1])
    host.on(r"nova_api\.host_mappings",
            lambda h, m, i: (0, "lab-2\nlab-3\n" if len(runs) >= 2 else "lab-2\n"))
    ctx = _ctrl_ctx(host, tmp_path)
    ctx.cancel.wait = lambda _t: None
    _ctrl_step("computes.discover").run(ctx)
    assert runs == ["--verbose", "--by-service"]


def test_the_agents_step_waits_for_each_host_and_explains(tmp_path, monkeypatch):
    asked = []

    def rows(ctx, name, agent_type):
        asked.append((name, agent_type))
        return {"lab-2": [{"alive": True}], "lab-3": [{"alive": False}]}[name]
    monkeypatch.setattr(compute_node, "_agent_rows", rows)
    monkeypatch.setattr(compute_node, "AGENTS_TIMEOUT", 0)
    step = _ctrl_step("computes.agents")
    ctx = _ctrl_ctx(_controller(set()), tmp_path)
    assert not step.check(ctx)
    assert asked[:2] == [("lab-2", "Linux bridge agent"), ("lab-3", "Linux bridge agent")]
    with pytest.raises(StepError) as exc:
        step.run(ctx)
    assert "lab-3" in exc.value.what and "lab-2" not in exc.value.what
    assert "heartbeat stopped" in exc.value.why
    assert "journalctl -u neutron-linuxbridge-agent" in exc.value.hint
    assert exc.value.tail == ["ERROR agent gone"]
    monkeypatch.setattr(compute_node, "_agent_rows", lambda c, n, t: [])
    with pytest.raises(StepError) as exc:
        step.run(ctx)
    assert "never registered" in exc.value.why and f"{CTRL_MGMT}:5672" in exc.value.why
    monkeypatch.setattr(compute_node, "_agent_rows", lambda c, n, t: [{"alive": True}])
    assert step.check(ctx)
    step.run(ctx)


def test_the_controllers_steps_concern_only_the_compute_only_hosts():
    assert compute_node.compute_hosts(_profile()) == ["lab-2", "lab-3"]
    (ph,) = compute_node.controller_phases(_profile(), D12)
    assert [s.id for s in ph.steps] == ["computes.discover", "computes.agents"]
    assert "lab-2, lab-3" in ph.steps[0].detail


# -- the catalog: internal and admin endpoints on the controller's management address -----------

class _Keystone:
    """Keystone's services and endpoints, as catalog's api() sees them."""

    def __init__(self, endpoints=()):
        self.eps = [dict(e, id=str(i)) for i, e in enumerate(endpoints)]
        self.calls = []

    def api(self, ctx, method, path, **kw):
        self.calls.append((method, path, kw.get("json")))
        if path.startswith("/endpoints?"):
            return {"endpoints": list(self.eps)}
        if method == "POST" and path == "/endpoints":
            self.eps.append(dict(kw["json"]["endpoint"], id=str(len(self.eps) + 10)))
        if method == "PATCH":
            eid = path.rsplit("/", 1)[1]
            next(e for e in self.eps if e["id"] == eid)["url"] = kw["json"]["endpoint"]["url"]
        return {}


@pytest.fixture
def keystone(monkeypatch):
    from tui.tasks.services import catalog

    ks = _Keystone()
    monkeypatch.setattr(catalog, "api", ks.api)
    monkeypatch.setattr(catalog, "find_one", lambda ctx, coll, **f: {"id": "svc"})
    monkeypatch.setattr(catalog, "_region_exists", lambda ctx, region: True)
    return ks


def test_internal_and_admin_endpoints_are_on_the_controllers_management_address(
        tmp_path, keystone):
    from tui.tasks.services import catalog

    ctx = _ctrl_ctx(FakeHost(), tmp_path)
    url = catalog.service_url(ctx, 8778)
    assert url == f"http://{CTRL_SSH}:8778"
    catalog.ensure_endpoints(ctx, "placement", "placement", "Placement API", url)
    assert {(e["interface"], e["url"]) for e in keystone.eps} == {
        ("public", url), ("internal", f"http://{CTRL_MGMT}:8778"),
        ("admin", f"http://{CTRL_MGMT}:8778")}
    assert catalog.endpoints_ok(ctx, "placement", url)
    # an install made before: every interface on the public URL -> internal and admin move
    keystone.eps = [{"id": str(i), "interface": i_, "url": url, "region_id": "RegionOne"}
                    for i, i_ in enumerate(catalog.INTERFACES)]
    assert not catalog.endpoints_ok(ctx, "placement", url)
    catalog.ensure_endpoints(ctx, "placement", "placement", "Placement API", url)
    assert [c[0] for c in keystone.calls[-2:]] == ["PATCH", "PATCH"]
    assert catalog.endpoints_ok(ctx, "placement", url)


def test_one_host_keeps_one_url_for_every_interface(tmp_path, keystone):
    from tui.tasks.services import catalog

    p = Profile("one")
    p.host.address = "10.0.0.5"
    ctx = FakeHost().ctx(p, platform="debian-12", secrets=SECRETS,
                         state_path=tmp_path / "one.json")
    url = catalog.service_url(ctx, 9696)
    catalog.ensure_endpoints(ctx, "neutron", "network", "OpenStack Networking", url)
    assert {e["url"] for e in keystone.eps} == {"http://10.0.0.5:9696"}
    assert catalog.api_host(ctx) == "10.0.0.5"


def test_a_compute_hosts_services_call_the_apis_on_the_controllers_management_address(tmp_path):
    from tui.tasks.services import catalog

    assert catalog.api_host(_ctx(FakeHost(), tmp_path)) == CTRL_MGMT
    assert catalog.api_host(_ctrl_ctx(FakeHost(), tmp_path)) == CTRL_SSH   # as on one host


def test_a_controller_without_the_compute_role_runs_no_nova_compute(tmp_path):
    from tui.tasks.services import cloudobjects as co

    bare = _profile(ctrl_roles=("controller",))
    ids = [s.id for ph in nova.phases(bare, D12) for s in ph.steps]
    assert "nova.libvirt" not in ids and "nova.discover" not in ids and "nova.services" in ids
    assert [s.id for ph in nova.phases(_profile(), D12) for s in ph.steps if s.id in (
        "nova.libvirt", "nova.discover")] == ["nova.libvirt", "nova.discover"]
    pkgs = compute_node.controller_packages(bare, D12)
    assert "nova-api" in pkgs and not any(p.startswith("nova-compute") for p in pkgs)
    assert compute_node.controller_packages(_profile(), D12) == nova.PACKAGES(D12)
    host = FakeHost().systemd(*nova.UNITS)
    ctx = host.ctx(bare, platform="debian-12", secrets=SECRETS, state_path=tmp_path / "c.json")
    host.on(r"^systemctl is-active -q ", (3, ""))
    host.on(r"curl -s -o /dev/null", (0, "200"))
    step = next(s for ph in nova.phases(bare, D12) for s in ph.steps if s.id == "nova.services")
    step.run(ctx)
    assert not host.units["nova-compute"].active and host.units["nova-api"].active
    ctx.cache.clear()
    host.on(r"^systemctl is-active -q \S+ && systemctl is-enabled", lambda h, m, i: (
        0 if "nova-compute" not in m.string else 3, ""))
    assert step.check(ctx)                      # nova-compute is not asked for
    assert [t for t, _h in co.targets(_ctrl_ctx(FakeHost(), tmp_path))] == [
        "stack-tui-verify-lab-1", "stack-tui-verify-lab-2", "stack-tui-verify-lab-3"]
    bare_ctx = FakeHost().ctx(bare, platform="debian-12", state_path=tmp_path / "b.json")
    assert [t for t, _h in co.targets(bare_ctx)] == ["stack-tui-verify-lab-2",
                                                    "stack-tui-verify-lab-3"]


def test_the_agent_steps_detail_names_the_firewall_the_platform_uses():
    """Debian 12's Linux bridge agent filters with iptables, Debian 13's Open vSwitch agent
    with its own conntrack firewall: the plan must not say iptables there."""
    def detail(plat):
        step = next(s for ph in compute_node.phases(_profile().on("lab-2"), PLATFORMS[plat])
                    for s in ph.steps if s.id == "compute.neutron_config")
        return step.detail

    assert "iptables" in detail("debian-12") and "Open vSwitch" not in detail("debian-12")
    assert "Open vSwitch's own firewall" in detail("debian-13")
    assert "iptables" not in detail("debian-13")
