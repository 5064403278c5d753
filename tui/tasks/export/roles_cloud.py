"""The exported `cloud` role: the objects the engine's cloud.objects step makes (flavor,
provider network and subnet as admin; the demo project's network, subnet, router, security
group rules and keypair as demo) and its cloud.boot proof: a test server ACTIVE whose floating
IP answers ping from the host.  Everything through openstack.cloud, names and values from
services/cloudobjects.py and services/neutron.py.

One difference from `stack-tui apply`, on purpose: the test server and its floating IP are
kept (as the engine keeps them on several hosts), so a second run finds them and changes
nothing, and the cloud can be checked from outside."""

from __future__ import annotations

from ..services import cloudobjects as co
from ..services import neutron

OS_ = "openstack.cloud."
DEMO = {"auth": "{{ stack_tui_os_auth_demo }}"}
KEY = "{{ playbook_dir }}/demo-key"


def _admin_objects() -> list[dict]:
    lo, hi = neutron.PROVIDER_POOL
    return [
        {"name": f"Flavor {co.FLAVOR} (1 vCPU, 128 MiB, 1 GiB disk)", OS_ + "compute_flavor": {
            "name": co.FLAVOR, "vcpus": 1, "ram": 128, "disk": 1, "state": "present"},
         "register": "stack_tui_flavor", "no_log": True},
        {"name": f"Provider network ({neutron.PHYSNET}, flat, external, shared)",
         OS_ + "network": {"name": "provider", "shared": True, "external": True,
                           "provider_network_type": "flat",
                           "provider_physical_network": neutron.PHYSNET, "state": "present"},
         "no_log": True},
        {"name": f"Provider subnet {neutron.PROVIDER_CIDR}, floating IPs {lo}-{hi}",
         OS_ + "subnet": {"name": "provider-subnet", "network": "provider",
                          "cidr": neutron.PROVIDER_CIDR, "gateway_ip": neutron.PROVIDER_GATEWAY,
                          "enable_dhcp": False, "allocation_pool_start": lo,
                          "allocation_pool_end": hi, "state": "present"}, "no_log": True},
    ]


def _demo_objects() -> list[dict]:
    here = {"delegate_to": "localhost", "become": False, "run_once": True}
    return [
        {"name": f"Network {co.NET} (project demo)", OS_ + "network": {
            "name": co.NET, "state": "present", **DEMO}, "register": "stack_tui_net",
         "no_log": True},
        {"name": f"Subnet {co.SUBNET} {co.DEMO_CIDR}", OS_ + "subnet": {
            "name": co.SUBNET, "network": co.NET, "cidr": co.DEMO_CIDR,
            "gateway_ip": co.DEMO_GATEWAY, "state": "present", **DEMO}, "no_log": True},
        {"name": f"Router {co.ROUTER} to the provider network", OS_ + "router": {
            "name": co.ROUTER, "network": "provider", "interfaces": [co.SUBNET],
            "state": "present", **DEMO}, "no_log": True},
        {"name": "The demo project's default security group lets ICMP and SSH in",
         OS_ + "security_group_rule": {
             "security_group": "default", "direction": "ingress", "ether_type": "IPv4",
             "protocol": "{{ item.protocol }}",
             "port_range_min": "{{ item.port | default(omit) }}",
             "port_range_max": "{{ item.port | default(omit) }}", "state": "present",
             **DEMO},
         "loop": [{"protocol": "icmp"}, {"protocol": "tcp", "port": 22}], "no_log": True},
        {"name": "The demo keypair's key, made once on this machine (0600, no passphrase: "
                 "the engine's demo-key too)",
         "ansible.builtin.command": {
             "argv": ["ssh-keygen", "-q", "-t", "rsa", "-b", "3072", "-N", "", "-C",
                      "stack-tui-demo", "-f", KEY], "creates": KEY}, **here},
        {"name": f"Keypair {co.KEYPAIR} (project demo)", OS_ + "keypair": {
            "name": co.KEYPAIR, "public_key": "{{ lookup('file', playbook_dir ~ '/demo-key.pub') }}",
            "state": "present", **DEMO}, "no_log": True},
    ]


def _boot(profile) -> list[dict]:
    name = profile.image.name
    fip = "{{ stack_tui_fip.floating_ip.floating_ip_address }}"
    return [
        {"name": f"Image {name}'s id", OS_ + "image_info": {"image": name},
         "register": "stack_tui_image", "no_log": True},
        {"name": f"Test server {co.SERVER} ACTIVE (as demo; kept)", OS_ + "server": {
            "name": co.SERVER, "image": name, "flavor": co.FLAVOR, "network": co.NET,
            "key_name": co.KEYPAIR, "security_groups": ["default"], "auto_ip": False,
            "wait": True, "timeout": co.BOOT_TIMEOUT, "state": "present", **DEMO},
         "register": "stack_tui_server", "no_log": True},
        {"name": f"{co.SERVER}'s floating IP on the provider network",
         OS_ + "floating_ip": {"server": co.SERVER, "network": "provider", "reuse": True,
                               "wait": True, "timeout": 120, **DEMO},
         "register": "stack_tui_fip", "no_log": True},
        _ping("Verify: the floating IP answers ping from the host", fip),
        # what the engine's cloud.boot records: this image on this network with this flavor
        _record("Record the proven boot (stack-tui apply finds cloud.boot done)",
                "cloud.boot", ""),
    ]


