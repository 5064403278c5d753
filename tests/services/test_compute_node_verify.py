"""Several hosts: the verification boots one server on each compute host as admin (its
availability zone names the host), keeps ACTIVE ones on a re-run, explains a host whose
server fails, and never makes two servers when a connection drops (fake Nova and Neutron
APIs)."""

from __future__ import annotations

import pytest

from tests.fakehost import FakeHost
from tests.services.test_compute_node import D12, _ctrl_ctx, _profile
from tui.tasks.engine import StepError
from tui.tasks.profile import Profile


class _Cloud:
    """Nova's servers and Neutron's ports, floating IPs and security groups, as
    cloudobjects' _nova/_neutron see them.  A server lands on the host its availability zone
    names, unless ``misplace`` sends that host's boots elsewhere or ``broken`` fails them."""

    def __init__(self):
        from tui.tasks.services import cloudobjects as co

        self.co, self.servers, self.fips, self.sgs, self.posts = co, {}, [], [], []
        self.misplace: dict[str, str] = {}
        self.broken: set[str] = set()
        self.drops: list[bool] = []   # per POST /servers: the connection drops (after making it?)
        self.stuck: set[str] = set()   # hosts whose servers stay BUILD, their port DOWN
        self.hung: set[str] = set()    # hosts whose floating IP POST times out (Neutron hangs)

    def nova(self, ctx, sess, method, path, ok=None, **kw):
        body = kw.get("json") or {}
        if method == "GET" and path.startswith("/servers/detail?name="):
            name = path.split("=^", 1)[1].rstrip("$")
            return {"servers": [s for s in self.servers.values() if s["name"] == name]}
        if method == "GET":
            return {"server": self.servers[path.rsplit("/", 1)[1]]}
        if method == "DELETE":
            self.servers.pop(path.rsplit("/", 1)[1], None)
            return {}
        srv = body["server"]
        drop = self.drops.pop(0) if self.drops else None
        if drop is False:   # dropped before nova-api saw it
            from keystoneauth1.exceptions import ConnectFailure
            raise ConnectFailure("Connection aborted: reset by peer")
        self.posts.append(srv)
        host = srv["availability_zone"].split(":", 1)[1]
        sid = f"s{len(self.posts)}"
        self.servers[sid] = {
            "id": sid, "name": srv["name"], "image": {"id": srv["imageRef"]},
            "flavor": {"original_name": self.co.FLAVOR},
            "status": "ERROR" if host in self.broken else "BUILD" if host in self.stuck
            else "ACTIVE", "OS-EXT-STS:task_state": "spawning" if host in self.stuck else None,
            self.co.HOST_ATTR: self.misplace.get(host, host),
            "fault": {"message": "No valid host was found."} if host in self.broken else {}}
        if drop:            # made, then the answer was lost
            from keystoneauth1.exceptions import ConnectFailure
            raise ConnectFailure("Connection aborted: reset by peer")
        return {"server": {"id": sid}}

    def neutron(self, ctx, sess, method, path, ok=None, **kw):
        body = kw.get("json") or {}
        if path.startswith("/ports?device_id="):
            sid = path.split("=", 1)[1]
            srv = self.servers.get(sid)
            status = "DOWN" if srv and srv["status"] == "BUILD" else "ACTIVE"
            return {"ports": [{"id": f"p-{sid}", "status": status}] if srv else []}
        if path.startswith("/floatingips?port_id="):
            port = path.split("=", 1)[1]
            return {"floatingips": [f for f in self.fips if f["port_id"] == port]}
        if path == "/floatingips":
            sid = body["floatingip"]["port_id"][2:]
            if self.servers[sid][self.co.HOST_ATTR] in self.hung:
                from keystoneauth1.exceptions import ConnectTimeout
                raise ConnectTimeout("Request to http://127.0.0.1:41587/v2.0/floatingips timed out")
            fip = dict(body["floatingip"], floating_ip_address=f"172.24.4.{101 + len(self.fips)}")
            self.fips.append(fip)
            return {"floatingip": fip}
        if path.startswith("/security-groups?"):
            return {"security_groups": list(self.sgs)}
        if path == "/security-groups":
            self.sgs.append(dict(body["security_group"], id="sg1", security_group_rules=[]))
            return {"security_group": self.sgs[-1]}
        if path == "/security-group-rules":
            self.sgs[0]["security_group_rules"].append(body["security_group_rule"])
            return {}
        raise AssertionError(f"unexpected {method} {path}")


class _Admin:
    def get_project_id(self):
        return "admin-project"


@pytest.fixture
def cloud(monkeypatch):
    from tui.tasks.services import cloudobjects as co

    c = _Cloud()
    monkeypatch.setattr(co, "_nova", c.nova)
    monkeypatch.setattr(co, "_neutron", c.neutron)
    monkeypatch.setattr(co, "admin_session", lambda ctx: _Admin())
    monkeypatch.setattr(co, "_demo", lambda ctx: None)
    monkeypatch.setattr(co, "_image_id", lambda ctx, sess: "img-1")
    monkeypatch.setattr(co, "_state", lambda ctx: {
        "flavor": {"id": "f1"}, "net": {"id": "n1"}, "provider": {"id": "prov"}})
    monkeypatch.setattr(co, "BOOT_TIMEOUT", 0)
    return c


