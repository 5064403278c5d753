"""Preflight, explained failures and the support bundle on real sandbox hosts.

Two hosts:

* ``pfp-<pid>`` (fresh, nothing installed): port 5000 held by a stranger
  (`python3 -m http.server`): `check` names the process, `apply --fix` stops in the
  preflight and not one package gets installed.
* ``pf-<pid>`` (one full install, reused by every later test): /etc/hosts maps the host
  name to a wrong address and the profile says fix_hosts = false: `check` reports it
  blocking, `check --fix` repairs it; then an apt lock is held by another process while
  the engine runs in-process: the packages step waits with a countdown, explains (naming
  the holder), the lock is released and Retry completes the install with RabbitMQ
  healthy.  Then a bad MariaDB config key: the failure shows the journal tail and the
  explanation, Retry after the fix succeeds.  Last, the bundle: the promised files, and
  no secret in any form (not even one the redactor was never told about).
"""

from __future__ import annotations

import json
import os
import re
import tarfile
import time
import urllib.parse

import pytest

from tests import cloud

pytestmark = pytest.mark.e2e

UNKNOWN_SECRET = "Unkn0wn-Ldap-S3cret"  # in keystone.conf, never given to stack-tui


def _wait_listening(info, port: int, timeout: float = 15) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if f":{port} " in cloud.ssh(info, f"ss -Hltn 'sport = :{port}'").stdout + " ":
            return
        time.sleep(0.2)
    raise AssertionError(f"nothing listens on {port}")


def _installed(info, pkg: str) -> bool:
    r = cloud.ssh(info, f"dpkg-query -W -f='${{db:Status-Status}}' {pkg} 2>/dev/null")
    return r.stdout.strip() == "installed"


# --------------------------------------------------------------------------- port held
def test_port_5000_held_blocks_before_any_package(sandbox_factory, stack_home):
    from tui.cli import write_sandbox_profile

    info = sandbox_factory(f"pfp-{os.getpid()}")
    write_sandbox_profile(info, name="pfport")
    r = cloud.ssh(info, "systemd-run -q --unit=squatter --working-directory=/tmp "
                        "python3 -m http.server 5000")
    assert r.returncode == 0, r.stderr
    _wait_listening(info, 5000)

    t0 = time.monotonic()
    r = cloud.cli("check", "pfport", "--accept-new-host-key", timeout=120)
    took = time.monotonic() - t0
    assert r.returncode == 1, r.stdout + r.stderr
    line = next(ln for ln in r.stdout.splitlines() if "Port 5000" in ln)
    assert "BLOCKING" in line and re.search(r"python3 \(pid \d+\)", line), r.stdout
    assert "1 blocking" in r.stdout
    print(f"check (fresh host, port held): {took:.1f} s")

    r = cloud.cli("apply", "pfport", "--yes", "--fix", timeout=300)
    assert r.returncode == 1, r.stdout + r.stderr
    steps = [ln for ln in r.stdout.splitlines() if ln.startswith("[")]
    assert len(steps) == 1 and "preflight.checks" in steps[0] and "FAILED" in steps[0], r.stdout
    assert "Nothing was installed" in r.stdout and "python3 (pid" in r.stdout
    assert "Traceback" not in r.stdout + r.stderr
    assert not _installed(info, "mariadb-server")
    assert not _installed(info, "rabbitmq-server")
    assert cloud.ssh(info, "test -e /usr/sbin/policy-rc.d").returncode != 0


# --------------------------------------------------------------------------- one install
@pytest.fixture(scope="module")
def host(sandbox_factory, stack_home):
    from tui.cli import write_sandbox_profile
    from tui.tasks import profile as pr

    info = sandbox_factory(f"pf-{os.getpid()}")
    path = write_sandbox_profile(info, name="pfx")
    prof = pr.load(path)
    prof.openstack.fix_hosts = False  # the install's own hostname step must not fix it
    pr.save(prof)
    cloud.write_secrets(path, cloud.HOSTILE)
    return {"info": info, "profile": path, "secrets": dict(cloud.HOSTILE), "home": stack_home,
            "state": {}}


