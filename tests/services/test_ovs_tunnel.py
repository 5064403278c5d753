"""Several hosts on Debian 13 (Open vSwitch's userspace datapath): the VXLAN endpoint step on a
scripted fake host.  The management address moves from mgmt0 to br-phy (netdev, mgmt0 its
port) through a unit, the same address, and what listened on it still answers; a re-run finds
it done and does nothing; Debian 12 and one host get no such step."""

from __future__ import annotations

import pytest

from tests.fakehost import FakeHost, Unit
from tui.tasks.engine import StepError
from tui.tasks.platforms import PLATFORMS
from tui.tasks.profile import HostConfig, Profile
from tui.tasks.services import compute_node, neutron, ovs, ovs_tunnel

CTRL, OWN = "10.198.1.11", "10.198.1.12"
D13, D12 = PLATFORMS["debian-13"], PLATFORMS["debian-12"]
SERVICES = ["mariadb", "rabbitmq", "memcached", "keystone", "glance", "placement", "neutron",
            "nova"]


def _profile(n: int = 3) -> Profile:
    hosts = [HostConfig(name="lab-1", roles=["controller", "compute"], address="10.199.0.2",
                        mgmt_address=CTRL)]
    hosts += [HostConfig(name=f"lab-{k}", roles=["compute"], address=f"10.199.0.{4 * k}",
                         mgmt_address=f"10.198.1.{10 + k}") for k in range(2, n + 1)]
    p = Profile("lab", hosts=hosts)
    p.openstack.services = list(SERVICES)
    return p


class Net:
    """The host's addresses and br-phy as the commands see them."""

    def __init__(self, addr: str, routes: str = ""):
        self.addr, self.on = addr, "mgmt0"
        self.ports: list[str] = []
        self.routes = routes
        self.tso = False
        self.listen = ["3306", "5672", "11211"]
        self.dead: set[str] = set()

    def look(self, _h, _m, _i):
        out = (f"1: lo    inet 127.0.0.1/8 scope host lo\n"
               f"2: {self.on}    inet {self.addr}/24 scope global {self.on}\n"
               "9: stk1c    inet 10.199.0.2/30 scope global stk1c\n--\n")
        out += "".join(f"{p}\n" for p in self.ports) + "--\n"
        return 0, out + ('"netdev"\n' if self.ports else "")

    def move(self, host, _m, _i):
        unit = host.units.setdefault(ovs_tunnel.UNIT, Unit())
        unit.active = unit.enabled = True
        unit.restarts += 1
        self.ports, self.on, self.tso = ["mgmt0"], ovs_tunnel.BRIDGE, True
        return 0, ""


def _host(addr: str, routes: str = "") -> tuple[FakeHost, Net]:
    net = Net(addr, routes)
    host = FakeHost().systemd(ovs.VSWITCHD, ovs_tunnel.UNIT)
    host.on(r"^ip -o -4 addr show 2>/dev/null; echo --; ovs-vsctl", net.look)
    host.on(r"^ip -4 route show dev mgmt0 ", lambda h, m, i: (
        0, "10.198.1.0/24 proto kernel scope link src " + addr + "\n" + net.routes))
    host.on(r"^ss -Hltn", lambda h, m, i: (0, "".join(
        f"LISTEN 0 128 {addr}:{p} 0.0.0.0:*\n" for p in net.listen)
        + "LISTEN 0 128 127.0.0.1:6640 0.0.0.0:*\n"))
    host.on(r"^timeout 5 bash -c '</dev/tcp/([\d.]+)/(\d+)'", lambda h, m, i: (
        1 if f"{m.group(1)}:{m.group(2)}" in net.dead else 0, ""))
    host.on(r"^systemctl daemon-reload$", (0, ""))
    host.on(r"^\[ -e \S+\.stack-tui\.orig \] \|\| cp -p ", (0, ""))
    host.on(r"get Open_vSwitch \. other_config:userspace-tso-enable 2>/dev/null$",
            lambda h, m, i: (0, '"true"\n' if net.tso else ""))
    host.on(rf"^date \+%s; systemctl enable -q {ovs_tunnel.UNIT} 2>&1; systemctl restart ",
            net.move)
    return host, net


def _ctx(host, profile, name="lab-1", platform="debian-13"):
    view = profile if name == "lab-1" else profile.on(name)
    ctx = host.ctx(view, platform=platform)
    ctx.facts["mgmt_address"] = view.host.mgmt_address
    if name != "lab-1":
        ctx.controller_facts = {"mgmt_address": CTRL}
    return ctx


def _tunnel_step(phases):
    found = [s for ph in phases for s in ph.steps if s.id.endswith(".tunnel")]
    return found[0] if found else None


def test_the_controller_moves_its_address_to_br_phy_and_its_services_still_answer():
    host, net = _host(CTRL)
    step = _tunnel_step(neutron.phases(_profile(), D13))
    assert step.id == "neutron.tunnel"
    assert [s.id for s in neutron.phases(_profile(), D13)[0].steps][:2] == \
        ["neutron.tunnel", "neutron.user"]
    ctx = _ctx(host, _profile())
    assert not step.check(ctx)
    step.run(ctx)
    body = host.read_file(ovs_tunnel.UNIT_PATH)
    assert body == ovs_tunnel.unit_body("mgmt0", CTRL, "24")
    assert ("add-br br-phy -- set bridge br-phy datapath_type=netdev -- --may-exist add-port "
            "br-phy mgmt0") in body
    assert f"ip addr replace {CTRL}/24 dev br-phy" in body
    assert f"ip addr del {CTRL}/24 dev mgmt0" in body
    assert "PartOf=ovs-vswitchd.service" in body and "WantedBy=multi-user.target" in body
    assert host.read_file(ovs.VSWITCHD_DROPIN) == ovs.VSWITCHD_DROPIN_BODY
    # every TCP port that listened on the address is tried after the move
    for port in net.listen:
        assert f"timeout 5 bash -c '</dev/tcp/{CTRL}/{port}' 2>/dev/null" in host.commands
    assert net.on == "br-phy" and host.units[ovs_tunnel.UNIT].enabled
    assert step.check(ctx)