def _verify_host() -> FakeHost:
    host = FakeHost()
    host.on(r"ping -c 1 -W 2 172\.24\.4\.\d+", (0, ""))
    host.on(r"^\[ -f /var/log/nova/", (0, ""))
    return host


def _boot(profile):
    from tui.tasks.services import cloudobjects as co

    return next(s for s in co.phases(profile, D12)[0].steps if s.id == "cloud.boot")


def test_one_server_per_compute_host_booted_there_by_admin(tmp_path, cloud):
    from tui.tasks.services import cloudobjects as co

    host = _verify_host()
    ctx = _ctrl_ctx(host, tmp_path)
    ctx.facts["hostname"] = "lab-1"
    ctx.cancel.wait = lambda _t: None
    step = _boot(_profile())
    assert not step.check(ctx)
    step.run(ctx)
    assert [(p["name"], p["availability_zone"]) for p in cloud.posts] == [
        ("stack-tui-verify-lab-1", "nova:lab-1"), ("stack-tui-verify-lab-2", "nova:lab-2"),
        ("stack-tui-verify-lab-3", "nova:lab-3")]
    assert all(p["security_groups"] == [{"name": co.VERIFY_SG}] for p in cloud.posts)
    assert {(r["protocol"], r.get("port_range_min")) for r in
            cloud.sgs[0]["security_group_rules"]} == {("icmp", None), ("tcp", 22)}
    assert [r[0] for r in ctx.facts["host_boots"]] == [
        "server on lab-1", "server on lab-2", "server on lab-3"]
    assert all(r[1] for r in ctx.facts["host_boots"])
    assert len(cloud.fips) == 3
    # re-run: done; and run again, every ACTIVE server on its host is kept
    assert step.check(ctx)
    step.run(ctx)
    assert len(cloud.posts) == 3 and len(cloud.fips) == 3
    lines = co.host_results(ctx)
    assert [ok for _w, ok, _d in lines] == [True] * 3
    assert "stack-tui-verify-lab-2 ACTIVE on lab-2" in lines[1][2]


def test_a_server_on_the_wrong_host_or_in_error_fails_that_host_only(tmp_path, cloud):
    host = _verify_host()
    ctx = _ctrl_ctx(host, tmp_path)
    ctx.cancel.wait = lambda _t: None
    cloud.misplace["lab-2"] = "lab-1"
    cloud.broken.add("lab-3")
    step = _boot(_profile())
    with pytest.raises(StepError) as exc:
        step.run(ctx)
    assert "server on lab-2" in exc.value.what and "server on lab-3" in exc.value.what
    assert "server on lab-1" not in exc.value.what
    assert "runs on lab-1, not lab-2" in exc.value.why
    assert "No valid host was found." in exc.value.why
    assert not step.check(ctx)
    cloud.misplace.clear()
    cloud.broken.clear()
    step.run(ctx)          # lab-1's server kept; the other two deleted and booted again
    assert [p["name"][-5:] for p in cloud.posts] == ["lab-1", "lab-2", "lab-3", "lab-2",
                                                      "lab-3"]
    assert len(cloud.servers) == 3 and step.check(ctx)


def test_one_host_keeps_its_single_boot_and_the_verification_has_a_line_per_host(
        tmp_path, monkeypatch):
    from tui.tasks.services import cloudobjects as co
    from tui.tasks.services import finish

    one = Profile("one")
    one.openstack.services = list(_profile().openstack.services)
    step = _boot(one)
    assert step.run is co._boot_run and co.SERVER == "stack-tui-verify"
    assert not finish._per_host(one) and finish._per_host(_profile())
    monkeypatch.setattr(co, "host_results", lambda ctx: [
        ("server on lab-2", True, "ACTIVE"), ("server on lab-3", False, "ERROR")])
    lines = []
    finish._check_servers(None, lambda w, ok, d="": lines.append((w, ok, d)))
    assert lines == [("server on lab-2", True, "ACTIVE"), ("server on lab-3", False, "ERROR")]


def test_a_dropped_connection_on_boot_never_makes_two_servers(tmp_path, cloud):
    host = _verify_host()
    ctx = _ctrl_ctx(host, tmp_path)
    ctx.cancel.wait = lambda _t: None
    cloud.drops = [False, None, True]   # lab-1: lost before made, retried; lab-2: made, answer lost
    _boot(_profile()).run(ctx)
    assert [p["name"][-5:] for p in cloud.posts] == ["lab-1", "lab-2", "lab-3"]
    assert len(cloud.servers) == 3 and all(r[1] for r in ctx.facts["host_boots"])


