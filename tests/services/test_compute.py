"""Nova's and Neutron's file steps on a scripted fake host (written once, then already done, no
password on a command line), the virt_type decision, quorum queues per platform, and Neutron's
mechanism per platform: Linux bridge on Debian 12, Open vSwitch's userspace datapath on Debian 13
(whose Neutron has no Linux bridge agent any more)."""

from __future__ import annotations

import pytest

from tests.fakehost import FakeHost, run_plan
from tui.tasks.engine import Phase, Plan, Status
from tui.tasks.platforms import PLATFORMS
from tui.tasks.profile import Profile
from tui.tasks.services import neutron, nova, ovs

SECRETS = {"nova_password": "n0va'$(x)\"", "nova_db_password": "novadb-1",
           "neutron_password": "neu'tr\"on", "neutron_db_password": "neudb-2",
           "placement_password": "pl-3", "rabbit_password": "ra@b/b:it",
           "metadata_secret": "meta-S3cret", "admin_password": "x", "demo_password": "y"}


def _profile() -> Profile:
    p = Profile(name="t")
    p.host.address = "10.0.0.5"
    p.openstack.services = ["mariadb", "rabbitmq", "memcached", "keystone", "glance",
                            "placement", "neutron", "nova"]
    return p


def _host() -> FakeHost:
    host = FakeHost()
    host.on(r"^\[ -e \S+\.stack-tui\.orig \] \|\| cp -p ", (0, ""))
    return host


def _run(host, tmp_path, plat_id, steps) -> dict[str, Status]:
    plat = PLATFORMS[plat_id]
    ctx = host.ctx(_profile(), platform=plat_id, secrets=SECRETS,
                   state_path=tmp_path / "state.json")
    chosen = [s for m in (neutron, nova) for ph in m.phases(_profile(), plat)
              for s in ph.steps if s.id in steps]
    return run_plan(Plan([Phase("x", "x", chosen)], platform=plat_id), ctx)


def test_config_files_are_written_once_with_quorum_queues_on_debian_12_without(tmp_path):
    host = _host()
    steps = ("neutron.config", "nova.config")
    assert _run(host, tmp_path, "debian-12", steps) == {s: Status.DONE for s in steps}
    conf = host.read_file(nova.NOVA_CONF)
    assert "transport_url = rabbit://openstack:ra%40b%2Fb%3Ait@10.0.0.5:5672/" in conf
    assert "connection = mysql+pymysql://nova:novadb-1@10.0.0.5/nova_api?charset=utf8mb4" in conf
    assert "metadata_proxy_shared_secret = meta-S3cret" in conf
    assert "rabbit_quorum_queue" not in conf                      # Zed: RabbitMQ 3, classic
    lb = host.read_file(neutron.LB_CONF)
    assert "physical_interface_mappings = provider:stk-ext-p" in lb
    assert "local_ip = 10.0.0.5" in lb
    assert "mechanism_drivers = linuxbridge,l2population" in host.read_file(neutron.ML2_CONF)
    nconf = host.read_file(neutron.NEUTRON_CONF)
    assert "[experimental]\nlinuxbridge = true" in nconf and "interface_driver = linuxbridge" in nconf
    assert not any(v in c for c in host.commands for v in SECRETS.values())

    mark = host.mark()
    assert _run(host, tmp_path, "debian-12", steps) == {s: Status.ALREADY_DONE for s in steps}
    assert host.since(mark)[1] == []


def test_debian_13_gets_quorum_queues_and_open_vswitch_with_the_userspace_datapath(tmp_path):
    host = _host()
    steps = ("neutron.config", "nova.config")
    assert _run(host, tmp_path, "debian-13", steps) == {s: Status.DONE for s in steps}
    conf = host.read_file(nova.NOVA_CONF)
    for key in ("rabbit_quorum_queue", "rabbit_transient_quorum_queue", "use_queue_manager"):
        assert f"{key} = true" in conf
    assert "[spice]\nenabled = false" in conf      # VNC only: this QEMU has no SPICE
    ovs = host.read_file(neutron.OVS_CONF)
    for line in ("datapath_type = netdev", "bridge_mappings = provider:br-provider",
                 "local_ip = 10.0.0.5", "tunnel_types = vxlan", "firewall_driver = openvswitch"):
        assert line in ovs, line
    assert neutron.LB_CONF not in host.files
    assert "mechanism_drivers = openvswitch,l2population" in host.read_file(neutron.ML2_CONF)
    nconf = host.read_file(neutron.NEUTRON_CONF)
    assert "interface_driver = openvswitch" in nconf and "[experimental]" not in nconf
    for agent_conf in (neutron.L3_CONF, neutron.DHCP_CONF):
        assert "interface_driver = openvswitch" in host.read_file(agent_conf)
    assert not any(v in c for c in host.commands for v in SECRETS.values())
    mark = host.mark()
    assert _run(host, tmp_path, "debian-13", steps) == {s: Status.ALREADY_DONE for s in steps}
    assert host.since(mark)[1] == []


