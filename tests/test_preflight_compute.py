"""The compute preflight (Nova, Neutron) on fake facts: CPU virtualization, memory for an
all-in-one compute cloud, the kernel facilities of the Neutron mechanism, the provider network
and the compute ports; all from the one facts round trip, reading only."""

from __future__ import annotations

import inspect

import pytest

from tests.fakehost import FakeHost
from tui.tasks import preflight
from tui.tasks.platforms import PLATFORMS
from tui.tasks.preflight import compute
from tui.tasks.preflight.compute import Kernel
from tui.tasks.profile import Profile
from tui.tasks.services import all_packages, neutron, nova

GiB = 1024 ** 3
TRIXIE = 'PRETTY_NAME="Debian GNU/Linux 13 (trixie)"\nID=debian\nVERSION_ID="13"\n'
BOOKWORM = 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nID=debian\nVERSION_ID="12"\n'
COMPUTE = ["mariadb", "rabbitmq", "memcached", "keystone", "glance", "placement", "neutron",
           "nova"]

# What a Debian 13 sandbox (systemd-nspawn) answered, verbatim: no /sys/module, no /proc/modules,
# no /lib/modules; the kernel config and kallsyms say what is built in.
SANDBOX_KERNEL = """CONFIG_NET_NS=y
# CONFIG_MODULES is not set
CONFIG_BRIDGE_NETFILTER=y
CONFIG_BRIDGE=y
# CONFIG_OPENVSWITCH is not set
CONFIG_VXLAN=y
CONFIG_TUN=y
sym br_dev_xmit
sym br_nf_pre_routing
sym tun_chr_open
sym vxlan_xmit
live tun
live br_netfilter"""
CAPS_ALL = "CapEff:\t00000000fcecffff"
NETCAPS = CAPS_ALL + "\nnetns=kernel\nnetns=ip\nsysnet=rw\ntundev=usable"
NET = """addr lo 127.0.0.1/8
addr stk3c 10.199.0.14/30
route default via 10.199.0.13 dev stk3c
route 10.199.0.12/30 dev stk3c proto kernel scope link src 10.199.0.14
link lo
link stk3c@if496"""


def _facts(os_release: str = TRIXIE, *, mem: int = 16 * GiB, kernel: str = SANDBOX_KERNEL,
           kvm: str = "kvm=absent", netcaps: str = NETCAPS, net: str = NET, ss: str = "") -> str:
    return "\n".join([
        "@@os", os_release.rstrip(), "@@uid", "0", "@@mem", str(mem), "max",
        "@@disk", str(50 * GiB), "@@hostname", "stackhost", "@@resolved", "10.0.0.5",
        "@@addrs", "127.0.0.1", "10.0.0.5", "@@ss", ss, "@@time", "NTPSynchronized=yes",
        "virt=none", "@@sources", "deb http://deb.debian.org/debian trixie main",
        "@@sources822", "", "@@yum", "", "@@lock", "", "@@pm", "",
        "@@kernel", kernel, "@@kvm", kvm, "@@netcaps", netcaps, "@@net", net, "@@end", ""])


def _run(facts: str, platform: str = "debian-13", services=COMPUTE, roles=None):
    host = FakeHost()
    host.on(r"echo @@os", (0, facts))
    pkgs = "".join(f"{p} installed\n" for p in all_packages(PLATFORMS[platform]))
    host.on(r"^echo @@pkgs\n", (0, "@@pkgs\n" + pkgs + "@@probes\nprobe 0 0 \n"))
    p = Profile(name="t")
    p.host.address = "10.0.0.5"
    p.openstack.services = list(services)
    if roles is not None:
        p.host.roles = list(roles)
    ctx = host.ctx(p, platform=platform)
    ctx.facts.clear()
    results = preflight.run_checks(ctx)
    assert host.writes == [] and len(host.commands) == 2   # one facts round trip, one package probe
    return {r.id: r for r in results}, host


def _kernel_rows(kernel: str, netcaps: str = NETCAPS, platform: str = "debian-12",
                 services=COMPUTE):
    rows, _ = _run(_facts(BOOKWORM if platform == "debian-12" else TRIXIE, kernel=kernel,
                          netcaps=netcaps), platform, services)
    return {k: v for k, v in rows.items() if k.startswith("kernel")}


# -- the sandbox itself -------------------------------------------------------------------

