"""The objects a user needs to boot a server, made once (look before create), and the proof
that the cloud boots one: flavor (admin), provider network and subnet (admin), the demo
project's network, subnet, router, security group rules and keypair; then a test server
that must reach ACTIVE, show a booted console and answer ping on a floating IP from the host.
The test server and its floating IP are deleted; everything else stays for the user.

All through keystoneauth1 sessions over the port forwards (the APIs' own JSON)."""

from __future__ import annotations

import time

from ..engine import Phase, Step, StepError
from .common import LOOK, admin_session, forward, marker_check, marker_set, user_session

FLAVOR = "stack-tui.tiny"
NET, SUBNET, ROUTER = "demo-net", "demo-subnet", "demo-router"
DEMO_CIDR, DEMO_GATEWAY = "192.168.100.0/24", "192.168.100.1"
KEYPAIR = "stack-tui"
SERVER = "stack-tui-verify"
BOOT_TIMEOUT = 300


def _nova(ctx, sess, method, path, **kw):
    return _call(ctx, sess, method, f"http://127.0.0.1:{forward(ctx, 8774)}/v2.1{path}", **kw)


def _neutron(ctx, sess, method, path, **kw):
    return _call(ctx, sess, method, f"http://127.0.0.1:{forward(ctx, 9696)}/v2.0{path}", **kw)


def _call(ctx, sess, method, url, ok=(200, 201, 202, 204), **kw):
    resp = sess.request(url, method, raise_exc=False,
                        headers={"OpenStack-API-Version": "compute 2.79"}, **kw)
    if resp.status_code not in ok:
        raise StepError(f"{method} {url.split('/', 3)[-1]} answered {resp.status_code}.",
                        ctx.redact(resp.text[:400]), "read the service's log on the host")
    return resp.json() if resp.content else {}


def _demo(ctx):
    return user_session(ctx, "demo", ctx.secrets["demo_password"], "demo")


def _one(items, **match):
    return next((i for i in items if all(i.get(k) == v for k, v in match.items())), None)


def _state(ctx) -> dict:
    from .neutron import PHYSNET

    adm, demo = admin_session(ctx), _demo(ctx)
    nets = _neutron(ctx, adm, "GET", "/networks")["networks"]
    out = {
        "flavor": _one(_nova(ctx, adm, "GET", "/flavors?is_public=None")["flavors"], name=FLAVOR),
        "provider": _one(nets, **{"provider:physical_network": PHYSNET, "router:external": True}),
        "net": _one(_neutron(ctx, demo, "GET", f"/networks?name={NET}")["networks"], name=NET),
        "router": _one(_neutron(ctx, demo, "GET", f"/routers?name={ROUTER}")["routers"],
                       name=ROUTER),
        "keypair": any(k["keypair"]["name"] == KEYPAIR for k in
                       _nova(ctx, demo, "GET", "/os-keypairs")["keypairs"]),
    }
    out["subnets"] = _neutron(ctx, adm, "GET", "/subnets")["subnets"]
    sgs = _neutron(ctx, demo, "GET", "/security-groups?name=default")["security_groups"]
    out["sg"] = sgs[0] if sgs else None
    return out


def _sg_missing(sg) -> list[tuple[str, int | None]]:
    rules = sg["security_group_rules"] if sg else []
    want = [("icmp", None), ("tcp", 22)]
    return [(p, port) for p, port in want if not any(
        r["direction"] == "ingress" and r.get("protocol") == p
        and (port is None or r.get("port_range_min") == port) for r in rules)]


def _record(ctx, s: dict) -> None:
    """What the verification made and leaves for the user, as found (the run's summary
    shows it: neutron.summary)."""
    prov, net = s["provider"], s["net"]
    if not (prov and net and s["router"]):
        return

    def subnet(network) -> dict:
        return _one(s["subnets"], network_id=network["id"]) or {}

    floating = ", ".join(f"{p.get('start')}-{p.get('end')}"
                         for p in subnet(prov).get("allocation_pools") or ())
    ctx.facts["networks"] = {"provider": prov.get("name", ""), "floating": floating,
                             "network": net.get("name", ""), "cidr": subnet(net).get("cidr", ""),
                             "router": s["router"].get("name", "")}


def _objects_check(ctx) -> bool:
    s = _state(ctx)
    ok = bool(s["flavor"] and s["provider"] and s["net"] and s["router"] and s["keypair"]
              and s["sg"] and not _sg_missing(s["sg"])
              and s["router"].get("external_gateway_info"))
    if ok:
        _record(ctx, s)
    return ok


