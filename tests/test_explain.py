"""Unit tests: known failures explained, preflight parsing and verdicts, bundle scrubbing.

No host needed: the preflight checks are fed the text a host would print.
"""

from __future__ import annotations

import tarfile
import urllib.parse
from types import SimpleNamespace

import pytest

from tui.tasks import bundle, explain, pkglock, preflight
from tui.tasks.engine import ErrorInfo, StepError, _explain
from tui.tasks.redact import MASK, Redactor
from tui.tasks.services import REGISTRY

ALL = explain.rules_for(REGISTRY)   # a plan's rules: generic, every service's, catch-alls


def info(what, why="", hint="", tail=(), kind="error"):
    return explain.improve(ErrorInfo(what, why, hint, list(tail), kind), ALL)


# -- explain -----------------------------------------------------------------------------------
KNOWN = [
    ("Package command failed (exit 100): apt-get install",
     ["E: Could not get lock /var/lib/dpkg/lock-frontend. It is held by process 812 (unattended-upgr)"],
     "dpkg-lock", True),
    ("The package manager lock is still held by python3 (pid 77) after waiting 120 s.", [],
     "dpkg-lock", True),
    ("Package command failed (exit 100): apt-get install",
     ["E: Failed to fetch http://deb.debian.org/debian/pool/main/k/keystone.deb  Temporary "
      "failure resolving 'deb.debian.org'"], "mirror", True),
    ("Cannot reach the package repository from the host.", [], "mirror", True),
    ("Package command failed (exit 100): apt-get update",
     ["Err:1 http://deb.debian.org/debian trixie InRelease", "  407  Proxy Authentication "
      "Required [IP: 10.0.0.1 3128]"], "apt-proxy", False),
    ("Package command failed (exit 100): apt-get install",
     ["E: Unable to locate package glance-api"], "no-package", False),
    ("Could not restart memcached.", ["memcached: invalid option -- 'Q'"], "bad-config", False),
    ("Could not start mariadb.",
     ["[ERROR] /usr/sbin/mariadbd: unknown variable 'bogus_key=1'"], "bad-config", False),
    ("Could not start apache2.",
     ["(98)Address already in use: AH00072: make_sock: could not bind to address [::]:5000"],
     "port-in-use", False),
    ("Remote command failed with exit status 69: rabbitmqctl list_users",
     ["Error: unable to perform an operation on node 'rabbit@stackhost'."], "rabbitmq-down", False),
    ("The database user keystone cannot log in over the network.",
     ["(1045, \"Access denied for user 'keystone'@'10.0.0.1' (using password: YES)\")"],
     "db-denied", False),
    ("keystone-manage failed (exit 1).",
     ["(2003, \"Can't connect to MySQL server on '10.0.0.1'\")"], "db-down", False),
    # the real failures (tests/test_faults_e2e.py provokes them): MariaDB 11's client with
    # the server stopped; Glance's 401 when its own [keystone_authtoken] password is wrong
    ("Remote command failed with exit status 1: mysql --batch --skip-column-names",
     ["ERROR 2002 (HY000): Can't connect to local server through socket "
      "'/run/mysqld/mysqld.sock' (2)"], "db-down", False),
    ("Unexpected error: HTTPUnauthorized: HTTP 401 Unauthorized: This server could not verify "
     "that you are authorized to access the document you requested.", [], "glance-auth", False),
    ("Keystone GET /users answered 401.", [], "keystone-401", False),
    ("Keystone POST /projects answered 403.", ["You are not authorized to perform the requested "
                                                "action"], "keystone-403", False),
    ("Keystone GET /services answered 500.", ["Internal Server Error"], "server-error", False),
    ("The image cirros ended up killed, not active.", ["glance_store._drivers.filesystem: "
                                                      "StorageFull"], "glance-store", False),
    ("Unexpected error: HTTPUnauthorized: 401 Unauthorized: glance image upload", [],
     "glance-auth", False),
    ("Glance does not answer at http://127.0.0.1:9292/ (last HTTP status 503).",
     ["keystonemiddleware.auth_token [-] Identity response: 401"], "glance-auth", False),
    ("Could not start rabbitmq-server.", ["Job for rabbitmq-server.service failed because the "
                                          "control process exited"], "service-failed", False),
    # compute: lines seen on a real host (docs/compute.md)
    ("nova-compute did not register this host in cell1 within 2 minutes.",
     ["libvirt.libvirtError: error from service: GDBus.Error:org.freedesktop.DBus.Error.TimedOut:"
      " Failed to activate service 'org.freedesktop.PolicyKit1': timed out"],
     "libvirt-polkit", False),
    ("Neutron API does not answer at http://127.0.0.1:9696/ (last HTTP status 500).",
     ["ERROR neutron.common.experimental [-] Feature 'linuxbridge' is experimental and has to "
      "be explicitly enabled in 'cfg.CONF.experimental'"], "neutron-experimental", False),
    ("The test server ended ERROR, not ACTIVE.",
     ["KVM internal error. Suberror: 1", "emulation failure"], "kvm-emulation", False),
    # CI, three hosts: Neutron's API hung while the test servers booted
    ("Unexpected error: ConnectTimeout: Request to http://127.0.0.1:41587/v2.0/floatingips "
     "timed out", [], "api-timeout", False),
    # CI, one host: nova-api reset the connection of `openstack server delete --wait`
    ("Unable to establish connection to http://10.199.0.6:8774/v2.1/servers/78bef125: "
     "('Connection aborted.', ConnectionResetError(104, 'Connection reset by peer'))", [],
     "api-dropped", False),
]