@pytest.mark.parametrize("platform", ["debian-13", "debian-12"])
def test_the_sandbox_facts_pass_on_both_releases(platform):
    rows, host = _run(_facts(BOOKWORM if platform == "debian-12" else TRIXIE), platform)
    assert "echo @@kernel" in host.commands[0] and "/proc/kallsyms" in host.commands[0]
    assert not [r for r in rows.values() if r.blocking], [r.lines() for r in rows.values()]
    kern = rows["kernel-net"]
    assert kern.level == "ok" and "CAP_NET_ADMIN" in kern.why and "network namespaces" in kern.why
    if platform == "debian-12":
        assert "bridge (built in), vxlan (built in), br_netfilter (built in)" in kern.why
    else:   # the netdev datapath: tun, not the (absent) openvswitch module
        assert "/dev/net/tun (tun built in)" in kern.why and "no openvswitch module" in kern.why
    assert rows["provider-net"].level == "ok"
    assert rows["memory-compute"].level == "ok"


def test_no_compute_rows_without_nova_or_neutron():
    rows, _ = _run(_facts(kvm="kvm=absent", mem=3 * GiB, netcaps=""),
                   services=["mariadb", "memcached", "keystone"])
    assert not {"kvm", "memory-compute", "kernel-net", "provider-net"} & set(rows)
    assert not [k for k in rows if k.startswith(("kernel", "provider"))]


# -- CPU virtualization -------------------------------------------------------------------

def test_kvm_usable_is_ok_and_uses_novas_own_test():
    rows, _ = _run(_facts(kvm="kvm=usable\ncpu=vmx"))
    assert rows["kvm"].level == "ok" and "KVM: guests run at native speed" in rows["kvm"].why
    # the check and the install never disagree: the facts ask nova.virt_type's question
    assert preflight.facts.KVM_TEST in inspect.getsource(nova.virt_type)
    assert preflight.facts.KVM_TEST in preflight.facts.FACTS_SH


@pytest.mark.parametrize("kvm,hint", [
    ("kvm=absent\ncpu=vmx", "modprobe kvm_intel"),
    ("kvm=unusable\ncpu=svm", "modprobe kvm_amd"),
    ("kvm=absent", "enable virtualization (VT-x/AMD-V) in the firmware"),
])
def test_no_usable_kvm_warns_qemu_emulation_with_the_fitting_hint(kvm, hint):
    res = _run(_facts(kvm=kvm))[0]["kvm"]
    assert res.level == "warning"
    assert "QEMU emulation (TCG), much slower" in res.why
    assert hint in res.fix_hint
    if "cpu=" in kvm:
        assert "pass /dev/kvm into the container or VM" in res.fix_hint
    assert ("cannot be opened" in res.why) == ("unusable" in kvm)


def test_kvm_row_only_with_nova():
    rows, _ = _run(_facts(), services=["mariadb", "rabbitmq", "memcached", "keystone", "neutron"])
    assert "kvm" not in rows and "memory-compute" not in rows and "kernel-net" in rows


# -- memory -------------------------------------------------------------------------------

@pytest.mark.parametrize("mem,level", [(3 * GiB, "blocking"), (int(4.9 * GiB), "blocking"),
                                       (6 * GiB, "warning"), (8 * GiB, "ok")])
def test_compute_memory_has_its_own_higher_thresholds(mem, level):
    """5 GiB floor: the bench measured 4.4 GiB in use after an all-in-one install."""
    rows, _ = _run(_facts(mem=mem))
    assert compute.COMPUTE_MEM_MIN == 5 * GiB and compute.COMPUTE_MEM_GOOD == 8 * GiB
    res = rows["memory-compute"]
    assert res.level == level
    assert ("MariaDB, RabbitMQ, Keystone, Glance, Placement, Nova, Neutron, libvirt/QEMU and "
            "the guest") in res.why
    assert not rows["memory"].blocking   # the control plane alone would run
    if level == "blocking":
        assert "4.4 GiB in use after an all-in-one install" in res.why


# -- kernel module detection --------------------------------------------------------------

@pytest.mark.parametrize("text,state", [
    ("loaded bridge", "loaded"),                        # /sys/module/bridge/initstate or /proc/modules
    ("builtin bridge", "builtin"),                      # /sys/module without initstate, modules.builtin
    ("CONFIG_BRIDGE=y", "builtin"),
    ("sym br_dev_xmit", "present"),                     # only kallsyms shows it
    ("moddir\nfile bridge\nCONFIG_BRIDGE=m", "loadable"),
    ("# CONFIG_BRIDGE is not set", "absent"),
    ("moddir", "absent"),                               # the full module tree has no such file
    ("CONFIG_BRIDGE=m", "unknown"),                     # a module, but no tree here to load it from
    ("", "unknown"),
])
def test_module_state_from_every_source(text, state):
    assert Kernel.parse(text).state("bridge") == state