def test_wrong_hosts_entry_blocks_and_fix_repairs_it(host):
    info = host["info"]
    wrong = "127.0.0.1 localhost\n10.9.9.9 stackhost\n::1 localhost ip6-localhost ip6-loopback\n"
    r = cloud.ssh(info, f"printf '%s' '{wrong}' > /etc/hosts && getent hosts stackhost")
    assert "10.9.9.9" in r.stdout

    r = cloud.cli("check", "pfx", "--accept-new-host-key", timeout=120)
    assert r.returncode == 1, r.stdout + r.stderr
    line = next(ln for ln in r.stdout.splitlines() if "Host name" in ln)
    assert "BLOCKING" in line and "10.9.9.9" in line and "rabbit@stackhost" in line, r.stdout
    assert f"map stackhost to {info.address} in /etc/hosts" in r.stdout
    assert "stack-tui check pfx --fix" in r.stdout
    assert "10.9.9.9 stackhost" in cloud.ssh(info, "cat /etc/hosts").stdout  # check changes nothing

    r = cloud.cli("check", "pfx", "--fix", timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Checking again after the fixes" in r.stdout
    assert "0 blocking" in r.stdout
    hosts = cloud.ssh(info, "cat /etc/hosts").stdout
    assert f"{info.address} stackhost" in hosts and "10.9.9.9" not in hosts
    assert "127.0.0.1 localhost" in hosts and "ip6-localhost" in hosts  # other lines kept
    assert cloud.ssh(info, "test -e /etc/hosts.stack-tui.orig").returncode == 0


def test_apt_lock_waits_explains_then_retry_completes_install(host, monkeypatch):
    """Another process holds the dpkg frontend lock (a POSIX lock, like apt's own: a
    flock(1) lock would not stop apt).  The run: preflight warns naming it; the packages
    step waits with a countdown, retries with backoff, then asks with the explanation;
    the decision releases the lock and says Retry; the install completes."""
    from tui.tasks import engine as e
    from tui.tasks import profile as pr
    from tui.tasks import runner

    info = host["info"]
    monkeypatch.setenv("STACK_TUI_LOCK_WAIT", "2")
    r = cloud.ssh(info, "systemd-run -q --unit=holdlock python3 -c \"import fcntl, time; "
                        "f = open('/var/lib/dpkg/lock-frontend', 'w'); "
                        "fcntl.lockf(f, fcntl.LOCK_EX); time.sleep(600)\"")
    assert r.returncode == 0, r.stderr
    time.sleep(0.5)
    holder = cloud.ssh(info, "systemctl show -p MainPID --value holdlock").stdout.strip()
    assert holder and holder != "0"

    events, asked = [], []

    def decide(step, err):
        asked.append((step.id, err))
        if step.id == "prepare.packages" and len(asked) == 1:
            assert cloud.ssh(info, "systemctl stop holdlock").returncode == 0
            return e.Decision.RETRY
        return e.Decision.ABORT

    session = runner.open_session(pr.load("pfx"))
    try:
        runner.connect_and_plan(session)
        eng = runner.make_engine(session, listeners=[events.append], decide=decide)
        t0 = time.monotonic()
        result = eng.run()
        took = time.monotonic() - t0
    finally:
        session.close()
    fails = [(s, err.text(), err.tail) for s, err in asked]
    assert result.ok, fails
    assert [s for s, _ in asked] == ["prepare.packages"], fails
    err = asked[0][1]
    assert f"python3 (pid {holder})" in err.what and "after waiting 2 s" in err.what
    assert "another package manager" in err.why and f"ps -fp {holder}" in err.hint
    assert err.kind == "transient"

    def outputs(step):
        return [ev.line for ev in events if isinstance(ev, e.StepOutput) and ev.step_id == step]

    countdown = [ln for ln in outputs("prepare.packages") if ln.startswith("waiting for python3")]
    assert countdown and all("s left)" in ln for ln in countdown), outputs("prepare.packages")
    notices = [ev.text for ev in events if isinstance(ev, e.Notice)]
    assert sum("retrying in" in t for t in notices) == 3, notices  # backoff before asking
    assert any("preflight warning" in t and "python3" in t for t in notices), notices
    pre = [ev for ev in events if isinstance(ev, e.StepFinished) and ev.step_id == "preflight.checks"]
    assert pre and pre[0].status == e.Status.ALREADY_DONE  # the hosts fix came from `check --fix`

    r = cloud.ssh(info, "rabbitmqctl status >/dev/null 2>&1 && echo healthy; "
                        "rabbitmqctl -q list_user_permissions openstack")
    assert r.stdout.startswith("healthy") and ".*\t.*\t.*" in r.stdout, r.stdout + r.stderr
    host["state"]["installed"] = True
    slow = sorted(((ev.duration, ev.step_id) for ev in events
                   if isinstance(ev, e.StepFinished)), reverse=True)[:4]
    print(f"full install with a held apt lock: {took:.1f} s; slowest steps: "
          + ", ".join(f"{sid} {d:.0f} s" for d, sid in slow))
    from tui.tasks import sandbox

    sandbox.harvest_debs(info)


def test_installed_host_check_is_fast_and_clean(host):
    if not host["state"].get("installed"):
        pytest.skip("the install did not complete")
    t0 = time.monotonic()
    r = cloud.cli("check", "pfx", timeout=120)
    took = time.monotonic() - t0
    assert r.returncode == 0, r.stdout + r.stderr
    assert "held by the expected service" in r.stdout
    for name in ("mariadbd", "beam.smp", "memcached", "apache2", "glance-api"):
        assert name in r.stdout
    assert "0 blocking" in r.stdout
    assert took < 10, f"check took {took:.1f} s"
    print(f"check on the installed host: {took:.1f} s (process start included)")


def test_bad_config_key_shows_journal_and_retry_after_fix_succeeds(host):
    from tui.tasks import engine as e
    from tui.tasks import profile as pr
    from tui.tasks import runner

    if not host["state"].get("installed"):
        pytest.skip("the install did not complete")
    info = host["info"]
    bad = "/etc/mysql/mariadb.conf.d/98-local.cnf"
    r = cloud.ssh(info, f"printf '[mysqld]\\nbogus_key_from_test = 1\\n' > {bad} && "
                        "systemctl stop mariadb")
    assert r.returncode == 0, r.stderr
    asked = []

    def decide(step, err):
        asked.append((step.id, err))
        if len(asked) == 1:
            assert cloud.ssh(info, f"rm -f {bad}").returncode == 0
            return e.Decision.RETRY
        return e.Decision.ABORT

    session = runner.open_session(pr.load("pfx"))
    try:
        runner.connect_and_plan(session)
        result = runner.make_engine(session, decide=decide, only_phase="mariadb").run()
    finally:
        session.close()
    assert result.ok, [(s, err.text(), err.tail) for s, err in asked]
    assert [s for s, _ in asked] == ["mariadb.service"]
    err = asked[0][1]
    assert "mariadb" in err.what.lower()
    assert any("bogus_key_from_test" in ln for ln in err.tail), err.tail  # the journal tail
    assert "rejects a setting in its configuration file" in err.why, err.why
    assert "journal" in err.why and err.hint
    assert cloud.ssh(info, "systemctl is-active mariadb").stdout.strip() == "active"


def test_bundle_has_the_promised_files_and_no_secret(host, tmp_path):
    if not host["state"].get("installed"):
        pytest.skip("the install did not complete")
    info = host["info"]
    r = cloud.ssh(info, f"printf '\\n[ldap]\\npassword = {UNKNOWN_SECRET}\\n' "
                        ">> /etc/keystone/keystone.conf")
    assert r.returncode == 0
    out = tmp_path / "support.tar.gz"
    t0 = time.monotonic()
    r = cloud.cli("bundle", "pfx", "-o", str(out), timeout=180)
    took = time.monotonic() - t0
    assert r.returncode == 0, r.stdout + r.stderr
    assert out.exists() and out.stat().st_mode & 0o777 == 0o600
    with tarfile.open(out) as tar:
        members = [m for m in tar.getmembers() if m.isfile()]
        texts = {m.name.split("/", 1)[1]: tar.extractfile(m).read().decode("utf-8")
                 for m in members}
    names = set(texts)
    for want in ("local/plan.txt", "local/state.json", "MANIFEST.txt",
                 "host/etc/keystone/keystone.conf", "host/etc/glance/glance-api.conf",
                 "host/etc/mysql/mariadb.conf.d/99-openstack.cnf", "host/etc/memcached.conf",
                 "host/etc/apache2/sites-available/keystone.conf", "host/etc/hosts",
                 "host/systemctl-status.txt", "host/ss-ltnp.txt", "host/logs/keystone.log",
                 "host/logs/glance-api.log", "host/journal/mariadb.txt",
                 "host/journal/rabbitmq-server.txt", "host/journal/memcached.txt",
                 "host/journal/apache2.txt", "host/journal/glance-api.txt"):
        assert want in names, sorted(names)
    logs = [n for n in names if n.startswith("local/logs/pfx-") and n.endswith(".log")]
    assert logs, sorted(names)
    assert "preflight.checks" in texts["local/plan.txt"]
    assert "prepare.packages" in texts["local/state.json"]
    assert "[database]" in texts["host/etc/keystone/keystone.conf"]
    assert "mysql+pymysql://keystone:********@" in texts["host/etc/keystone/keystone.conf"]
    assert "password = ********" in texts["host/etc/keystone/keystone.conf"]
    assert "bogus_key_from_test" in texts["host/journal/mariadb.txt"]  # the failure's journal
    assert "apache2" in texts["host/ss-ltnp.txt"]
    forms = [UNKNOWN_SECRET]
    for v in host["secrets"].values():
        forms += [v, urllib.parse.quote(v, safe=""), urllib.parse.quote(v),
                  urllib.parse.quote_plus(v), v.replace("$", "$$"), json.dumps(v)[1:-1]]
    for name, body in texts.items():
        for f in forms:
            assert f not in body, f"a secret leaked into {name}"
    print(f"bundle: {len(names)} files in {took:.1f} s")