@pytest.mark.parametrize("what,tail,rule,transient", KNOWN)
def test_known_failures(what, tail, rule, transient):
    text = "\n".join([what, *tail])
    assert explain.match(text, ALL).name == rule
    got = info(what, tail=tail)
    assert got.why and got.hint
    assert (got.kind == "transient") == transient
    if not transient:
        assert got.kind == rule


def test_every_rule_has_a_known_failure_above():
    assert {r.name for r in ALL} - {rule for _, _, rule, _ in KNOWN} == set()


def test_each_service_declares_its_own_rules_and_explain_aggregates_them():
    from tui.tasks import deploy
    from tui.tasks.profile import Profile
    from tui.tasks.services import by_id

    own = {s.id: [r.name for r in s.rules] for s in REGISTRY}
    assert own == {"mariadb": ["db-denied", "db-down"], "rabbitmq": ["rabbitmq-down"],
                   "memcached": [], "keystone": ["keystone-401", "keystone-403"],
                   "glance": ["glance-store", "glance-auth"], "placement": [],
                   "nova": ["libvirt-polkit", "kvm-emulation"],
                   "neutron": ["neutron-experimental"], "horizon": []}
    service_rules = {n for names in own.values() for n in names}
    assert not service_rules & {r.name for r in explain.RULES}   # explain keeps only its own
    assert explain.match("Keystone GET /users answered 401.") is None
    # a service's rules come before those of the services it requires, catch-alls last
    names = [r.name for r in ALL]
    assert names.index("glance-auth") < names.index("keystone-401") < names.index("server-error")
    assert names[-1] == "service-failed" and names[0] == "dpkg-lock"
    assert by_id("keystone").rules[0].name == "keystone-401"
    plan = deploy.build_plan(Profile(name="t"))
    assert [r.name for r in plan.rules] == names


def test_lock_explanation_names_the_holder():
    got = info("Package command failed (exit 100): apt-get install -y x",
               tail=["E: Could not get lock /var/lib/dpkg/lock-frontend. It is held by process "
                     "812 (unattended-upgr)"])
    assert "unattended-upgr (pid 812)" in got.why
    assert "ps -fp 812" in got.hint
    got = info("The package manager lock is still held by python3 (pid 77), apt-get (pid 78) "
               "after waiting 2 s.")
    assert "python3 (pid 77)" in got.why


def test_step_error_keeps_its_own_words_and_adds_the_known_cause():
    got = info("Could not restart memcached.", "memcached is not running; its journal is below",
               "fix the cause shown in the journal, then Retry",
               ["memcached: invalid option -- 'Q'"])
    assert got.why.startswith("memcached is not running")
    assert "rejects a setting" in got.why
    assert got.hint == "fix the cause shown in the journal, then Retry"


