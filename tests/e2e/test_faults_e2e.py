"""Fault injection against real sandbox hosts: what goes wrong, and that nothing is lost.

One sandbox host for the whole module (a fresh full install costs ~2 minutes, so
it is done once and every later test reuses the installed host):

1. the install itself is SIGKILLed in the middle of the packages step and resumed
   (and the process list is watched all along for the hostile values it carries);
2. the SSH connection is cut mid-step (sshd child killed; the veth link dropped for
   a few seconds): the run reconnects, retries the step and completes;
3. the host goes away for good mid-step: a plain error within a bounded time, the
   step saved as failed, exit 1; once the host is back a later `apply` completes;
4. the package mirror is unreachable: a plain "cannot reach the package repository",
   after bounded retries when it happens inside the packages step; restored, `apply`
   completes;
5. wrong key / SSH password / sudo password, host unreachable, port closed: five
   distinct plain errors, exit 3, within 10 s each;
6. bad input (missing key file, corrupted or newer state): refused, nothing
   touched, nothing run on the host;
7. hostile names and passwords: nothing executes, nothing leaks;
8. preflight on the installed host: a wrong /etc/hosts entry blocks and `check --fix`
   repairs it; another package manager's lock is waited for, explained, and Retry
   completes the install; a bad MariaDB setting shows its journal; the support bundle
   holds the promised files and no secret;
   each explanation rule not proven above provoked for real (MariaDB stopped, a wrong
   Erlang cookie, a changed admin password, a masked unit, a 500 from Keystone, an
   unwritable image store, Glance's own wrong password, a 407 proxy, a missing package):
   the failure carries that rule's words and, where it names one, the log tail;
9. (last, it breaks the host for stack-tui) regenerated host keys: refused, nothing run.

Every step of the real product runs: the `stack-tui` command line as a subprocess
(or, for the connection cuts, the engine in-process through ``runner``), real SSH,
real apt.  The host is looked at with the plain ``ssh`` client (tests/cloud.py).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests import cloud

pytestmark = pytest.mark.e2e

PROFILE = "faults"
# A file only an executed injection would create (pid-unique: other suites use /tmp/pwned).
MARK = f"/tmp/pwned-faults-{os.getpid()}"
IMAGE_NAME = f"ci'r\"os $(touch {MARK}) `touch {MARK}`; ü"
PASSWORDS = {
    # Keystone passwords stay within bcrypt's 72 bytes (longer ones are refused up front)
    "admin_password": f"Ad'm\"in $(touch {MARK}) `id`; #x Ü",
    "demo_password": f"de'mo\"$(touch {MARK}) \\;# ñ",
    "keystone_db_password": f"ks'db\"$(touch {MARK})\\`;# é",
    "glance_db_password": "gl'db\"$1 \\ `x`;# ø",
    "glance_password": f"gl'an\"ce `touch {MARK}` $$ \\ ;# ß",
    "rabbit_password": f"ra'bb\"it $(touch {MARK}) \\`;# å",
}
SUDO_PASSWORD = f"su'do\" $(touch {MARK}) `x`; ü"
PACKAGE = "python3-openstackclient"  # removed and reinstalled by tests that need the packages step


# --------------------------------------------------------------------------- helpers


def cli(*args: str, env: dict | None = None, timeout: float = 600):
    t0 = time.monotonic()
    r = cloud.cli(*args, env=env, timeout=timeout)
    r.duration = time.monotonic() - t0
    return r


def ssh(info, command: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return cloud.ssh(info, command, timeout=timeout)


def no_traceback(r) -> None:
    assert "Traceback" not in r.stdout and "Traceback" not in r.stderr, r.stdout + r.stderr


def logins(info) -> int:
    """SSH logins the host has accepted so far (this check's own login included)."""
    r = ssh(info, "journalctl -u ssh -o cat --no-pager | grep -c 'Accepted '")
    return int(r.stdout.strip() or 0)


def state_file(address: str) -> Path:
    from tui.tasks.engine import state_path

    return state_path(PROFILE, address)


def newest_log(since: float) -> Path | None:
    from tui.tasks import paths

    logs = [p for p in paths.log_dir().glob(f"{PROFILE}-*.log") if p.stat().st_mtime >= since - 1]
    return max(logs, key=lambda p: p.stat().st_mtime) if logs else None


wait_until = cloud.wait_until


def wait_ssh(info, timeout: float = 30) -> None:
    assert wait_until(lambda: ssh(info, "true", timeout=10).returncode == 0, timeout), \
        "the host does not answer over SSH"


def start_cli(out: Path, *args: str) -> subprocess.Popen:
    fh = open(out, "wb")
    try:
        return subprocess.Popen([sys.executable, "-m", "tui.cli", *args], stdout=fh,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                cwd=cloud.ROOT)  # this checkout's code, as cloud.cli
    finally:
        fh.close()


class PsWatch:
    """`ps -eo args` on the host every half second, for as long as it runs."""

    def __init__(self, info):
        self.info, self.seen = info, []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self.stop.is_set():
            with contextlib.suppress(subprocess.TimeoutExpired):
                r = ssh(self.info, "ps -eo args", timeout=20)
                if r.returncode == 0:
                    self.seen.append(r.stdout)
            self.stop.wait(0.5)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(30)


@contextlib.contextmanager
def host_gone(info):
    """The host drops off the network (its side of the veth goes down): no route to it."""
    peer = f"stk{info.index}c"
    subprocess.run(["ip", "-n", info.netns, "link", "set", peer, "down"], check=True)
    try:
        yield
    finally:
        subprocess.run(["ip", "-n", info.netns, "link", "set", peer, "up"], check=True)
        # Link down dropped the container's default route with it.
        subprocess.run(["ip", "-n", info.netns, "route", "replace", "default", "via",
                        info.host_address], check=True)
        wait_ssh(info)


@contextlib.contextmanager
def mirror_blocked(info):
    """The host's outbound traffic (NAT to the internet mirror) is refused; DNS still works."""
    table, chain = info.nft_table or f"stktui_{info.index}", "faults_block"
    subnet = f"{info.host_address.rsplit('.', 1)[0]}.{info.index * 4}/30"
    rules = (f"table ip {table} {{\n chain {chain} {{\n"
             "  type filter hook forward priority 0; policy accept;\n"
             f"  ip saddr {subnet} udp dport 53 accept\n"
             f"  ip saddr {subnet} tcp dport 53 accept\n"
             f"  ip saddr {subnet} meta l4proto tcp reject with tcp reset\n"
             f"  ip saddr {subnet} reject\n }}\n}}\n")
    subprocess.run(["nft", "-f", "-"], input=rules.encode(), check=True)
    try:
        yield
    finally:
        subprocess.run(["nft", "delete", "chain", "ip", table, chain], check=True)


def remove_package(info) -> None:
    r = ssh(info, f"DEBIAN_FRONTEND=noninteractive apt-get remove -y -q {PACKAGE} >/dev/null 2>&1; "
                  f"dpkg-query -W -f='${{db:Status-Status}}' {PACKAGE} 2>/dev/null", timeout=120)
    assert r.stdout.strip() != "installed", r.stdout + r.stderr


def package_installed(info) -> bool:
    r = ssh(info, f"dpkg-query -W -f='${{db:Status-Status}}' {PACKAGE}")
    return r.stdout.strip() == "installed"


def step_lines(stdout: str) -> dict[str, str]:
    """{step id: its status word(s)} from the headless view's lines."""
    out = {}
    for ln in stdout.splitlines():
        m = re.match(r"\[\s*\d+/\d+\] (\S+)\s+(done|already done|FAILED|SKIPPED)\s", ln)
        if m:
            out[m.group(1)] = m.group(2)
    return out


# --------------------------------------------------------------------------- the host


@pytest.fixture(scope="module")
def host(sandbox_factory, stack_home, fault_release):
    """A fresh sandbox of each release; profile 'faults' with hostile passwords and a hostile
    image name."""
    from tui.cli import write_sandbox_profile
    from tui.tasks import profile as pr

    release = fault_release
    info = sandbox_factory(f"flt{release}-{os.getpid()}", release=release)
    path = write_sandbox_profile(info, name=PROFILE)
    prof = pr.load(path)
    prof.image.name = IMAGE_NAME
    pr.save(prof)
    cloud.write_secrets(path, PASSWORDS)
    assert not os.path.exists(MARK)
    yield {"info": info, "profile": path}
    sandbox_factory.remove(info.name)


@pytest.fixture(scope="module")
def installed(host, tmp_path_factory):
    """The first install, SIGKILLed mid-packages, then resumed by a second `apply`."""
    info = host["info"]
    out = tmp_path_factory.mktemp("faults") / "killed-run.out"
    res: dict = {"info": info}
    with PsWatch(info) as watch:
        t0 = time.monotonic()
        proc = start_cli(out, "apply", PROFILE, "--yes", "--accept-new-host-key")
        # dpkg unpacking on the host (apt-get has passed the downloads): the middle of
        # the longest step, the worst moment to die.
        def dpkg_running():
            assert proc.poll() is None, out.read_text(errors="replace")
            return ssh(info, "pgrep -f '^/usr/bin/dpkg .*--unpack' >/dev/null").returncode == 0
        res["dpkg_seen"] = wait_until(dpkg_running, 300, 0.5)
        time.sleep(2)
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        res["killed_after"] = time.monotonic() - t0
        res["killed_rc"] = proc.returncode
        res["killed_out"] = out.read_text(errors="replace")
        res["state_after_kill"] = state_file(info.address).read_bytes()
        res["resume"] = cli("apply", PROFILE, "--yes", timeout=900)
        res["total"] = time.monotonic() - t0
    res["ps"] = watch.seen
    from tui.tasks import sandbox

    sandbox.harvest_debs(info)  # later installs in this test run come from the warm cache
    return res


@pytest.fixture
def ready(installed):
    if installed["resume"].returncode != 0:
        pytest.skip("the install did not complete (see test_sigkill_mid_install_then_resume)")
    return installed["info"]


# --------------------------------------------------------------------------- 2. SIGKILL + resume


def test_sigkill_mid_install_then_resume(installed):
    """Killed with SIGKILL while dpkg unpacks: the state file is whole, the next apply
    resumes (earlier steps already done, the interrupted one runs) and completes."""
    assert installed["dpkg_seen"], installed["killed_out"]
    assert installed["killed_rc"] == -signal.SIGKILL
    state = json.loads(installed["state_after_kill"].decode("utf-8"))  # valid JSON, whole
    steps = state["steps"]
    assert steps["prepare.packages"]["status"] == "running", steps
    assert steps["prepare.detect"]["status"] in ("done", "already done")
    assert state["finished"] is False
    r = installed["resume"]
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    assert "resuming the previous run" in r.stdout
    lines = step_lines(r.stdout)
    assert lines["prepare.detect"] == "already done" and lines["prepare.hostname"] == "already done"
    assert lines["prepare.packages"] == "done"
    assert "FAILED" not in r.stdout and "OK:" in r.stdout
    no_traceback(r)
    final = json.loads(state_file(installed["info"].address).read_text())
    assert final["finished"] is True
    assert all(s["status"] in ("done", "already done") for s in final["steps"].values())
    print(f"killed after {installed['killed_after']:.0f} s; install incl. resume "
          f"{installed['total']:.0f} s")


# --------------------------------------------------------------------------- 7. hostile values


def _forms(value: str) -> list[str]:
    import urllib.parse

    return [value, json.dumps(value)[1:-1], json.dumps(value, ensure_ascii=False)[1:-1],
            shlex.quote(value), urllib.parse.quote(value, safe="")]


def test_hostile_values_never_execute_nor_leak(installed, ready, stack_home):
    """Passwords and an image name full of quotes, $(), backticks, ;, spaces and non-ASCII:
    the install worked with them, nothing executed, nothing in argv, logs or state."""
    info = ready
    assert ssh(info, f"test -e {MARK}").returncode == 1, "an injection ran on the host"
    assert not os.path.exists(MARK), "an injection ran locally"
    imgs = cloud.images(info.address, PASSWORDS["admin_password"])
    assert [(i["name"], i["status"]) for i in imgs] == [(IMAGE_NAME, "active")]
    assert cloud.token(info.address, "demo", PASSWORDS["demo_password"], "demo")

    assert len(installed["ps"]) > 20, "the host's process list was hardly captured"
    values = [*PASSWORDS.values(), IMAGE_NAME]
    for snapshot in installed["ps"]:
        assert f"touch {MARK}" not in snapshot
        for v in values:
            for f in _forms(v):
                assert f not in snapshot
    files = list((stack_home / "log").glob(f"{PROFILE}-*.log"))
    files += [state_file(info.address)]
    assert len(files) >= 3
    outputs = [installed["killed_out"], installed["resume"].stdout, installed["resume"].stderr]
    for text in [p.read_text(encoding="utf-8") for p in files] + outputs:
        for v in PASSWORDS.values():
            for f in _forms(v):
                assert f not in text


@pytest.mark.one_release
def test_newline_password_and_hostile_region_refused_before_anything_runs(ready, tmp_path):
    """A password with a newline (environment or secrets file) and a region with shell
    characters are refused by validation with a plain message: no login, state untouched."""
    from tui.tasks import profile as pr

    info = ready
    st = state_file(info.address)
    before_state = st.read_bytes()
    n = logins(info)
    r = cli("apply", PROFILE, "--yes", env={"STACK_TUI_ADMIN_PASSWORD": "new\nline; $(touch /x)"})
    assert r.returncode == 2, r.stdout + r.stderr
    assert "admin_password" in r.stderr and "control character" in r.stderr
    assert "new\nline" not in r.stdout + r.stderr
    no_traceback(r)

    prof = pr.load(PROFILE)
    sfile = prof.secrets_file
    saved = sfile.read_bytes()
    try:
        cloud.write_secrets(prof.path, {**PASSWORDS, "rabbit_password": "ra\nbbit"})
        bad = sfile.read_bytes()
        r = cli("apply", PROFILE, "--yes")
        assert r.returncode == 2, r.stdout + r.stderr
        assert "rabbit_password" in r.stderr and "control character" in r.stderr
        assert sfile.read_bytes() == bad
        no_traceback(r)
    finally:
        sfile.write_bytes(saved)

    text = prof.path.read_text(encoding="utf-8")
    hostile = tmp_path / "region.toml"
    hostile.write_text(text.replace('region = "RegionOne"',
                                    f"region = {json.dumps('Reg $(touch ' + MARK + ');`x` ü')}"))
    assert hostile.read_text() != text
    before = hostile.read_bytes()
    r = cli("apply", str(hostile), "--yes")
    assert r.returncode == 2, r.stdout + r.stderr
    assert "[openstack.region]" in r.stderr and "not a valid region name" in r.stderr
    assert hostile.read_bytes() == before
    no_traceback(r)

    assert st.read_bytes() == before_state
    assert logins(info) == n + 1, "stack-tui logged in although the input was refused"
    assert ssh(info, f"test -e {MARK}").returncode == 1 and not os.path.exists(MARK)


# --------------------------------------------------------------------------- 1. connection cut


# OpenSSH >= 9.8 (Debian 13) names the per-connection process sshd-session.
KILL_OTHER_SESSIONS = ('for p in $(pgrep -f "sshd(-session)?: root@notty"); do '
                       '[ "$p" != "$PPID" ] && kill "$p"; done; true')


@pytest.mark.one_release
@pytest.mark.parametrize("fault", ["sshd-killed", "link-dropped"])
def test_connection_cut_mid_step_reconnects_and_retries(ready, tmp_path, fault):
    """In-process engine on the installed host, a small plan whose middle step sleeps on
    the host.  Mid-sleep (a) the session's sshd process is killed, or (b) the host side of
    the veth goes down for 6 s: the engine reconnects, runs the step again, and the run
    completes.  For (b) the silence probe is tightened (2 s, keepalive answer within 3 s)
    so the dead link is noticed while it is down; with the defaults (15 s + 10 s) a
    6-second blip is simply ridden out by TCP."""
    from tui.tasks import engine as e
    from tui.tasks import profile as pr
    from tui.tasks import runner

    info = ready
    nap = "7.317"
    session = runner.open_session(pr.load(PROFILE))
    try:
        runner.connect_and_plan(session)
        if fault == "link-dropped":
            session.transport.idle_probe = 2.0
            session.transport.connect_timeout = 3.0
        marker = f"/root/faults-cut-{os.getpid()}-{fault}"
        session.plan = e.Plan([e.Phase("cut", "Connection cut", [
            e.Step("cut.before", "a quick command", run=lambda c: c.sh("true")),
            e.Step("cut.sleep", "a long, silent command",
                   run=lambda c: c.sh(f"echo start >> {marker}; sleep {nap}; echo end >> {marker}")),
            e.Step("cut.after", "a command after it", run=lambda c: c.sh("echo after")),
        ])])
        session.state = e.RunState(tmp_path / "cut-state.json", session.redact)
        events: list = []
        eng = runner.make_engine(session, listeners=[events.append])
        result: dict = {}
        th = threading.Thread(target=lambda: result.setdefault("r", eng.run()), daemon=True)
        th.start()
        assert wait_until(lambda: ssh(info, f"pgrep -f '[s]leep {nap}' >/dev/null").returncode == 0,
                          20, 0.2), "the step never started on the host"
        t_fault = time.monotonic()
        if fault == "sshd-killed":
            ssh(info, KILL_OTHER_SESSIONS)
        else:
            link = f"stk{info.index}h"
            subprocess.run(["ip", "link", "set", link, "down"], check=True)
            try:
                time.sleep(6)
            finally:
                subprocess.run(["ip", "link", "set", link, "up"], check=True)
        th.join(120)
        assert not th.is_alive(), "the run did not finish"
        took = time.monotonic() - t_fault
    finally:
        session.close()
    res = result["r"]
    assert res.ok, [ev for ev in events if isinstance(ev, (e.StepFinished, e.Notice))]
    attempts = [ev.attempt for ev in events if isinstance(ev, e.StepStarted) and ev.step_id == "cut.sleep"]
    assert attempts == [1, 2], attempts
    notes = [ev.text for ev in events if isinstance(ev, e.Notice)]
    assert any("SSH connection lost" in t and "retrying cut.sleep" in t for t in notes), notes
    assert session.transport.connects == 2
    saved = json.loads((tmp_path / "cut-state.json").read_text())
    assert saved["finished"] is True and saved["steps"]["cut.sleep"]["status"] == "done"
    r = ssh(info, f"cat {marker}; rm -f {marker}")
    assert r.stdout.count("start") == 2 and "end" in r.stdout
    print(f"{fault}: reconnected and finished {took:.1f} s after the fault")


# --------------------------------------------------------------------------- 1c. host gone


LOCK_HOLDER = ("python3 -c 'import fcntl, time; f = open(\"/var/lib/dpkg/lock-frontend\", \"w\"); "
               "fcntl.lockf(f, fcntl.LOCK_EX); time.sleep(900)' faults-lock-holder")


@pytest.mark.one_release
def test_host_gone_for_good_then_later_apply_completes(ready, tmp_path):
    """`apply` is mid-step (waiting for another package manager's dpkg lock) when the host
    drops off the network for good: within a bounded time (silence probe + the reconnect
    deadline, under 90 s) a plain error, the step saved as failed, exit 1, no traceback.
    With the host back (and the lock released) a later `apply` completes."""
    info = ready
    remove_package(info)
    r = ssh(info, f"setsid -f {LOCK_HOLDER} >/dev/null 2>&1 </dev/null", timeout=30)
    assert r.returncode == 0, r.stderr
    assert wait_until(lambda: ssh(info, "grep -q POSIX /proc/locks && "
                                        "pgrep -f '[f]aults-lock-holder'").returncode == 0, 10)
    try:
        out = tmp_path / "gone.out"
        t0 = time.time()
        proc = start_cli(out, "apply", PROFILE, "--yes")

        def waiting_for_lock():
            assert proc.poll() is None, out.read_text(errors="replace")
            log = newest_log(t0)
            text = log.read_text(errors="replace") if log is not None else ""
            return "s left)" in text.partition("] prepare.packages:")[2]

        assert wait_until(waiting_for_lock, 90, 0.5), "apply never waited for the lock"
        with host_gone(info):
            t_gone = time.monotonic()
            try:
                proc.wait(150)
            finally:
                if proc.poll() is None:
                    proc.kill()
            took = time.monotonic() - t_gone
        text = out.read_text(errors="replace")
        assert proc.returncode == 1, text
        assert took < 90, f"gave up only after {took:.0f} s"
        assert "could not re-establish" in text and info.address in text, text
        assert "NOT COMPLETE" in text and "it resumes" in text
        assert "Traceback" not in text
        state = json.loads(state_file(info.address).read_text())
        failed = {k: v for k, v in state["steps"].items() if v["status"] == "failed"}
        assert list(failed) == ["prepare.packages"], state["steps"]
        assert failed["prepare.packages"]["error"]["kind"] == "ConnectionLost"
        assert re.search(r"prepare\.packages\s+FAILED", text), text
        print(f"host gone: plain error after {took:.0f} s")
    finally:
        ssh(info, "pkill -f '[f]aults-lock-holder'; true")
    r = cli("apply", PROFILE, "--yes")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    assert "OK:" in r.stdout and package_installed(info)
    no_traceback(r)


# --------------------------------------------------------------------------- 3. mirror


def test_mirror_unreachable_plain_error_then_recovers(ready):
    """With the host's outbound traffic refused and apt forced to fetch (package lists
    removed, one package missing): `apply` stops with a plain "cannot reach the package
    repository"; inside the packages step (`--from prepare.packages`, past the preflight)
    after 3 retries with backoff, bounded.  Unblocked, the next `apply` completes."""
    info = ready
    remove_package(info)
    assert ssh(info, "rm -rf /var/lib/apt/lists/*").returncode == 0
    with mirror_blocked(info):
        r = cli("apply", PROFILE, "--yes")
        assert r.returncode == 1, r.stdout + r.stderr
        assert "cannot reach the package repository" in r.stdout.lower(), r.stdout
        assert r.duration < 60
        no_traceback(r)

        r = cli("apply", PROFILE, "--yes", "--from", "prepare.packages")
        assert r.returncode == 1, r.stdout + r.stderr
        assert step_lines(r.stdout) == {"prepare.packages": "FAILED"}, r.stdout
        assert "Cannot reach the package repository from the host." in r.stdout
        assert "deb.debian.org" in r.stdout  # which repository, and why
        for n in (1, 2, 3):
            assert f"({n}/3)" in r.stdout
        assert "(4/3)" not in r.stdout
        assert r.duration < 60, f"{r.duration:.0f} s"
        no_traceback(r)
        state = json.loads(state_file(info.address).read_text())
        assert state["steps"]["prepare.packages"]["status"] == "failed"
        assert not package_installed(info)
        print(f"mirror blocked: packages step gave up after {r.duration:.0f} s")
    r = cli("apply", PROFILE, "--yes")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    assert step_lines(r.stdout)["prepare.packages"] == "done"
    assert package_installed(info)


# --------------------------------------------------------------------------- 4. login errors


@pytest.mark.one_release
def test_login_errors_distinct_plain_and_fast(ready, tmp_path):
    """Wrong key, wrong SSH password, wrong sudo password, host unreachable, port closed:
    each `apply` ends within 10 s, exit 3, a distinct plain message, no traceback, no
    secret echoed."""
    from tui.tasks import profile as pr
    from tui.tasks import sandbox

    info = ready
    sandbox.add_user(info, "deployer", SUDO_PASSWORD)
    other = tmp_path / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    empty_home = tmp_path / "home"
    empty_home.mkdir()

    def variant(name, **host):
        prof = pr.load(PROFILE)
        prof.name, prof.path = name, None
        for k, v in host.items():
            setattr(prof.host, k, v)
        pr.save(prof)
        cloud.write_secrets(prof.path, PASSWORDS)
        return name

    base_env = {"HOME": str(empty_home), "SSH_AUTH_SOCK": ""}
    cases = {
        "wrong key": (variant("flt-key", key_file=str(other)), {}),
        "wrong ssh password": (variant("flt-pw", user="deployer", key_file=None),
                               {"STACK_TUI_SSH_PASSWORD": "wrong 'pw' $(x)"}),
        "wrong sudo password": (variant("flt-sudo", user="deployer"),
                                {"STACK_TUI_SUDO_PASSWORD": SUDO_PASSWORD + "x"}),
        "port closed": (variant("flt-port", port=2222), {}),
        "unreachable": (PROFILE, {}),
    }
    results = {}
    for what, (name, env) in cases.items():
        ctx = host_gone(info) if what == "unreachable" else contextlib.nullcontext()
        with ctx:
            r = cli("apply", name, "--yes", env={**base_env, **env}, timeout=60)
        results[what] = r
        assert r.returncode == 3, (what, r.stdout, r.stderr)
        assert r.duration < 10, (what, r.duration)
        assert r.stderr.startswith("stack-tui: "), (what, r.stderr)
        no_traceback(r)
        for secret in (SUDO_PASSWORD, "wrong 'pw' $(x)", *PASSWORDS.values()):
            assert secret not in r.stdout + r.stderr

    def err(what):
        return results[what].stderr

    assert "login to root@" in err("wrong key") and "refused" in err("wrong key")
    assert "login to deployer@" in err("wrong ssh password") and "refused" in err("wrong ssh password")
    assert "sudo" in err("wrong sudo password").lower()
    assert "connection refused" in err("port closed") and ":2222" in err("port closed")
    assert "unreachable" in err("unreachable") and "refused" not in err("unreachable")
    assert len({err(w) for w in results}) == len(results)
    for what, r in results.items():
        print(f"{what}: {r.duration:.1f} s: {r.stderr.splitlines()[0]}")


# --------------------------------------------------------------------------- 6. bad input


@pytest.mark.one_release
def test_missing_key_file_refused_nothing_written(ready):
    """A profile naming a key file that does not exist: exit 2 with the key and the path,
    the profile byte-identical, no secrets file generated, no login on the host."""
    from tui.tasks import paths

    info = ready
    prof_dir = paths.profiles_dir()
    text = (prof_dir / f"{PROFILE}.toml").read_text(encoding="utf-8")
    missing = f"/nonexistent/faults-{os.getpid()}/id_ed25519"
    assert info.key_file in text
    path = prof_dir / "flt-nokey.toml"
    path.write_text(text.replace(info.key_file, missing), encoding="utf-8")
    before = path.read_bytes()
    n = logins(info)
    r = cli("apply", "flt-nokey", "--yes")
    assert r.returncode == 2, r.stdout + r.stderr
    # the key as the file writes it: a version 2 profile's first (and only) [[hosts]] entry
    assert "[hosts[1].key_file]" in r.stderr and missing in r.stderr
    assert "does not exist" in r.stderr
    no_traceback(r)
    assert path.read_bytes() == before
    assert not (prof_dir / "flt-nokey.secrets.toml").exists()
    assert logins(info) == n + 1


@pytest.mark.one_release
@pytest.mark.parametrize("content,words", [
    (b'{"version": 1, "steps": {"prepare.detect": {"status": "do', "corrupted"),
    (b"\xff\xfe\x00binary", "corrupted"),
    (json.dumps({"version": 7, "steps": {}}).encode(), "newer stack-tui"),
])
def test_bad_state_file_refused_untouched_nothing_run(ready, content, words):
    """A corrupted or newer run state for an installed host: exit 2 with a plain message,
    the file byte-identical, no login on the host."""
    info = ready
    st = state_file(info.address)
    good = st.read_bytes()
    try:
        st.write_bytes(content)
        n = logins(info)
        r = cli("apply", PROFILE, "--yes")
        assert r.returncode == 2, r.stdout + r.stderr
        assert words in r.stderr and str(st) in r.stderr and "untouched" in r.stderr
        no_traceback(r)
        assert st.read_bytes() == content
        assert logins(info) == n + 1
    finally:
        st.write_bytes(good)


# --------------------------------------------------------------------------- 9. preflight and the bundle
# On the installed host (one install serves every suite that needs one): a wrong /etc/hosts
# entry, another package manager's lock while the packages step has work to do, a bad
# MariaDB setting, and the support bundle.

UNKNOWN_SECRET = "Unkn0wn-Ldap-S3cret"  # in keystone.conf, never given to stack-tui


@pytest.mark.one_release
def test_wrong_hosts_entry_blocks_and_fix_repairs_it(ready):
    info = ready
    wrong = "127.0.0.1 localhost\n10.9.9.9 stackhost\n::1 localhost ip6-localhost ip6-loopback\n"
    r = ssh(info, f"printf '%s' '{wrong}' > /etc/hosts && getent hosts stackhost")
    assert "10.9.9.9" in r.stdout

    r = cli("check", PROFILE, timeout=120)
    assert r.returncode == 1, r.stdout + r.stderr
    line = next(ln for ln in r.stdout.splitlines() if "Host name" in ln)
    assert "BLOCKING" in line and "10.9.9.9" in line and "rabbit@stackhost" in line, r.stdout
    assert f"map stackhost to {info.address} in /etc/hosts" in r.stdout
    assert f"stack-tui check {PROFILE} --fix" in r.stdout
    assert "10.9.9.9 stackhost" in ssh(info, "cat /etc/hosts").stdout  # check changes nothing

    r = cli("check", PROFILE, "--fix", timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Checking again after the fixes" in r.stdout
    assert "0 blocking" in r.stdout
    hosts = ssh(info, "cat /etc/hosts").stdout
    assert f"{info.address} stackhost" in hosts and "10.9.9.9" not in hosts
    assert "127.0.0.1 localhost" in hosts and "ip6-localhost" in hosts  # other lines kept
    assert ssh(info, "test -e /etc/hosts.stack-tui.orig").returncode == 0


def test_apt_lock_waits_explains_then_retry_completes_install(ready, monkeypatch):
    """Another process holds the dpkg frontend lock (a POSIX lock, like apt's own: a
    flock(1) lock would not stop apt) while the packages step has a package to install.
    The run: preflight warns naming it; the packages step waits with a countdown, retries
    with backoff, then asks with the explanation; the decision releases the lock and says
    Retry; the install completes."""
    from tui.tasks import engine as e
    from tui.tasks import profile as pr
    from tui.tasks import runner

    info = ready
    remove_package(info)
    monkeypatch.setenv("STACK_TUI_LOCK_WAIT", "2")
    r = ssh(info, "systemd-run -q --unit=holdlock python3 -c \"import fcntl, time; "
                  "f = open('/var/lib/dpkg/lock-frontend', 'w'); "
                  "fcntl.lockf(f, fcntl.LOCK_EX); time.sleep(600)\"")
    assert r.returncode == 0, r.stderr
    assert wait_until(lambda: ssh(info, "grep -q POSIX /proc/locks").returncode == 0, 10)
    holder = ssh(info, "systemctl show -p MainPID --value holdlock").stdout.strip()
    assert holder and holder != "0"

    events, asked = [], []

    def decide(step, err):
        asked.append((step.id, err))
        if step.id == "prepare.packages" and len(asked) == 1:
            assert ssh(info, "systemctl stop holdlock").returncode == 0
            return e.Decision.RETRY
        return e.Decision.ABORT

    session = runner.open_session(pr.load(PROFILE))
    try:
        runner.connect_and_plan(session)
        eng = runner.make_engine(session, listeners=[events.append], decide=decide)
        t0 = time.monotonic()
        result = eng.run()
        took = time.monotonic() - t0
    finally:
        session.close()
        ssh(info, "systemctl stop holdlock 2>/dev/null; true")
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
    assert package_installed(info)
    r = ssh(info, "rabbitmqctl status >/dev/null 2>&1 && echo healthy; "
                  "rabbitmqctl -q list_user_permissions openstack")
    assert r.stdout.startswith("healthy") and ".*\t.*\t.*" in r.stdout, r.stdout + r.stderr
    print(f"apply with a held apt lock: {took:.1f} s")


def test_installed_host_check_is_fast_and_clean(ready):
    t0 = time.monotonic()
    r = cli("check", PROFILE, timeout=120)
    took = time.monotonic() - t0
    assert r.returncode == 0, r.stdout + r.stderr
    assert "held by the expected service" in r.stdout
    for name in ("mariadbd", "beam.smp", "memcached", "apache2", "glance-api"):
        assert name in r.stdout
    assert "0 blocking" in r.stdout
    assert took < 10, f"check took {took:.1f} s"
    print(f"check on the installed host: {took:.1f} s (process start included)")


def test_bad_config_key_shows_journal_and_retry_after_fix_succeeds(ready):
    from tui.tasks import engine as e
    from tui.tasks import profile as pr
    from tui.tasks import runner

    info = ready
    bad = "/etc/mysql/mariadb.conf.d/98-local.cnf"
    r = ssh(info, f"printf '[mysqld]\\nbogus_key_from_test = 1\\n' > {bad} && "
                  "systemctl stop mariadb")
    assert r.returncode == 0, r.stderr
    asked = []

    def decide(step, err):
        asked.append((step.id, err))
        if len(asked) == 1:
            assert ssh(info, f"rm -f {bad}").returncode == 0
            return e.Decision.RETRY
        return e.Decision.ABORT

    session = runner.open_session(pr.load(PROFILE))
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
    assert ssh(info, "systemctl is-active mariadb").stdout.strip() == "active"


def test_bundle_has_the_promised_files_and_no_secret(ready, tmp_path):
    import tarfile
    import urllib.parse

    info = ready
    r = ssh(info, f"printf '\\n[ldap]\\npassword = {UNKNOWN_SECRET}\\n' "
                  ">> /etc/keystone/keystone.conf")
    assert r.returncode == 0
    out = tmp_path / "support.tar.gz"
    t0 = time.monotonic()
    r = cli("bundle", PROFILE, "-o", str(out), timeout=180)
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
    logs = [n for n in names if n.startswith(f"local/logs/{PROFILE}-") and n.endswith(".log")]
    assert logs, sorted(names)
    assert "preflight.checks" in texts["local/plan.txt"]
    assert "prepare.packages" in texts["local/state.json"]
    assert "[database]" in texts["host/etc/keystone/keystone.conf"]
    assert "mysql+pymysql://keystone:********@" in texts["host/etc/keystone/keystone.conf"]
    assert "password = ********" in texts["host/etc/keystone/keystone.conf"]
    assert "bogus_key_from_test" in texts["host/journal/mariadb.txt"]  # the failure's journal
    assert "apache2" in texts["host/ss-ltnp.txt"]
    forms = [UNKNOWN_SECRET]
    for v in list(PASSWORDS.values()) + [SUDO_PASSWORD]:
        forms += [v, urllib.parse.quote(v, safe=""), urllib.parse.quote(v),
                  urllib.parse.quote_plus(v), v.replace("$", "$$"), json.dumps(v)[1:-1]]
    for name, body in texts.items():
        for f in forms:
            assert f not in body, f"a secret leaked into {name}"
    print(f"bundle: {len(names)} files in {took:.1f} s")


# --------------------------------------------------------------------------- explanation rules
# Each rule of tui/tasks/explain.py and of the services' RULES, provoked for real on the
# installed host (dpkg-lock, mirror and bad-config have their own tests above).  A case
# breaks the host the way its rule names, runs the affected steps in-process, and the
# ErrorInfo must carry that rule's words (and the real output or the log tail it names);
# then the host is restored and the same steps pass again.
# There is no rule for "dpkg was interrupted": the packages step runs `dpkg --configure -a`
# before any apt-get that would report it, so that state is repaired, never shown (seen by
# hand on a Debian 13 sandbox).

COOKIES = ("/var/lib/rabbitmq/.erlang.cookie", "/root/.erlang.cookie")


def _ks_bootstrap_as(password: str) -> str:
    return ("runuser -u keystone -- env OS_BOOTSTRAP_PASSWORD=" + shlex.quote(password)
            + " keystone-manage bootstrap --bootstrap-username admin "
              "--bootstrap-project-name admin --bootstrap-role-name admin >/dev/null 2>&1")


def _cookie_swap(restore: bool) -> str:
    if restore:
        return "; ".join(f"[ -e {c}.faults ] && mv -f {c}.faults {c}" for c in COOKIES) + "; true"
    return "; ".join(f"[ -e {c} ] && cp -p {c} {c}.faults && chmod 600 {c} && "
                     f"echo WRONGCOOKIEFROMTEST > {c} && chmod 400 {c}" for c in COOKIES) + "; true"


APT_PROXY_CONF = "/etc/apt/apt.conf.d/99zz-faults-proxy"
PROXY_407 = """
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], 0))
s.listen(8)
print(s.getsockname()[1], flush=True)
while True:
    c, _ = s.accept()
    c.settimeout(5)
    try:
        c.recv(65536)
        c.sendall(b"HTTP/1.1 407 Proxy Authentication Required\\r\\n"
                  b"Proxy-Authenticate: Basic realm=faults\\r\\n"
                  b"Content-Length: 0\\r\\nConnection: close\\r\\n\\r\\n")
    except OSError:
        pass
    c.close()
"""


@contextlib.contextmanager
def proxy_407(info):
    """A proxy that answers every request 407, on this machine's address of the sandbox link."""
    proc = subprocess.Popen([sys.executable, "-c", PROXY_407, info.host_address],
                            stdout=subprocess.PIPE, text=True)
    try:
        port = int(proc.stdout.readline())
        yield f"{info.host_address}:{port}"
    finally:
        proc.kill()
        proc.wait(10)


# admin's assignment of one role on the admin project, removed
_ADMIN_ROLE_SQL = ("DELETE a FROM assignment a JOIN role r ON r.id = a.role_id JOIN local_user l "
                   "ON l.user_id = a.actor_id JOIN project p ON p.id = a.target_id WHERE "
                   "l.name = 'admin' AND p.name = 'admin' AND r.name = '{role}' AND "
                   "a.type = 'UserProject'")
KEYSTONE_RESTART = ("systemctl restart apache2 && for i in $(seq 120); do [ \"$(curl -s -o "
                    "/dev/null -w '%{http_code}' http://127.0.0.1:5000/v3/)\" = 200 ] && break; "
                    "sleep 0.5; done")
GLANCE_RESTART = ("systemctl restart glance-api && for i in $(seq 120); do curl -s -o /dev/null "
                  "http://127.0.0.1:9292/ && break; sleep 0.5; done")
# rule: (host commands that break, host commands that restore, phase, first step, the words
# of the rule's explanation, a line the tail must hold)
EXPLAIN_CASES = {
    # mariadb.databases' check asks MariaDB over its unix socket: nothing listens
    "db-down": ("systemctl stop mariadb", "systemctl start mariadb",
                "mariadb", "mariadb.databases", "MariaDB does not answer", "2002"),
    # the node runs, but the CLI's Erlang cookie no longer matches: rabbitmqctl cannot reach it
    "rabbitmq-down": (_cookie_swap(False), _cookie_swap(True), "rabbitmq", "rabbitmq.user",
                      "RabbitMQ node is down or unreachable", "Erlang distribution failed"),
    # the admin password changed behind stack-tui's back: Keystone answers 401
    "keystone-401": (_ks_bootstrap_as("NotTheProfilesPassword1"), None, "keystone",
                     "keystone.projects", "Keystone refused the credentials (401)",
                     "Authorization failed"),
    # memcached masked: systemctl cannot start it
    "service-failed": ("systemctl stop memcached && systemctl mask -q memcached",
                       "systemctl unmask -q memcached && systemctl start memcached",
                       "memcached", "memcached.config", "a system service failed to start",
                       "masked"),
    # Keystone cannot reach its database (a wrong password, apache restarted): a 500 for
    # every login; the log tail below it is Keystone's own
    "server-error": ("cp -p /etc/keystone/keystone.conf /root/keystone.conf.faults && "
                     "sed -i -E 's#^(connection = mysql\\+pymysql://keystone:)[^@]*@#\\1wrongpw@#' "
                     f"/etc/keystone/keystone.conf && {KEYSTONE_RESTART}",
                     "mv -f /root/keystone.conf.faults /etc/keystone/keystone.conf && "
                     + KEYSTONE_RESTART,
                     "keystone", "keystone.projects", "the OpenStack API answered with a server "
                     "error", "Access denied"),
    # Glance's file store is not writable: a new image cannot be stored (another name,
    # set in-process, so the installed image stays as it is)
    "glance-store": ("stat -c %a /var/lib/glance/images > /root/gimg.faults && "
                     "chmod 000 /var/lib/glance/images",
                     "chmod \"$(cat /root/gimg.faults)\" /var/lib/glance/images && "
                     "rm -f /root/gimg.faults", "image", "image.upload",
                     "Glance could not write the image to its store", "glance"),
    # apt goes through an HTTP proxy (on this machine's end of the sandbox link) that
    # wants credentials: the packages step downloads a package (removed, its .deb too)
    "apt-proxy": (f"printf 'Acquire::http::Proxy \"http://{{proxy}}/\";\\n' > {APT_PROXY_CONF} && "
                  f"DEBIAN_FRONTEND=noninteractive apt-get remove -y -q {PACKAGE} >/dev/null && "
                  f"rm -f /var/cache/apt/archives/{PACKAGE}_*.deb",
                  f"rm -f {APT_PROXY_CONF}",
                  "prepare", "prepare.packages", "the HTTP proxy between the host and the package "
                  "mirror wants credentials", "407"),
    # glance-api's own [keystone_authtoken] password is wrong: it cannot validate tokens
    "glance-auth": ("cp -p /etc/glance/glance-api.conf /root/glance-api.conf.faults && "
                    "sed -i '/^\\[keystone_authtoken\\]/,/^\\[/ s/^password = .*/password = "
                    "wrongpw/' /etc/glance/glance-api.conf && grep -q '^password = wrongpw' "
                    f"/etc/glance/glance-api.conf && {GLANCE_RESTART}",
                    "mv -f /root/glance-api.conf.faults /etc/glance/glance-api.conf && "
                    + GLANCE_RESTART, "image", "image.upload",
                    "Glance could not validate tokens with Keystone", "Identity response"),
    # the keystone database user's password changed behind stack-tui's back, the schema
    # marker gone: keystone-manage db_sync fails saying nothing on the terminal; the 1045
    # is in the log it writes (keystone.log on Debian), which the step's tail must carry.
    # mariadb.databases puts the password back (run before the steps again, below).
    "db-denied": ("mysql -e \"ALTER USER 'keystone'@'localhost' IDENTIFIED BY 'wrongpw'; "
                  "ALTER USER 'keystone'@'%' IDENTIFIED BY 'wrongpw'\" && "
                  "rm -f /var/lib/stack-tui/keystone.db_sync", None,
                  "keystone", "keystone.db_sync", "the database refused the login",
                  "Access denied"),
    # another program took memcached's address and port while it was stopped: memcached
    # crash-loops, the holder answers the port; the probe names it as a foreign listener
    "port-in-use": ("systemctl stop memcached && (setsid python3 -c 'import socket, time; "
                    "s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1);"
                    " s.bind((\"{addr}\", 11211)); s.listen(); time.sleep(600)' "
                    "stack-tui-faults-port </dev/null >/dev/null 2>&1 &); for i in $(seq 50); do "
                    "ss -Hltn 'sport = :11211' | grep -q . && exit 0; sleep 0.1; done; exit 1",
                    "pkill -f '[s]tack-tui-faults-port'; true", "memcached", "memcached.config",
                    "another program already listens on a port this service needs",
                    "Address already in use"),
    # admin keeps only the member role on its project (memcached restarted: Keystone's cached
    # assignments go): its token is good, every admin action answers 403.  keystone.bootstrap
    # grants admin again on the second run (its check sees the 403 and does not pass).
    "keystone-403": (f"mysql keystone -e \"{_ADMIN_ROLE_SQL.format(role='admin')}; "
                     "INSERT IGNORE INTO assignment (type, actor_id, target_id, role_id, inherited) "
                     "SELECT 'UserProject', l.user_id, p.id, r.id, 0 FROM local_user l, project p, "
                     "role r WHERE l.name = 'admin' AND p.name = 'admin' AND r.name = 'member'\" "
                     "&& systemctl restart memcached",
                     f"mysql keystone -e \"{_ADMIN_ROLE_SQL.format(role='member')}\"",
                     "keystone", "keystone.projects", "Keystone refused the action (403)",
                     "ForbiddenAction"),
    # a package the repositories do not have (the platform's list patched in-process)
    "no-package": (None, None, "prepare", "prepare.packages",
                   "a package is not in the host's configured repositories",
                   "stack-tui-no-such-package"),
}


STORE_TEST_IMAGE = "faults-store-test"


def _run_phase(phase: str, first: str, decide, image_name: str | None = None):
    from tui.tasks import profile as pr
    from tui.tasks import runner

    prof = pr.load(PROFILE)
    if image_name:
        prof.image.name = image_name
    session = runner.open_session(prof)
    try:
        runner.connect_and_plan(session)
        return runner.make_engine(session, decide=decide, only_phase=phase,
                                  from_step=first).run()
    finally:
        session.close()


@pytest.mark.parametrize("rule", sorted(EXPLAIN_CASES))
def test_explanation_rule_on_the_real_failure(ready, rule, monkeypatch):
    from tui.tasks import engine as e

    info = ready
    brk, restore, phase, first, words, tail_word = EXPLAIN_CASES[rule]
    if rule == "no-package":
        from tui.tasks.services import PerPlatform, prepare

        base = prepare.BASE_PACKAGES
        monkeypatch.setattr(prepare, "BASE_PACKAGES", PerPlatform(
            deb=(*base.deb, "stack-tui-no-such-package"), rpm=base.rpm))
    image_name = STORE_TEST_IMAGE if rule == "glance-store" else None
    asked = []

    def decide(step, err):
        asked.append((step.id, err))
        return e.Decision.ABORT

    stack = contextlib.ExitStack()
    if rule == "apt-proxy":
        brk = brk.replace("{proxy}", stack.enter_context(proxy_407(info)))
    if rule == "port-in-use":
        brk = brk.replace("{addr}", info.address)
    try:
        if brk:
            r = ssh(info, brk, timeout=60)
            assert r.returncode == 0, r.stdout + r.stderr
        t0 = time.monotonic()
        result = _run_phase(phase, first, decide, image_name)
        took = time.monotonic() - t0
    finally:
        if restore:
            assert ssh(info, restore, timeout=60).returncode == 0
        monkeypatch.undo()
        stack.close()
        _delete_images(info, image_name)
    dump = json.dumps([(s, err.to_dict()) for s, err in asked], indent=1)
    print(f"{rule}: {dump}")
    assert not result.ok and len(asked) == 1, dump
    step, err = asked[0]
    assert words in err.why and err.hint, dump  # the rule's own words
    if tail_word:  # the real output (or the log tail the rule fetches), not a canned one
        assert any(tail_word in ln for ln in err.tail), dump
    if rule == "port-in-use":  # the holder is named: the probe saw it outside the unit
        assert "port 11211 is already in use by python3/" in err.what, dump
    print(f"{rule}: {step} failed in {took:.1f} s: {err.why}")
    # restored: the same steps now pass (the admin password is put back by keystone.bootstrap,
    # the database user's by mariadb.databases)
    if rule == "db-denied":
        assert _run_phase("mariadb", "mariadb.databases", lambda s, err: e.Decision.ABORT).ok
    try:
        again = _run_phase(phase, "keystone.bootstrap" if rule in ("keystone-401", "keystone-403")
                           else first,
                           lambda s, err: e.Decision.ABORT, image_name)
    finally:
        _delete_images(info, image_name)
    assert again.ok, rule


def _delete_images(info, name: str | None) -> None:
    """The images a case uploaded under its own name (none when it uses the profile's)."""
    if not name:
        return
    from glanceclient import Client

    sess = cloud.session(info.address, "admin", PASSWORDS["admin_password"], "admin")
    gc = Client("2", session=sess, endpoint=f"http://{info.address}:9292")
    for img in list(gc.images.list(filters={"name": name})):
        gc.images.delete(img["id"])
    assert not list(gc.images.list(filters={"name": name}))


# --------------------------------------------------------------------------- 5. host key (last)


@pytest.mark.one_release
def test_changed_host_key_refused_nothing_run(ready):
    """The host's SSH keys are regenerated after stack-tui knew them: `apply` (even with
    --accept-new-host-key) refuses loudly, exit 3; no login happened, the state is
    byte-identical.  Runs last: stack-tui can no longer reach this host afterwards."""
    from tui.tasks import hostkeys

    info = ready
    known = hostkeys.lookup(info.address, info.port)
    assert known
    r = ssh(info, "rm -f /etc/ssh/ssh_host_* && ssh-keygen -A >/dev/null && systemctl restart ssh")
    assert r.returncode == 0, r.stderr
    wait_ssh(info)
    st = state_file(info.address)
    before = st.read_bytes()
    n = logins(info)
    for extra in ([], ["--accept-new-host-key"]):
        r = cli("apply", PROFILE, "--yes", *extra)
        assert r.returncode == 3, r.stdout + r.stderr
        assert "HAS CHANGED" in r.stderr and "Nothing was run" in r.stderr, r.stderr
        assert "man-in-the-middle" in r.stderr and "ssh-keygen -R" in r.stderr
        assert r.duration < 10
        no_traceback(r)
    assert st.read_bytes() == before
    assert logins(info) == n + 1, "stack-tui logged in despite the changed host key"
    assert hostkeys.lookup(info.address, info.port).keys() == known.keys()
