"""The objects a user needs to boot a server, made once (look before create), and the proof
that the cloud boots one: flavor (admin), provider network and subnet (admin), the demo
project's network, subnet, router, security group rules and keypair; then a test server
that must reach ACTIVE, show a booted console and answer ping on a floating IP from the host.
The test server and its floating IP are deleted; everything else stays for the user.

All through keystoneauth1 sessions over the port forwards (the APIs' own JSON)."""

from __future__ import annotations

import time

from ..engine import Phase, Step, StepError
from .bootwhy import not_active
from .common import (LOOK, admin_session, forget_session, forward, marker_check, marker_set,
                     user_session)

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


def _wait_active(ctx, sess, sid: str, where: str = "") -> dict:
    """The server once ACTIVE; else a StepError saying what it still waits for, with the
    log lines of ``where`` (the profile's name of the host it boots on; "" the controller)."""
    deadline = time.monotonic() + BOOT_TIMEOUT
    while True:
        cur = _nova(ctx, sess, "GET", f"/servers/{sid}")["server"]
        if cur["status"] == "ACTIVE":
            return cur
        if cur["status"] == "ERROR" or time.monotonic() > deadline:
            raise not_active(ctx, cur, where, limit=BOOT_TIMEOUT, ports=lambda: _neutron(
                ctx, sess, "GET", f"/ports?device_id={sid}")["ports"])
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


# -- several hosts: one server on each computing host, booted there by admin --------------------

HOST_ATTR = "OS-EXT-SRV-ATTR:host"
VERIFY_SG = "stack-tui-verify"   # admin's group for them: ICMP and SSH in


def several_hosts(profile) -> bool:
    return len(profile.hosts) > 1


def targets(ctx) -> list[tuple[str, str]]:
    """(server name, Nova's name of the host) for each host with the compute role: a
    compute-only host is known to Nova by its profile name ([DEFAULT] host); the controller
    by its system host name (prepare.hostname's fact)."""
    out = []
    for h in ctx.profile.hosts:
        if "compute" in h.roles:
            here = h is ctx.profile.controller
            out.append((f"{SERVER}-{h.name}", (ctx.facts.get("hostname") or h.name)
                        if here else h.name))
    return out


def _find(ctx, adm, server: str) -> list[dict]:
    return _nova(ctx, adm, "GET", f"/servers/detail?name=^{server}$")["servers"]


def _server_fip(ctx, adm, sid: str) -> str | None:
    for port in _neutron(ctx, adm, "GET", f"/ports?device_id={sid}")["ports"]:
        for fip in _neutron(ctx, adm, "GET", f"/floatingips?port_id={port['id']}")["floatingips"]:
            return fip["floating_ip_address"]
    return None


def _pings(ctx, address: str) -> bool:
    return ctx.sh(f"ping -c 1 -W 2 {address} >/dev/null 2>&1", check=False, quiet=True,
                  timeout=LOOK).ok


def _kept(cur: dict, nova_host: str, image: str) -> bool:
    """A server of an earlier run that proves what a new one would."""
    return (cur["status"] == "ACTIVE" and cur.get(HOST_ATTR) == nova_host
            and (cur.get("image") or {}).get("id") == image
            and (cur.get("flavor") or {}).get("original_name") == FLAVOR)


def host_results(ctx) -> list[tuple[str, bool, str]]:
    """Only reads: each computing host's server ACTIVE there, with a floating IP that
    answers ping from the controller; (what, ok, detail) each."""
    adm, out = admin_session(ctx), []
    for server, nova_host in targets(ctx):
        found = _find(ctx, adm, server)
        cur = found[0] if found else None
        fip = _server_fip(ctx, adm, cur["id"]) if cur else None
        ok = bool(cur and cur["status"] == "ACTIVE" and cur.get(HOST_ATTR) == nova_host
                  and fip and _pings(ctx, fip))
        detail = (f"{server} {cur['status']} on {cur.get(HOST_ATTR)}, floating IP "
                  f"{fip or 'none'}" + (" answers ping" if ok else "") if cur
                  else f"no server {server}")
        out.append((f"server on {nova_host}", ok, detail))
    return out