def test_unexpected_exception_that_is_known_is_not_called_a_bug():
    class Unauthorized(Exception):
        pass

    try:
        raise Unauthorized("The request you have made requires authentication. (HTTP 401)")
    except Unauthorized as exc:
        got = _explain(exc, Redactor(), ALL)
    assert "bug" not in got.why and "bug" not in got.hint
    assert "401" in got.why


def test_an_api_that_does_not_answer_is_named_from_the_real_client_error():
    """keystoneauth's own error for an API that accepts the connection and never answers
    (its port forwarded, so only the URL's path says which API): named, with its log."""
    import socket

    from keystoneauth1 import session

    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(4)
    try:
        url = f"http://127.0.0.1:{srv.getsockname()[1]}/v2.0/floatingips"
        with pytest.raises(Exception) as exc:
            session.Session(timeout=0.5).request(url, "POST", json={"floatingip": {}})
    finally:
        srv.close()
    got = _explain(exc.value, Redactor(), ALL)
    assert got.kind == "api-timeout" and "bug" not in got.why + got.hint
    assert got.why.startswith("Neutron's API did not answer"), got.why
    assert "/var/log/neutron/neutron-api.log on the controller" in got.hint
    ran = []
    ctx = SimpleNamespace(transport=SimpleNamespace(connected=True), facts={}, redact=str,
                          sh=lambda cmd, **kw: ran.append(cmd) or SimpleNamespace(
                              lines=["2026 ERROR neutron.api [-] DBDeadlock"]))
    explain.add_logs(got, ctx, ALL)
    assert "/var/log/neutron/neutron-api.log" in ran[0]
    assert got.tail[-1].endswith("DBDeadlock")
    for path, api in (("/v2.1/servers", "Nova's"), ("/v3/auth/tokens", "Keystone's"),
                      ("/v2/images", "Glance's"), ("/resource_providers", "Placement's")):
        text = f"Request to http://127.0.0.1:4000{path} timed out"
        assert explain._timeout_why(text).startswith(api + " API"), path