def _objects_run(ctx) -> None:
    from .neutron import PHYSNET, PROVIDER_CIDR, PROVIDER_GATEWAY, PROVIDER_POOL

    adm, demo = admin_session(ctx), _demo(ctx)
    s = _state(ctx)
    if not s["flavor"]:
        ctx.output(f"creating flavor {FLAVOR} (1 vCPU, 128 MiB, 1 GiB disk)")
        _nova(ctx, adm, "POST", "/flavors", json={"flavor": {
            "name": FLAVOR, "vcpus": 1, "ram": 128, "disk": 1}})
    prov = s["provider"]
    if not prov:
        ctx.output(f"creating the provider network ({PHYSNET}, flat, external)")
        prov = _neutron(ctx, adm, "POST", "/networks", json={"network": {
            "name": "provider", "shared": True, "router:external": True,
            "provider:network_type": "flat", "provider:physical_network": PHYSNET}})["network"]
    if not _one(s["subnets"], network_id=prov["id"]):
        _neutron(ctx, adm, "POST", "/subnets", json={"subnet": {
            "name": "provider-subnet", "network_id": prov["id"], "ip_version": 4,
            "cidr": PROVIDER_CIDR, "gateway_ip": PROVIDER_GATEWAY, "enable_dhcp": False,
            "allocation_pools": [{"start": PROVIDER_POOL[0], "end": PROVIDER_POOL[1]}]}})
    net = s["net"] or _neutron(ctx, demo, "POST", "/networks",
                               json={"network": {"name": NET}})["network"]
    sub = _one(s["subnets"], network_id=net["id"]) or _neutron(ctx, demo, "POST", "/subnets", json={
        "subnet": {"name": SUBNET, "network_id": net["id"], "ip_version": 4,
                   "cidr": DEMO_CIDR, "gateway_ip": DEMO_GATEWAY}})["subnet"]
    router = s["router"]
    if not router:
        ctx.output(f"creating router {ROUTER} to the provider network")
        router = _neutron(ctx, demo, "POST", "/routers", json={"router": {
            "name": ROUTER, "external_gateway_info": {"network_id": prov["id"]}}})["router"]
        _neutron(ctx, demo, "PUT", f"/routers/{router['id']}/add_router_interface",
                 json={"subnet_id": sub["id"]})
    for proto, port in _sg_missing(s["sg"]):
        rule = {"security_group_id": s["sg"]["id"], "direction": "ingress", "protocol": proto,
                "ethertype": "IPv4"}
        if port:
            rule.update(port_range_min=port, port_range_max=port)
        _neutron(ctx, demo, "POST", "/security-group-rules", json={"security_group_rule": rule})
    if not s["keypair"]:
        _nova(ctx, demo, "POST", "/os-keypairs", json={"keypair": {
            "name": KEYPAIR, "public_key": _public_key(ctx)}})
    _record(ctx, _state(ctx))


def _public_key(ctx) -> str:
    """The demo keypair: a key made here, kept with the credential files (0600)."""
    import paramiko

    from .. import paths

    path = paths.data_dir() / "clouds" / ctx.profile.name / "demo-key"
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if not path.exists():
        key = paramiko.RSAKey.generate(3072)
        key.write_private_key_file(str(path))
        path.chmod(0o600)
    key = paramiko.RSAKey.from_private_key_file(str(path))
    return f"{key.get_name()} {key.get_base64()} stack-tui-demo"


# -- the server boot ------------------------------------------------------------------------------

def _image_id(ctx, sess) -> str:
    from .glance import glance_client

    imgs = list(glance_client(ctx, sess).images.list(filters={"name": ctx.profile.image.name}))
    if not imgs:
        raise StepError(f"The image {ctx.profile.image.name} is not in Glance.", "",
                        "run the image.upload step again")
    return imgs[0]["id"]


def _boot_value(ctx) -> str:
    """What a recorded boot proved: this image on this network with this flavor."""
    s = _state(ctx)
    parts = [_image_id(ctx, _demo(ctx)), (s["net"] or {}).get("id", ""),
             (s["flavor"] or {}).get("id", "")]
    return " ".join(parts)


def _boot_check(ctx) -> bool:
    # A boot proved once for the same image, network and flavor is not repeated (a re-run
    # changes nothing); a new image or network boots again.
    try:
        return marker_check(ctx, "cloud.boot", _boot_value(ctx))
    except StepError:  # no image yet: nothing was proved
        return False