def test_the_mechanism_is_platform_data_with_its_agent_unit_and_packages():
    d13, d12 = PLATFORMS["debian-13"], PLATFORMS["debian-12"]
    assert (neutron.layout(d13).mechanism, neutron.layout(d13).ovs_datapath) == (
        "openvswitch", "netdev")
    assert neutron.layout(d12).mechanism == "linuxbridge"
    assert "neutron-openvswitch-agent" in neutron.units(d13)
    assert "neutron-linuxbridge-agent" in neutron.units(d12)
    assert "neutron-openvswitch-agent" in neutron.PACKAGES(d13)
    assert "neutron-linuxbridge-agent" not in neutron.PACKAGES(d13)
    assert neutron.OVS_CONF in neutron.configs(d13) and neutron.LB_CONF in neutron.configs(d12)
    steps = [s.id for ph in neutron.phases(_profile(), d13) for s in ph.steps]
    assert "neutron.mechanism" not in steps and "neutron.agents" in steps


def _provider_host(ovs_running: bool) -> FakeHost:
    """A host whose Open vSwitch database has the setting and the port once the unit ran."""
    host = _host().systemd(neutron.PROVIDER_UNIT, ovs.VSWITCHD)
    host.units[ovs.VSWITCHD].active = ovs_running
    host.on(r"^systemctl daemon-reload$", (0, ""))
    host.on(r"^systemctl is-active -q ovs-vswitchd.service$",
            lambda h, m, i: (0 if h.units[ovs.VSWITCHD].active else 3, ""))
    host.on(r"^ip -o -4 addr show dev stk-ext", (0, "5: stk-ext inet 172.24.4.1/24 scope global"))

    def db(h, m, i):
        unit = h.units[neutron.PROVIDER_UNIT]
        return (0, '"true"\nbr-provider\n') if unit.starts or unit.restarts else (1, "")
    host.on(r"^ovs-vsctl --timeout=10 get Open_vSwitch \. other_config:userspace-tso-enable "
            r"2>/dev/null; ovs-vsctl --timeout=10 port-to-br stk-ext-p 2>/dev/null$", db)
    return host


def _provider_step():
    (step,) = [s for ph in neutron.phases(_profile(), PLATFORMS["debian-13"])
               for s in ph.steps if s.id == "neutron.provider"]
    return step


def test_the_provider_veth_joins_a_netdev_bridge_and_vswitchd_finishes_checksums(tmp_path):
    host = _provider_host(ovs_running=False)
    ctx = host.ctx(_profile(), platform="debian-13", secrets=SECRETS,
                   state_path=tmp_path / "s.json")
    step = _provider_step()
    assert not step.check(ctx)
    step.run(ctx)
    unit = host.read_file(neutron.PROVIDER_UNIT_PATH)
    assert "datapath_type=netdev -- --may-exist add-port br-provider stk-ext-p" in unit
    assert "Wants=openvswitch-switch.service" in unit
    dropin = host.read_file(ovs.VSWITCHD_DROPIN)
    assert "ExecStartPre=/usr/bin/ovs-vsctl --no-wait --timeout=30 set Open_vSwitch . " \
           "other_config:userspace-tso-enable=true" in dropin
    assert host.units[ovs.VSWITCHD].restarts == 0   # not running yet: its first start reads it
    assert step.check(ctx)
    mark = host.mark()
    assert step.check(ctx) and host.since(mark)[1] == []
    # Debian 12 keeps the plain veth unit for the Linux bridge agent
    assert neutron.provider_unit(neutron.layout(PLATFORMS["debian-12"])) == \
        neutron.PROVIDER_UNIT_BODY and "ovs-vsctl" not in neutron.PROVIDER_UNIT_BODY


def test_a_running_vswitchd_is_restarted_once_for_the_setting(tmp_path):
    host = _provider_host(ovs_running=True)
    ctx = host.ctx(_profile(), platform="debian-13", secrets=SECRETS,
                   state_path=tmp_path / "s.json")
    step = _provider_step()
    step.run(ctx)
    assert host.units[ovs.VSWITCHD].restarts == 1
    step.run(ctx)                                     # the drop-in is there: no second restart
    assert host.units[ovs.VSWITCHD].restarts == 1