def _hosts_value(ctx) -> str:
    return _boot_value(ctx) + " " + ",".join(h for _s, h in targets(ctx))


def _boot_hosts_check(ctx) -> bool:
    try:
        if not marker_check(ctx, "cloud.boot_hosts", _hosts_value(ctx)):
            return False
    except StepError:  # no image yet
        return False
    return all(ok for _w, ok, _d in host_results(ctx))


def _verify_sg(ctx, adm) -> str:
    """admin's security group for the servers (look first): ICMP and SSH in."""
    project = adm.get_project_id()
    found = _neutron(ctx, adm, "GET", f"/security-groups?name={VERIFY_SG}&project_id={project}")
    sg = (found["security_groups"] or [None])[0]
    if sg is None:
        ctx.output(f"creating security group {VERIFY_SG} (admin): ICMP and SSH in")
        sg = _neutron(ctx, adm, "POST", "/security-groups", json={"security_group": {
            "name": VERIFY_SG, "description": "stack-tui's per-host test servers"}})[
            "security_group"]
    for proto, port in _sg_missing(sg):
        rule = {"security_group_id": sg["id"], "direction": "ingress", "protocol": proto,
                "ethertype": "IPv4"}
        if port:
            rule.update(port_range_min=port, port_range_max=port)
        _neutron(ctx, adm, "POST", "/security-group-rules", json={"security_group_rule": rule})
    return sg["id"]


def _boot_on(ctx, adm, s, image: str, server: str, nova_host: str) -> str:
    """The id of ``server`` on ``nova_host``: kept when it already proves it, else booted."""
    found = _find(ctx, adm, server)
    keep = next((x for x in found if _kept(x, nova_host, image)), None)
    for old in found:
        if old is keep:
            continue
        ctx.output(f"deleting {server} ({old['status']} on {old.get(HOST_ATTR) or 'no host'})")
        _nova(ctx, adm, "DELETE", f"/servers/{old['id']}", ok=(204, 404))
    if keep is not None:
        ctx.output(f"{server} is ACTIVE on {nova_host} (kept)")
        return keep["id"]
    ctx.output(f"booting {server} on {nova_host} (availability zone nova:{nova_host})")
    body = {"server": {
        "name": server, "imageRef": image, "flavorRef": s["flavor"]["id"],
        "networks": [{"uuid": s["net"]["id"]}], "security_groups": [{"name": VERIFY_SG}],
        "availability_zone": f"nova:{nova_host}"}}
    return _post_once(ctx, adm, server, body, gone={o["id"] for o in found})


def _post_once(ctx, adm, server: str, body: dict, gone: set[str]) -> str:
    """POST the server; when the connection drops on the way (seen: the API's keep-alive
    connection closed after a DELETE's 204 and reused at once), look whether it was made
    before posting again, so a retry never makes two."""
    from keystoneauth1.exceptions import ConnectFailure

    try:
        return _nova(ctx, adm, "POST", "/servers", json=body)["server"]["id"]
    except ConnectFailure:
        made = [x for x in _find(ctx, adm, server) if x["id"] not in gone]
        if made:
            return made[0]["id"]
        return _nova(ctx, adm, "POST", "/servers", json=body)["server"]["id"]


def _settle(ctx, adm, s, server: str, nova_host: str, sid: str) -> str:
    """ACTIVE on the right host, a floating IP, ping: what it proved (StepError if not)."""
    cur = _wait_active(ctx, adm, sid, where=nova_host)
    if cur.get(HOST_ATTR) != nova_host:
        raise StepError(f"{server} runs on {cur.get(HOST_ATTR)}, not {nova_host}.", "", "")
    fip = _server_fip(ctx, adm, sid)
    if fip is None:
        ports = _neutron(ctx, adm, "GET", f"/ports?device_id={sid}")["ports"]
        if not ports:
            raise StepError(f"{server} has no network port.", "", "read neutron's logs")
        fip = _neutron(ctx, adm, "POST", "/floatingips", json={"floatingip": {
            "floating_network_id": s["provider"]["id"], "port_id": ports[0]["id"],
            "description": server}})["floatingip"]["floating_ip_address"]
    _ping(ctx, fip)
    return f"{server} ACTIVE on {nova_host}, floating IP {fip} answers ping"