def test_linuxbridge_missing_vxlan_blocks_naming_it_and_what_needs_it():
    rows = _kernel_rows(SANDBOX_KERNEL.replace("CONFIG_VXLAN=y", "# CONFIG_VXLAN is not set")
                        .replace("sym vxlan_xmit\n", ""))
    res = rows["kernel-vxlan"]
    assert res.blocking and "no vxlan" in res.why and "self-service (VXLAN)" in res.why
    assert "CONFIG_VXLAN" in res.fix_hint
    assert "bridge (built in)" in rows["kernel-net"].why


def test_loadable_bridge_is_fine_and_loadable_br_netfilter_warns_with_a_fix(tmp_path):
    kernel = "moddir\nfile bridge\nfile vxlan\nfile br_netfilter\nCONFIG_MODULES=y"
    rows = _kernel_rows(kernel)
    assert "bridge (loadable)" in rows["kernel-net"].why
    res = rows["kernel-br_netfilter"]
    assert res.level == "warning" and res.fix is not None and "security groups" in res.why
    host = FakeHost().on(r"^modprobe ")
    res.fix(host.ctx(Profile(name="t")))
    assert any("modprobe br_netfilter" in c and "/etc/modules-load.d/" in c
               for c in host.commands)


def test_undeterminable_module_warns_not_blocks():
    rows = _kernel_rows("CONFIG_BRIDGE=m\nCONFIG_VXLAN=y\nCONFIG_BRIDGE_NETFILTER=y")
    res = rows["kernel-bridge"]
    assert res.level == "warning" and "could not tell" in res.why and "built as a module" in res.why


def test_netdev_datapath_needs_tun_not_the_openvswitch_module():
    rows = _kernel_rows(SANDBOX_KERNEL, platform="debian-13")
    assert list(rows) == ["kernel-net"] and "kernel-openvswitch" not in rows


@pytest.mark.parametrize("tundev,words", [("tundev=absent", "there is no /dev/net/tun"),
                                          ("tundev=unusable", "cannot be opened read-write")])
def test_missing_or_unusable_tun_blocks_on_debian_13(tundev, words):
    rows = _kernel_rows(SANDBOX_KERNEL, NETCAPS.replace("tundev=usable", tundev), "debian-13")
    res = rows["kernel-tun"]
    assert res.blocking and words in res.why and "userspace datapath" in res.why
    assert "guests' network devices" in res.why


def test_tun_without_its_driver_blocks():
    kernel = SANDBOX_KERNEL.replace("CONFIG_TUN=y", "# CONFIG_TUN is not set")
    kernel = kernel.replace("sym tun_chr_open\n", "").replace("live tun\n", "")
    res = _kernel_rows(kernel, platform="debian-13")["kernel-tun"]
    assert res.blocking and "no tun" in res.why


def test_no_cap_net_admin_blocks():
    rows = _kernel_rows(SANDBOX_KERNEL, NETCAPS.replace("fcecffff", "fcecefff"))  # bit 12 off
    res = rows["kernel-net-admin"]
    assert res.blocking and "CAP_NET_ADMIN" in res.why and "--cap-add NET_ADMIN" in res.fix_hint


def test_no_cap_sys_admin_blocks_namespaces():
    rows = _kernel_rows(SANDBOX_KERNEL, NETCAPS.replace("fcecffff", "fcccffff"))  # bit 21 off
    res = rows["kernel-netns"]
    assert res.blocking and "CAP_SYS_ADMIN" in res.why and "qdhcp-" in res.why


def test_no_network_namespaces_blocks_and_a_broken_ip_netns_warns():
    rows = _kernel_rows(SANDBOX_KERNEL, NETCAPS.replace("netns=kernel\nnetns=ip\n", ""))
    assert rows["kernel-netns"].blocking and "no network namespaces" in rows["kernel-netns"].why
    rows = _kernel_rows(SANDBOX_KERNEL, NETCAPS.replace("netns=ip\n", ""))
    assert rows["kernel-netns"].level == "warning" and "ip netns" in rows["kernel-netns"].why


def test_read_only_proc_sys_net_blocks():
    rows = _kernel_rows(SANDBOX_KERNEL, NETCAPS.replace("sysnet=rw\n", ""))
    res = rows["kernel-sysctl"]
    assert res.blocking and "read-only" in res.why
    assert "SYSTEMD_NSPAWN_API_VFS_WRITABLE=network" in res.fix_hint