def test_an_api_that_drops_the_connection_is_named_from_the_real_client_error():
    """keystoneauth's own error for an API whose worker reads the request and closes the
    connection with a reset (a uWSGI worker that dies mid-request): named, with its log."""
    import socket
    import struct
    import threading

    from keystoneauth1 import session

    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(4)

    def reset_each():
        while True:
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            conn.recv(65536)
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            conn.close()  # SO_LINGER 0: RST, as from a process that died

    threading.Thread(target=reset_each, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{srv.getsockname()[1]}/v2.1/servers/abc"
        with pytest.raises(Exception) as exc:
            session.Session(timeout=5).request(url, "DELETE")
    finally:
        srv.close()
    got = _explain(exc.value, Redactor(), ALL)
    assert got.kind == "api-dropped", (got.kind, str(exc.value))
    assert got.why.startswith("Nova's API closed the connection"), got.why
    assert "/var/log/nova/nova-api.log on the controller" in got.hint
    assert "bug" not in got.why + got.hint
    # a refused connection (nothing listens) is not a dropped one
    refused = explain.match("Unable to establish connection to http://127.0.0.1:1/v2.1/servers:"
                            " [Errno 111] Connection refused", ALL)
    assert refused is None or refused.name != "api-dropped"


def test_unknown_failure_shows_command_and_output():
    got = info("Remote command failed with exit status 3: frobnicate --all",
               tail=["frobnicate: the widget is sideways"])
    assert "frobnicate --all" in got.what and "exit status 3" in got.what
    assert got.why == "the last output lines are shown below"
    assert got.hint and got.kind == "error"


def test_ssh_failures_keep_their_kind_and_are_not_mirror_errors():
    got = info("Lost the SSH connection to 10.0.0.1", tail=["Connection timed out"],
               kind="ConnectionLost")
    assert got.kind == "ConnectionLost"  # not "transient" (the mirror rule)
    assert "SSH connection dropped" in got.why and got.hint
    got = info("Timed out after 900 s: apt-get install", kind="CommandTimeout")
    assert got.kind == "CommandTimeout" and "time limit" in got.why


def test_preflight_errors_pass_unchanged():
    results = [preflight.Result("port-5000", preflight.BLOCKING, "Port 5000 (Keystone (Apache))",
                                "port 5000 is already in use by python3 (pid 9)",
                                fix_hint="stop python3")]
    err = preflight.blocking_error(results)
    got = info(err.what, err.why, err.hint, err.tail)
    assert got.why == err.why and got.hint == err.hint and got.kind == "error"
    assert "Nothing was installed" in got.what and "python3 (pid 9)" in got.why


def test_add_logs_fetches_the_keystone_log_for_a_401():
    ran = []

    class T:
        connected = True

    def sh(cmd, **kw):
        ran.append(cmd)
        return SimpleNamespace(lines=["2026 ERROR keystone.auth [req-1] Authentication failed"])

    ctx = SimpleNamespace(transport=T(), facts={"platform": "debian-12"}, sh=sh,
                          redact=lambda s: s)
    got = info("Keystone GET /users answered 401.")
    explain.add_logs(got, ctx, ALL)
    assert "/var/log/apache2/keystone.log" in ran[0]
    assert "/var/log/keystone/keystone.log" in ran[1]  # Keystone's own: refused logins
    assert any("Authentication failed" in ln for ln in got.tail)
    # transient failures and failures that already carry output are left alone
    ran.clear()
    got = info("Cannot reach the package repository from the host.")
    explain.add_logs(got, ctx, ALL)
    got = info("Keystone does not answer", tail=["a", "b", "c 401"])
    explain.add_logs(got, ctx, ALL)
    assert ran == []


# -- preflight, from what a host prints ----------------------------------------------------------
SS = """LISTEN 0 128 0.0.0.0:22 0.0.0.0:* users:(("sshd",pid=33,fd=3))
LISTEN 0 5 0.0.0.0:5000 0.0.0.0:* users:(("python3",pid=812,fd=3))
LISTEN 0 4096 *:4369 *:* users:(("epmd",pid=7715,fd=3),("systemd",pid=1,fd=50))
LISTEN 0 869 10.0.0.5:3306 0.0.0.0:* users:(("mariadbd",pid=7561,fd=21))
LISTEN 0 511 *:9292 *:*
"""


def fake_ctx(**openstack):
    os_ = SimpleNamespace(services=["mariadb", "rabbitmq", "memcached", "keystone", "glance"],
                          platform="auto", fix_hosts=True)
    for k, v in openstack.items():
        setattr(os_, k, v)
    host = SimpleNamespace(address="10.0.0.5", user="root", mgmt_address=None)
    prof = SimpleNamespace(openstack=os_, host=host,
                           endpoint_host="10.0.0.5")
    return SimpleNamespace(profile=prof, transport=SimpleNamespace(sudo_mode="root"),
                           options={}, facts={})


def test_parse_ss_and_ports_name_the_stranger():
    ports = preflight.parse_ss(SS)
    assert ports[5000] == [("python3", 812)]
    assert ports[9292] == [("", None)]
    res = {r.id: r for r in preflight._ports(fake_ctx(), SS)}
    assert res["port-5000"].blocking and "python3 (pid 812)" in res["port-5000"].why
    assert res["port-9292"].blocking and "unknown process" in res["port-9292"].why
    assert "port-4369" not in res and "port-3306" not in res  # the expected owners
    only_db = preflight._ports(fake_ctx(services=["mariadb"]), SS)
    assert [r.level for r in only_db] == ["ok"] and "3306 (mariadbd)" in only_db[0].why


def test_hostname_verdict_and_fix_target():
    ctx = fake_ctx()
    ok = preflight._hostname(ctx, "stackhost", ["10.0.0.5"], ["127.0.0.1", "10.0.0.5"])
    assert ok.level == "ok"
    bad = preflight._hostname(ctx, "stackhost", ["127.0.1.1"], ["127.0.0.1", "10.0.0.5"])
    assert bad.blocking and bad.fix is not None and "10.0.0.5" in bad.fix_hint
    assert "rabbit@stackhost" in bad.why


def test_memory_disk_and_time_levels():
    G = preflight.GiB
    assert preflight._memory(1 * G).blocking
    assert preflight._memory(3 * G).level == "warning"
    assert preflight._memory(8 * G).level == "ok"
    assert preflight._mem_bytes("25275224064\nmax\n") == 25275224064
    assert preflight._mem_bytes("25275224064\n2147483648\n") == 2147483648  # cgroup limit
    assert preflight._disk(5 * G).level == "warning" and preflight._disk(50 * G).level == "ok"
    ctx = fake_ctx()
    t = preflight._time(ctx, "NTPSynchronized=no\nNTP=no\nCanNTP=no\nvirt=systemd-nspawn")
    assert t.level == "warning" and t.fix is None  # a container: never blocking, nothing to fix
    t = preflight._time(ctx, "NTPSynchronized=no\nvirt=none\nunit=systemd-timesyncd.service")
    assert t.level == "warning" and t.fix is not None and "timesyncd" in t.fix_hint
    assert preflight._time(ctx, "NTPSynchronized=yes\nvirt=none").level == "ok"


def test_platform_verdicts():
    ctx = fake_ctx()
    deb = 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nID=debian\nVERSION_ID="12"\n'
    res, plat = preflight._platform(ctx, deb)
    # verified, but oldstable with an unmaintained OpenStack: a warning, never a block
    assert res.level == "warning" and plat.id == "debian-12"
    assert "oldstable" in res.why and "past upstream maintenance" in res.why
    assert "Debian 13" in res.fix_hint
    trixie = 'PRETTY_NAME="Debian GNU/Linux 13 (trixie)"\nID=debian\nVERSION_ID="13"\n'
    res, plat = preflight._platform(ctx, trixie)
    assert res.level == "ok" and "2025.1 (Epoxy)" in res.why and plat.id == "debian-13"
    res, plat = preflight._platform(ctx, 'PRETTY_NAME="Debian 11"\nID=debian\nVERSION_ID="11"\n')
    assert res.blocking and plat is None
    res, _ = preflight._platform(ctx, 'PRETTY_NAME="Ubuntu 24.04"\nID=ubuntu\nVERSION_ID="24.04"\n')
    assert res.level == "warning" and "caracal" in res.why


def test_repo_urls_from_both_source_formats():
    one = ("deb http://deb.debian.org/debian bookworm main\n"
           "# deb http://commented.example/debian bookworm main\n"
           "deb [arch=amd64 signed-by=/k.gpg] https://repo.example.com/apt stable main\n"
           "deb-src http://src.example/debian bookworm main\n"
           "deb http://deb.debian.org/debian-security bookworm-security main\n"
           "deb file:/srv/local ./\n")
    d822 = ("Types: deb\nURIs: http://mirror.example.org/ubuntu\nSuites: noble noble-updates\n"
            "Components: main\n\nTypes: deb\nURIs: http://off.example\nSuites: x\nEnabled: no\n")
    urls = preflight.repo_urls(one, d822)
    assert urls == ["http://deb.debian.org/debian/dists/bookworm/InRelease",
                    "https://repo.example.com/apt/dists/stable/InRelease",
                    "http://mirror.example.org/ubuntu/dists/noble/InRelease"]


def test_repos_blocking_only_when_needed():
    ctx = fake_ctx()
    from tui.tasks.platforms import PLATFORMS

    plat = PLATFORMS["debian-12"]
    urls = ["http://deb.debian.org/debian/dists/bookworm/InRelease"]
    down = {0: (100, "Could not resolve 'deb.debian.org'")}
    assert preflight._repos(ctx, plat, urls, down, ["keystone"]).blocking
    assert preflight._repos(ctx, plat, urls, down, []).level == "warning"
    assert preflight._repos(ctx, plat, urls, {0: (100, "404  Not Found")}, ["x"]).level == "ok"
    assert preflight._repos(ctx, plat, urls, {0: (0, "")}, ["x"]).level == "ok"


def test_lock_wait_script_counts_down(monkeypatch):
    monkeypatch.setenv("STACK_TUI_LOCK_WAIT", "7")
    assert pkglock.lock_wait_seconds() == 7
    sh = pkglock.lock_wait_sh(7)
    assert "/proc/locks" in sh and "fuser" not in sh and "@@LOCKED" in sh and "s left" in sh
    monkeypatch.setenv("STACK_TUI_LOCK_WAIT", "junk")
    assert pkglock.lock_wait_seconds() == 120


# -- bundle scrubbing ---------------------------------------------------------------------------
UNKNOWN = "Unkn0wn-S3cret_v4lue"


def test_scrub_masks_secret_shapes_it_was_not_told_about():
    text = f"""[database]
connection = mysql+pymysql://keystone:{UNKNOWN} with space@10.0.0.1/keystone?charset=utf8mb4
transport_url = rabbit://openstack:{UNKNOWN}@10.0.0.1:5672/
[keystone_authtoken]
password = {UNKNOWN} more words
memcache_secret_key={UNKNOWN}
auth_type = password
export OS_PASSWORD='{UNKNOWN}'
OS_PASSWORD={UNKNOWN}
      password: {UNKNOWN}
{{"admin_password": "{UNKNOWN}", "n": 1}}
ALTER USER 'glance'@'%' IDENTIFIED BY '{UNKNOWN}';
Nov 25 glance-api[1]: using password={UNKNOWN}, retrying
openstack --os-password {UNKNOWN} token issue
"""
    out = bundle.scrub(text)
    assert UNKNOWN not in out, out
    assert "auth_type = password" in out
    assert "mysql+pymysql://keystone:" + MASK + "@10.0.0.1/keystone" in out
    assert out.count(MASK) == 11


def test_scrub_leaves_ordinary_text_alone():
    text = ("www_authenticate_uri = http://10.0.0.1:5000\nprovider = fernet\n"
            "GET http://127.0.0.1:5000/v3/ 200\npassword =\nbind-address = 10.0.0.1\n")
    assert bundle.scrub(text) == text


def test_bundle_without_host_has_log_state_plan_and_no_secret(stack_home, monkeypatch):
    from tui.tasks import engine, profile as pr
    from tui.tasks.secrets import write_secrets_file

    secrets = {"admin_password": "Adm'in $x \\ `y` ü", "rabbit_password": "ra/bb@it pw",
               "keystone_db_password": "ks'db\"$PATH"}
    prof = pr.Profile(name="bund")
    prof.host.address = "192.0.2.1"
    path = pr.save(prof)
    prof = pr.load("bund")
    write_secrets_file(prof.secrets_file, secrets)
    red = Redactor(secrets.values())
    log = engine.new_log_path("bund")
    log.write_text(f"leaked {secrets['admin_password']} and "
                   f"{urllib.parse.quote(secrets['rabbit_password'], safe='')}\n"
                   f"password = {UNKNOWN}\n")
    st = engine.RunState(engine.state_path("bund", "192.0.2.1"), red)
    st.set("prepare.packages", engine.Status.DONE, 1.5)
    out = bundle.make_bundle(prof, stack_home / "b.tar.gz", connect=False)
    assert out.stat().st_mode & 0o777 == 0o600
    with tarfile.open(out) as tar:
        names = [m.name.split("/", 1)[1] for m in tar.getmembers()]
        texts = {n: tar.extractfile(m).read().decode() for n, m in zip(names, tar.getmembers())}
    assert f"local/logs/{log.name}" in names and "local/state.json" in names
    assert "local/plan.txt" in names and "MANIFEST.txt" in names
    assert "preflight.checks" in texts["local/plan.txt"] and "prepare.packages" in texts["local/plan.txt"]
    assert "prepare.packages" in texts["local/state.json"]
    for body in texts.values():
        for v in list(secrets.values()) + [UNKNOWN]:
            for form in (v, urllib.parse.quote(v, safe=""), urllib.parse.quote(v)):
                assert form not in body
    assert path.exists()