def _boot_hosts_run(ctx) -> None:
    from keystoneauth1.exceptions import ConnectFailure, ConnectTimeout

    # A token of this run's first Keystone steps carries the catalog of that moment (Keystone
    # and keystonemiddleware cache it with the token): Nova, handed it, found no network
    # endpoint ("EndpointNotFound ... network service named neutron"). A fresh one has them.
    forget_session(ctx, "admin", ctx.secrets["admin_password"], "admin")
    adm = admin_session(ctx)
    s = _state(ctx)
    image = _image_id(ctx, adm)
    _verify_sg(ctx, adm)
    booted = [(server, h, _boot_on(ctx, adm, s, image, server, h)) for server, h in targets(ctx)]
    results, tails, passing = [], [], []
    for server, nova_host, sid in booted:
        try:
            results.append((f"server on {nova_host}", True,
                            _settle(ctx, adm, s, server, nova_host, sid)))
        except StepError as exc:
            results.append((f"server on {nova_host}", False,
                            ctx.redact(" ".join(x for x in (exc.what, exc.why) if x))))
            tails += [f"[{nova_host}] {ln}" for ln in exc.tail]
            passing.append(exc.transient)
        except (ConnectFailure, ConnectTimeout) as exc:   # an API that does not answer
            results.append((f"server on {nova_host}", False,
                            ctx.redact(f"{server}: {type(exc).__name__}: {exc}")))
            passing.append(True)
        ctx.output(("ok   " if results[-1][1] else "FAIL ") + results[-1][2])
    ctx.facts["host_boots"] = [list(r) for r in results]
    bad = [w for w, ok, _d in results if not ok]
    if bad:
        raise StepError(f"Test servers failed: {', '.join(bad)}.",
                        "; ".join(d for _w, ok, d in results if not ok),
                        "read nova-compute's and the Neutron agent's logs on those hosts "
                        "(their last lines are below), then Retry (ACTIVE servers on the right "
                        "host are kept)", tail=tails[-30:], transient=all(passing))
    marker_set(ctx, "cloud.boot_hosts", _hosts_value(ctx))


def _boot_step(profile) -> Step:
    if not several_hosts(profile):
        return Step("cloud.boot", "Boot a test server, ping its floating IP, delete it",
                    run=_boot_run, check=_boot_check, retries=1,
                    detail=f"as demo: server {SERVER} ({FLAVOR}, image {profile.image.name}) "
                           "-> ACTIVE; console log; floating IP answers ping from the host; "
                           "then deleted")
    names = ", ".join(f"{SERVER}-{h.name}" for h in profile.hosts if "compute" in h.roles)
    return Step("cloud.boot", "Boot a test server on each compute host, ping each",
                run=_boot_hosts_run, check=_boot_hosts_check, retries=1,
                detail=f"as admin on {NET}, availability zone nova:<host>: {names} -> ACTIVE "
                       "on its host; a floating IP each answers ping from the controller; "
                       "kept (a re-run keeps an ACTIVE one on the right host)")


def phases(profile, plat) -> list[Phase]:
    return [Phase("cloud", "Cloud objects and a test boot", [
        Step("cloud.objects", "Flavor, provider and demo networks, router, rules, keypair",
             run=_objects_run, check=_objects_check,
             detail=f"flavor {FLAVOR}; provider (flat, external); {NET} {DEMO_CIDR}; {ROUTER} "
                    "to provider; default group allows ICMP and SSH; keypair stack-tui "
                    "(look first, create what is missing)"),
        _boot_step(profile),
    ])]