def test_unreadable_capabilities_warn():
    rows = _kernel_rows(SANDBOX_KERNEL, "netns=kernel\nnetns=ip\nsysnet=rw\ntundev=usable")
    assert rows["kernel-caps"].level == "warning"
    assert not [r for r in rows.values() if r.blocking]


# -- the provider network -----------------------------------------------------------------

def _provider(net: str, platform: str = "debian-13"):
    rows, _ = _run(_facts(BOOKWORM if platform == "debian-12" else TRIXIE, net=net), platform)
    return {k: v for k, v in rows.items() if k.startswith("provider")}


def test_the_same_24_on_another_interface_blocks_naming_it():
    rows = _provider(NET + "\naddr eth1 172.24.4.10/24\nroute 172.24.4.0/24 dev eth1 proto "
                           "kernel scope link src 172.24.4.10\nlink eth1")
    (res,) = rows.values()
    assert res.id == "provider-subnet" and res.blocking
    assert "eth1 already has 172.24.4.10/24" in res.why and "eth1" in res.fix_hint


def test_a_route_into_the_range_blocks_and_a_broader_one_warns():
    rows = _provider(NET + "\nroute 172.24.4.128/25 via 10.199.0.13 dev wg0")
    assert rows["provider-subnet"].blocking and "via wg0" in rows["provider-subnet"].why
    rows = _provider(NET + "\nroute 172.16.0.0/12 via 10.199.0.13 dev wg0")
    assert rows["provider-subnet"].level == "warning"
    assert "inside 172.16.0.0/12" in rows["provider-subnet"].why


def test_our_own_provider_interface_is_not_a_clash():
    net = (NET + "\naddr stk-ext 172.24.4.1/24\nroute 172.24.4.0/24 dev stk-ext proto kernel "
           "scope link src 172.24.4.1\nlink stk-ext-p@stk-ext\nlink stk-ext@stk-ext-p\n"
           "link br-provider\nunit # Written by stack-tui: the local end of Neutron's flat "
           "provider network")
    (res,) = _provider(net).values()
    assert res.level == "ok" and "already stack-tui's" in res.why


def test_names_taken_by_someone_else_block():
    (res,) = _provider(NET + "\nlink stk-ext@if7").values()
    assert res.id == "provider-names" and res.blocking and "stk-ext already exists" in res.why


def test_br_provider_matters_only_with_open_vswitch():
    assert _provider(NET + "\nlink br-provider")["provider-names"].blocking
    assert _provider(NET + "\nlink br-provider", "debian-12")["provider-net"].level == "ok"


# -- ports --------------------------------------------------------------------------------

def test_every_compute_port_is_declared():
    for port in (8778, 8774, 8775, 6080, 9696, 6640, 6633):
        assert port in preflight.PORTS, port
    assert preflight.PORTS[6640][0] == "neutron" and "ovsdb-server" in preflight.PORTS[6640][1]


def test_open_vswitch_ports_are_checked_only_where_open_vswitch_runs():
    ss = 'LISTEN 0 128 127.0.0.1:6640 0.0.0.0:* users:(("squatter",pid=77,fd=3))'
    rows, _ = _run(_facts(ss=ss))
    assert rows["port-6640"].blocking and "squatter (pid 77)" in rows["port-6640"].why
    rows, _ = _run(_facts(BOOKWORM, ss=ss), "debian-12")
    assert "port-6640" not in rows and "6640" not in rows["ports"].why
    assert {p.port for p in neutron.OVS_PORTS} == {6640, 6633}


def test_a_compute_host_is_not_judged_on_the_controllers_ports_or_provider_network():
    """A compute-only host serves none of the controller's ports and has no provider network
    (its instances' traffic crosses in VXLAN to the controller): MariaDB's port in use there,
    or 172.24.4.0/24 routed there, is no reason to stop; its compute rows stay."""
    busy = 'LISTEN 0 80 *:3306 *:* users:(("nginx",pid=9,fd=3))'
    taken = NET + "\nroute 172.24.4.0/24 dev eth9"
    ctl, _ = _run(_facts(BOOKWORM, ss=busy, net=taken), "debian-12")
    assert ctl["port-3306"].blocking and ctl["provider-subnet"].blocking
    cmp, _ = _run(_facts(BOOKWORM, ss=busy, net=taken), "debian-12", roles=["compute"])
    assert not [k for k in cmp if k.startswith(("port", "provider"))], list(cmp)
    assert not [r for r in cmp.values() if r.blocking]
    assert cmp["kernel-net"].level == "ok" and cmp["memory-compute"].level == "ok"