def _cleanup(ctx, demo) -> None:
    for srv in _nova(ctx, demo, "GET", f"/servers?name=^{SERVER}$")["servers"]:
        _nova(ctx, demo, "DELETE", f"/servers/{srv['id']}", ok=(204, 404))
    for fip in _neutron(ctx, demo, "GET", f"/floatingips?description={SERVER}")["floatingips"]:
        _neutron(ctx, demo, "DELETE", f"/floatingips/{fip['id']}", ok=(204, 404))


def _boot_run(ctx) -> None:
    demo = _demo(ctx)
    _cleanup(ctx, demo)  # a server left by a killed run
    s = _state(ctx)
    ctx.output(f"booting {SERVER} from {ctx.profile.image.name} on {NET}")
    srv = _nova(ctx, demo, "POST", "/servers", json={"server": {
        "name": SERVER, "imageRef": _image_id(ctx, demo), "flavorRef": s["flavor"]["id"],
        "networks": [{"uuid": s["net"]["id"]}], "key_name": KEYPAIR,
        "security_groups": [{"name": "default"}]}})["server"]
    try:
        cur = _wait_active(ctx, demo, srv["id"])
        fip = _floating_ip(ctx, demo, s, srv["id"])
        _ping(ctx, fip)
        log = _nova(ctx, demo, "POST", f"/servers/{srv['id']}/action",
                    json={"os-getConsoleOutput": {"length": 50}}).get("output", "")
        ctx.output(f"{SERVER} is {cur['status']} on {cur.get('OS-EXT-SRV-ATTR:host', 'this host')}"
                   f"; console has {len(log.splitlines())} lines; {fip} answers ping")
        last = [ln.strip() for ln in log.splitlines() if ln.strip()][-8:]
        for ln in last:
            ctx.output(f"console: {ln[:200]}")
        marker_set(ctx, "cloud.boot", _boot_value(ctx))
    finally:
        _cleanup(ctx, demo)


def _wait_active(ctx, demo, sid: str) -> dict:
    deadline = time.monotonic() + BOOT_TIMEOUT
    while True:
        cur = _nova(ctx, demo, "GET", f"/servers/{sid}")["server"]
        if cur["status"] == "ACTIVE":
            return cur
        if cur["status"] == "ERROR" or time.monotonic() > deadline:
            fault = (cur.get("fault") or {}).get("message", "")
            tail = ctx.sh("grep -hE 'ERROR' /var/log/nova/nova-compute.log "
                          "/var/log/nova/nova-conductor.log | tail -n 10", check=False,
                          quiet=True, timeout=LOOK).lines
            raise StepError(f"The test server ended {cur['status']}, not ACTIVE.", fault,
                            "read nova-compute's log below (libvirt, image, network)", tail=tail)
        ctx.cancel.wait(2)


def _floating_ip(ctx, demo, s, sid: str) -> str:
    ports = _neutron(ctx, demo, "GET", f"/ports?device_id={sid}")["ports"]
    if not ports:
        raise StepError("The test server has no network port.", "", "read neutron's logs")
    fip = _neutron(ctx, demo, "POST", "/floatingips", json={"floatingip": {
        "floating_network_id": s["provider"]["id"], "port_id": ports[0]["id"],
        "description": SERVER}})["floatingip"]
    return fip["floating_ip_address"]


def _ping(ctx, address: str) -> None:
    r = ctx.sh(f"for i in $(seq 90); do ping -c 1 -W 2 {address} >/dev/null 2>&1 && exit 0; "
               "sleep 1; done; exit 1", check=False, quiet=True, timeout=300)
    if not r.ok:
        raise StepError(f"The test server's floating IP {address} does not answer ping.",
                        "the guest did not get its address, or the router/NAT path is broken",
                        "check the DHCP and L3 agents' logs and the security group rules")


def phases(profile, plat) -> list[Phase]:
    return [Phase("cloud", "Cloud objects and a test boot", [
        Step("cloud.objects", "Flavor, provider and demo networks, router, rules, keypair",
             run=_objects_run, check=_objects_check,
             detail=f"flavor {FLAVOR}; provider (flat, external); {NET} {DEMO_CIDR}; {ROUTER} "
                    "to provider; default group allows ICMP and SSH; keypair stack-tui "
                    "(look first, create what is missing)"),
        Step("cloud.boot", "Boot a test server, ping its floating IP, delete it",
             run=_boot_run, check=_boot_check,
             detail=f"as demo: server {SERVER} ({FLAVOR}, image {profile.image.name}) -> ACTIVE; "
                    "console log; floating IP answers ping from the host; then deleted"),
    ])]