def _ping(name: str, address: str, **loop) -> dict:
    """The engine's _ping: ``address`` answers one ping within 90 tries, a second apart."""
    return {"name": name, "ansible.builtin.command": {
                "argv": ["ping", "-c", "1", "-W", "2", address]},
            **loop, "register": "stack_tui_ping", "until": "stack_tui_ping.rc == 0",
            "retries": 90, "delay": 1, "changed_when": False}


def _record(name: str, marker: str, more: str) -> dict:
    """The engine's marker of a proven boot: this image on this network with this flavor
    (and ``more``), so `stack-tui apply` finds the step done."""
    return {"name": name, "ansible.builtin.copy": {
        "dest": f"/var/lib/stack-tui/{marker}", "mode": "0644",
        "content": "{{ stack_tui_image.images[0].id }} {{ stack_tui_net.network.id }} "
                   "{{ stack_tui_flavor.flavor.id }}" + more + "\n"}}


def _targets(profile) -> list[list[str]]:
    """cloudobjects.targets: (server, Nova's name of the host) for each computing host; the
    controller by its system host name (the engine's hostname fact)."""
    from .source import context

    ctx = context(profile)
    ctx.facts["hostname"] = "{{ ansible_facts['hostname'] }}"
    return [[server, host] for server, host in co.targets(ctx)]


def _boot_hosts(profile) -> list[dict]:
    """cloud.boot on several hosts: as admin on the demo network, one server per computing
    host in availability zone nova:<host>, ACTIVE there, a floating IP each that answers
    ping from the controller; kept (a second run finds them and changes nothing)."""
    name = profile.image.name
    label = {"label": "{{ item[0] }} on {{ item[1] }}"}
    return [
        {"name": f"Image {name}'s id", OS_ + "image_info": {"image": name},
         "register": "stack_tui_image", "no_log": True},
        {"name": f"Security group {co.VERIFY_SG} (admin) for the test servers",
         OS_ + "security_group": {"name": co.VERIFY_SG,
                                  "description": "stack-tui's per-host test servers",
                                  "state": "present"}, "no_log": True},
        {"name": f"{co.VERIFY_SG} lets ICMP and SSH in", OS_ + "security_group_rule": {
            "security_group": co.VERIFY_SG, "direction": "ingress", "ether_type": "IPv4",
            "protocol": "{{ item.protocol }}",
            "port_range_min": "{{ item.port | default(omit) }}",
            "port_range_max": "{{ item.port | default(omit) }}", "state": "present"},
         "loop": [{"protocol": "icmp"}, {"protocol": "tcp", "port": 22}], "no_log": True},
        {"name": f"A test server on each computing host, ACTIVE (as admin on {co.NET}, "
                 "availability zone nova:<host>; kept)", OS_ + "server": {
             "name": "{{ item[0] }}", "image": name, "flavor": co.FLAVOR,
             "nics": [{"net-id": "{{ stack_tui_net.network.id }}"}],
             "security_groups": [co.VERIFY_SG], "availability_zone": "nova:{{ item[1] }}",
             "auto_ip": False, "wait": True, "timeout": co.BOOT_TIMEOUT, "state": "present"},
         "loop": _targets(profile), "loop_control": label, "register": "stack_tui_servers",
         "no_log": True},
        {"name": "Each server runs on its host", "ansible.builtin.assert": {
            "that": ["item.server.compute_host == item.item[1]"],
            "fail_msg": "{{ item.item[0] }} runs on {{ item.server.compute_host }}, not "
                        "{{ item.item[1] }}", "quiet": True},
         "loop": "{{ stack_tui_servers.results }}",
         "loop_control": {"label": "{{ item.item[0] }}"}},
        {"name": "Each server's floating IP on the provider network", OS_ + "floating_ip": {
            "server": "{{ item[0] }}", "network": "provider", "reuse": True, "wait": True,
            "timeout": 120},
         "loop": _targets(profile), "loop_control": label, "register": "stack_tui_fips",
         "no_log": True},
        _ping("Verify: each floating IP answers ping from the controller",
              "{{ item.floating_ip.floating_ip_address }}",
              loop="{{ stack_tui_fips.results }}",
              loop_control={"label": "{{ item.item[0] }}"}),
        # what the engine's cloud.boot records on several hosts: image, network, flavor, hosts
        _record("Record the proven boots (stack-tui apply finds cloud.boot done)",
                "cloud.boot_hosts", " " + ",".join(h for _s, h in _targets(profile))),
    ]


def cloud_role(profile) -> dict:
    from .roles_base import role

    boot = _boot_hosts(profile) if co.several_hosts(profile) else _boot(profile)
    return role([*_admin_objects(), *_demo_objects(), *boot])


def wanted(profile) -> bool:
    """The engine makes these objects when Nova and Neutron run with the demo project."""
    svc = profile.openstack.services
    return "nova" in svc and "neutron" in svc and profile.openstack.demo