def test_a_provider_veth_outside_the_bridge_is_not_done(tmp_path):
    host = _provider_host(ovs_running=True)
    host.put(neutron.PROVIDER_UNIT_PATH,
             neutron.provider_unit(neutron.layout(PLATFORMS["debian-13"])))
    host.put(ovs.VSWITCHD_DROPIN, ovs.VSWITCHD_DROPIN_BODY)
    host.units[neutron.PROVIDER_UNIT].active = host.units[neutron.PROVIDER_UNIT].enabled = True
    ctx = host.ctx(_profile(), platform="debian-13", secrets=SECRETS,
                   state_path=tmp_path / "s.json")
    assert not _provider_step().check(ctx)


@pytest.mark.parametrize("answer,expected", [("kvm\n", "kvm"), ("", "qemu")])
def test_virt_type_is_kvm_only_with_a_usable_device(tmp_path, answer, expected):
    host = _host().on(r"^test -c /dev/kvm", (0 if answer else 1, answer))
    ctx = host.ctx(_profile(), secrets=SECRETS, state_path=tmp_path / "s.json")
    assert nova.virt_type(ctx) == expected


def test_compute_services_are_opt_in_and_nova_brings_the_boot_check():
    assert not {"placement", "neutron", "nova"} & set(Profile(name="x").openstack.services)
    ids = [ph.id for ph in nova.phases(_profile(), PLATFORMS["debian-12"])]
    assert ids == ["nova", "cloud"]


def test_uwsgi_process_counts_are_cut_once_and_duplicates_removed(tmp_path):
    """Debian's nova inis (both releases): few processes, and `Connection: close` on every
    answer, which the other APIs' inis have and nova's lack (uWSGI closes each connection
    after its answer; a client reusing it after a 204 was reset on CI)."""
    host = _host()
    host.put("/etc/nova/nova-api-metadata-uwsgi.ini",
             "[uwsgi]\nrem-header = Content-Length\nprocesses = 4\nmaster = true\n"
             "processes = 8\nthreads = 32\n")
    host.put("/etc/nova/nova-api-uwsgi.ini",
             "[uwsgi]\nrem-header = Content-Length\nprocesses = 16\nthreads = 1\n"
             "# stack-tui: one host needs few API processes\n")
    assert _run(host, tmp_path, "debian-12", ("nova.config",)) == {"nova.config": Status.DONE}
    for path, n in (("/etc/nova/nova-api-metadata-uwsgi.ini", "1"),
                    ("/etc/nova/nova-api-uwsgi.ini", "2")):
        ini = host.read_file(path).splitlines()
        assert [ln for ln in ini if ln.startswith("processes")] == [f"processes = {n}"]
        assert [ln for ln in ini if ln.startswith("add-header")] == [
            "add-header = Connection: close"]
        assert "rem-header = Content-Length" in ini
        assert len([ln for ln in ini if ln.startswith("# stack-tui: ")]) == 1, ini
    meta = host.read_file("/etc/nova/nova-api-metadata-uwsgi.ini")
    assert "threads = 32" in meta and "master = true" in meta
    assert "[conductor]\nworkers = 2" in host.read_file(nova.NOVA_CONF)
    mark = host.mark()
    assert _run(host, tmp_path, "debian-12", ("nova.config",)) == {
        "nova.config": Status.ALREADY_DONE}
    assert host.since(mark)[1] == []


@pytest.mark.parametrize("rows,mapped", [("1\n", True), ("0\n", False), ("", False)])
def test_discover_check_reads_the_host_mapping_with_sql_not_nova_manage(rows, mapped):
    """The re-run's look at host discovery is one SQL count (nova-manage's Python start-up
    cost seconds); the host name reaches it as a quoted SQL literal inside one shell word."""
    import shlex

    host = _host()
    seen = []

    def answer(_host, m, _stdin):
        seen.append(m.string)
        return (0, rows)

    host.on(r"^mysql --batch --skip-column-names -e ", answer)
    ctx = host.ctx(_profile(), platform="debian-13", secrets=SECRETS)
    ctx.facts["hostname"] = "node'1$(x)"
    assert nova._discover_check(ctx) is mapped
    words = shlex.split(seen[0])
    assert words[4] == ("SELECT COUNT(*) FROM nova_api.host_mappings WHERE host = "
                        "'node\\'1$(x)'"), words
    assert not any("nova-manage" in c for c in seen)
    ctx.facts["hostname"] = ""
    assert nova._discover_check(ctx) is False