def test_the_servers_are_booted_with_a_token_issued_now(tmp_path, cloud, monkeypatch):
    """An admin token from the run's first Keystone steps carries the catalog of that moment
    (cached with the token): Nova handed it found no network endpoint on a real 3-host run
    (EndpointNotFound). The boot forgets the run's admin session and takes a new one."""
    from tui.tasks.services import cloudobjects as co
    from tui.tasks.services import common

    monkeypatch.setattr(co, "admin_session", common.admin_session)
    made = []
    monkeypatch.setattr(common, "ks_session", lambda ctx, *a: made.append(a) or _Admin())
    host = _verify_host()
    ctx = _ctrl_ctx(host, tmp_path)
    ctx.facts["hostname"] = "lab-1"
    ctx.cancel.wait = lambda _t: None
    early = common.admin_session(ctx)          # what the Keystone steps used
    _boot(_profile()).run(ctx)
    assert len(made) == 2 and common.admin_session(ctx) is not early


def test_a_server_stuck_in_build_says_what_it_waits_for_with_its_hosts_log_lines(
        tmp_path, cloud):
    """Seen on CI: one of three servers stayed BUILD (spawning) past the limit while Neutron
    hung, and a floating IP POST for another timed out.  Each fails its own host's line only;
    the stuck one names its DOWN port and the agent on its host, with that host's log lines
    (read through the run's context for that host); the timeout is Neutron's, in words."""
    from types import SimpleNamespace

    from tui.tasks import explain
    from tui.tasks.engine import _explain
    from tui.tasks.redact import Redactor
    from tui.tasks.services import REGISTRY

    host = _verify_host()
    ctx = _ctrl_ctx(host, tmp_path)
    ctx.facts["hostname"] = "lab-1"
    ctx.cancel.wait = lambda _t: None
    lab2 = FakeHost()
    lab2.on(r"^\[ -f /var/log/nova/nova-compute\.log \]", (0, (
        "nova-compute.log: 2026 WARNING nova.compute.manager [instance: s2] Timeout waiting for "
        "[('network-vif-plugged', 'p-s2')]\n")))
    ctx.engine = SimpleNamespace(emit=lambda ev: None, contexts={"": ctx, "lab-2": lab2.ctx(
        _profile(), platform="debian-12", state_path=tmp_path / "lab2.json")})
    cloud.stuck.add("lab-2")
    cloud.hung.add("lab-3")
    step = _boot(_profile())
    with pytest.raises(StepError) as exc:
        step.run(ctx)
    err = exc.value
    assert "server on lab-2" in err.what and "server on lab-3" in err.what
    assert "server on lab-1" not in err.what
    assert ("still spawning after 0 s: its network port is DOWN; Neutron's agent on lab-2 never "
            "reported it wired") in err.why
    assert any(ln.startswith("[lab-2] nova-compute.log:") and "network-vif-plugged" in ln
               for ln in err.tail), err.tail
    assert any("Timeout waiting" in c or "nova-compute.log" in c for c in lab2.commands)
    assert not any("nova-compute.log" in c and "tail" in c for c in host.commands
                   if "conductor" not in c), "lab-2's logs were read on the controller"
    assert [ok for _w, ok, _d in ctx.facts["host_boots"]] == [True, False, False]
    assert err.transient and step.retries == 1   # the engine boots them once more by itself
    got = _explain(err, Redactor(), explain.rules_for(REGISTRY))
    assert "Neutron's API did not answer" in got.why and got.kind == "api-timeout"


def test_a_server_in_error_is_the_users_decision_not_an_automatic_retry(tmp_path, cloud):
    host = _verify_host()
    ctx = _ctrl_ctx(host, tmp_path)
    ctx.cancel.wait = lambda _t: None
    cloud.broken.add("lab-3")     # Nova's verdict (a fault): no second boot by itself
    cloud.stuck.add("lab-2")
    with pytest.raises(StepError) as exc:
        _boot(_profile()).run(ctx)
    assert not exc.value.transient


def test_nova_giving_up_on_the_port_first_is_the_same_wait_and_retried(tmp_path, cloud,
                                                                       monkeypatch):
    """Nova's own vif_plugging_timeout may run out before the step's limit: ERROR with
    Nova's fault for it, the same wait as a BUILD past the limit, so booted once more."""
    from tui.tasks.services import cloudobjects as co

    host = _verify_host()
    ctx = _ctrl_ctx(host, tmp_path)
    ctx.cancel.wait = lambda _t: None
    cloud.broken.add("lab-3")

    def nova(ctx, sess, method, path, ok=None, **kw):
        out = cloud.nova(ctx, sess, method, path, ok, **kw)
        for srv in cloud.servers.values():
            if srv["status"] == "ERROR":
                srv["fault"] = {"message": "Build of instance s3 aborted: Failed to allocate "
                                           "the network(s), not rescheduling."}
        return out

    monkeypatch.setattr(co, "_nova", nova)
    with pytest.raises(StepError) as exc:
        _boot(_profile()).run(ctx)
    assert exc.value.transient and "Failed to allocate the network(s)" in exc.value.why