def test_a_re_run_finds_it_done_and_changes_nothing():
    host, net = _host(CTRL)
    step = _tunnel_step(neutron.phases(_profile(), D13))
    ctx = _ctx(host, _profile())
    step.run(ctx)
    mark = host.mark()
    assert step.check(ctx)
    cmds, writes = host.since(mark)
    assert writes == [] and not any("restart" in c or "ip addr" in c.split(";")[0]
                                    for c in cmds)
    # and run again (a Retry): the port is br-phy's, the same unit, nothing rewritten
    restarts = host.units[ovs_tunnel.UNIT].restarts
    mark = host.mark()
    step.run(ctx)
    assert host.since(mark)[1] == []
    assert host.read_file(ovs_tunnel.UNIT_PATH) == ovs_tunnel.unit_body("mgmt0", CTRL, "24")
    assert host.units[ovs_tunnel.UNIT].restarts == restarts + 1   # re-applied, harmless
    assert step.check(ctx)


def test_a_compute_host_moves_its_own_address_and_reaches_rabbitmq_on_the_controller():
    host, net = _host(OWN)
    phases = compute_node.phases(_profile().on("lab-2"), D13)
    step = _tunnel_step(phases)
    assert step.id == "compute.tunnel" and phases[0].steps[0] is step
    ctx = _ctx(host, _profile(), "lab-2")
    step.run(ctx)
    assert host.read_file(ovs_tunnel.UNIT_PATH) == ovs_tunnel.unit_body("mgmt0", OWN, "24")
    assert f"timeout 5 bash -c '</dev/tcp/{CTRL}/5672' 2>/dev/null" in host.commands
    assert not any(c.startswith("ss ") for c in host.commands)
    assert step.check(ctx)


def test_rabbitmq_not_answering_after_the_move_is_an_explained_failure():
    host, net = _host(OWN)
    net.dead = {f"{CTRL}:5672"}
    step = _tunnel_step(compute_node.phases(_profile().on("lab-2"), D13))
    with pytest.raises(StepError) as exc:
        step.run(_ctx(host, _profile(), "lab-2"))
    assert f"{CTRL}:5672" in exc.value.what and "ovs/route/show" in exc.value.hint


def test_a_management_interface_with_a_default_route_is_refused_before_anything_moves():
    host, net = _host(OWN, routes="default via 10.198.1.1 proto static\n")
    step = _tunnel_step(compute_node.phases(_profile().on("lab-2"), D13))
    with pytest.raises(StepError) as exc:
        step.run(_ctx(host, _profile(), "lab-2"))
    assert "default via 10.198.1.1" in exc.value.why
    assert net.on == "mgmt0" and host.writes == []


def test_a_compute_host_agent_maps_no_provider_bridge():
    host, _net = _host(OWN)
    ctx = _ctx(host, _profile(), "lab-2")
    path, values, _g = neutron.agent_file(ctx, provider=False)
    assert path == neutron.OVS_CONF and values[("ovs", "bridge_mappings")] == ""
    assert values[("ovs", "local_ip")] == OWN
    assert neutron.agent_file(_ctx(host, _profile()), provider=True)[1][
        ("ovs", "bridge_mappings")] == "provider:br-provider"


@pytest.mark.parametrize("profile,plat", [(_profile(1), D13), (_profile(), D12)],
                         ids=["one host on Debian 13", "three hosts on Debian 12"])
def test_no_tunnel_bridge_for_one_host_or_on_debian_12(profile, plat):
    assert _tunnel_step(neutron.phases(profile, plat)) is None
    if len(profile.hosts) > 1:
        assert _tunnel_step(compute_node.phases(profile.on("lab-2"), plat)) is None
    assert not ovs_tunnel.needed(profile, neutron.layout(plat))


def test_the_plan_of_three_hosts_on_debian_13_has_a_tunnel_step_on_each_before_its_agent():
    from tui.tasks import deploy

    plan = deploy.build_plan(_profile(), "debian-13")
    ids = [s.id for ph in plan.phases for s in ph.steps]
    assert "preflight.hosts" not in ids   # no longer refused
    for tunnel, agent in (("neutron.tunnel", "neutron.services"),
                          ("lab-2:compute.tunnel", "lab-2:compute.services"),
                          ("lab-3:compute.tunnel", "lab-3:compute.services")):
        assert ids.index(tunnel) < ids.index(agent)
    # the controller's: before Neutron's first step; a compute host's: first of its phase
    assert ids.index("neutron.tunnel") + 1 == ids.index("neutron.user")
    stages = {ph.id: ph.stage for ph in plan.phases}
    assert stages["neutron"] == 1 and stages["lab-2:compute"] == 2
    one = deploy.build_plan(_profile(1), "debian-13")
    assert not [s for ph in one.phases for s in ph.steps if s.id.endswith(".tunnel")]
