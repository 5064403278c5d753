"""The SSH transport against a real booted sandbox host, over real SSH.

One sandbox for the module; every test opens its own Transport(s).  What the
host sees is checked with the plain ``ssh`` client (``sh()`` below), so the
transport is never its own witness.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from tests import cloud
from tui.tasks import hostkeys, paths
from tui.tasks.engine import Context, Decision, Engine, Phase, Plan, RunState, Step, Transcript
from tui.tasks.sandbox import add_user
from tui.tasks.redact import Redactor
from tui.tasks.transport import (
    AuthError,
    CommandCancelled,
    CommandFailed,
    CommandTimeout,
    ConnectError,
    ConnectionLost,
    HostKeyChanged,
    SudoError,
    Transport,
    UnknownHostKey,
)

pytestmark = pytest.mark.e2e

HOSTILE = "p'a\"s$s\\`w;o#r d ü$(touch /tmp/pwned)"
UNUSED_ADDRESS = "10.199.3.254"  # inside 10.199.0.0/16, never a sandbox (those are 10.199.0.x)


def secret_forms(value: str) -> list[str]:
    return [value, json.dumps(value)[1:-1], json.dumps(value, ensure_ascii=False)[1:-1],
            shlex.quote(value)]


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def box(sandbox_factory):
    return sandbox_factory(f"tr-{os.getpid()}")


@pytest.fixture(autouse=True)
def no_user_ssh_state(tmp_path, monkeypatch):
    """The user's ~/.ssh/known_hosts and ssh-agent must not decide any outcome here."""
    home = tmp_path / "user-home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    return home


@pytest.fixture
def make(box):
    """``make(**kw) -> Transport`` to the module's sandbox (root, its key, new key accepted)."""
    made: list[Transport] = []

    def _make(address=None, port=None, user="root", **kw):
        kw.setdefault("key_file", box.key_file)
        kw.setdefault("accept_new_host_key", True)
        t = Transport(address or box.address, port or box.port, user, **kw)
        made.append(t)
        return t

    yield _make
    for t in made:
        t.close()


@pytest.fixture
def fresh_home(tmp_path, monkeypatch):
    """A STACK_TUI_HOME whose known_hosts has never seen the sandbox."""
    h = tmp_path / "fresh-home"
    monkeypatch.setenv("STACK_TUI_HOME", str(h))
    assert not paths.known_hosts_file().exists()
    return h


def sh(box, command: str, user: str = "root", timeout: float = 30) -> subprocess.CompletedProcess:
    """Run ``command`` on the sandbox with the OpenSSH client (the test's own eyes)."""
    return subprocess.run(
        ["ssh", "-F", "/dev/null", "-i", box.key_file, "-p", str(box.port),
         "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-o", "StrictHostKeyChecking=no",
         "-o", "UserKnownHostsFile=/dev/null", "-o", "GlobalKnownHostsFile=/dev/null",
         "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=5", f"{user}@{box.address}", "--", command],
        capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def running(box, pattern: str) -> bool:
    """Is a process whose command line contains ``pattern`` running on the host?"""
    # [x]yz: the pgrep's own shell never matches itself.
    r = sh(box, f"pgrep -f -- {shlex.quote('[' + pattern[0] + ']' + pattern[1:])}")
    assert r.returncode in (0, 1), r.stderr
    return r.returncode == 0


def wait_until(pred, timeout: float, interval: float = 0.1) -> bool:
    return cloud.wait_until(pred, timeout, interval)


def host_fingerprint(box, kind: str = "ed25519") -> str:
    pub = Path(box.rootfs) / f"etc/ssh/ssh_host_{kind}_key.pub"
    out = subprocess.run(["ssh-keygen", "-lf", str(pub)], capture_output=True, text=True, check=True)
    return out.stdout.split()[1]


class Background:
    """Run ``fn`` in a thread; keep its result or exception."""

    def __init__(self, fn):
        self.result = self.error = None
        self.thread = threading.Thread(target=self._run, args=(fn,), daemon=True)
        self.thread.start()

    def _run(self, fn):
        try:
            self.result = fn()
        except BaseException as exc:  # noqa: BLE001
            self.error = exc

    def join(self, timeout: float = 60):
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "background command did not finish"
        return self


def capture_ps_while(box, job: Background, marker: str) -> list[str]:
    """``ps -eo args`` on the host, repeatedly, while ``job`` runs; at least one shows ``marker``."""
    captures = []
    while job.thread.is_alive():
        r = sh(box, "ps -eo args")
        assert r.returncode == 0, r.stderr
        captures.append(r.stdout)
    job.join()
    assert any(marker in c for c in captures), "the command was never seen running"
    return captures


# --------------------------------------------------------------------------- commands


def test_streamed_output_in_order_before_the_command_ends(make):
    t = make()
    got: list[tuple[float, str]] = []
    r = t.run("for i in 1 2 3; do echo out$i; echo err$i >&2; sleep 0.5; done; printf tail",
              on_line=lambda line: got.append((time.monotonic(), line)))
    end = time.monotonic()
    lines = [line for _, line in got]
    assert [x for x in lines if x.startswith("out")] == ["out1", "out2", "out3"]
    assert [x for x in lines if x.startswith("err")] == ["err1", "err2", "err3"]
    assert lines[-1] == "tail" and len(lines) == 7
    when = {line: ts for ts, line in got}
    assert end - when["out1"] > 1.0, "first line only arrived at the end"
    assert end - when["err1"] > 1.0, "first stderr line only arrived at the end"
    assert 0.3 < when["out2"] - when["out1"] < 1.5
    assert 0.3 < when["out3"] - when["out2"] < 1.5
    assert r.status == 0 and r.ok
    assert r.stdout == "out1\nout2\nout3\ntail"
    assert r.stderr == "err1\nerr2\nerr3\n"


def test_exit_codes_and_one_connection(make):
    t = make()
    assert t.run("true").status == 0
    r = t.run("echo before; exit 3", check=False)
    assert (r.status, r.stdout, r.ok) == (3, "before\n", False)
    r = t.run("no-such-command-xyz", check=False)
    assert r.status == 127 and "not found" in r.stderr
    r = t.run("cat", stdin="piped\ninput")
    assert r.stdout == "piped\ninput"
    assert t.connects == 1 and t.commands_run == 4


def test_check_raises_command_failed_with_redacted_tail(make):
    t = make()
    secret = "tail-Secret-7Qx"
    with pytest.raises(CommandFailed) as ei:
        t.run('echo "value=$PW"; echo "stderr $PW" >&2; exit 5', secrets={"PW": secret})
    exc = ei.value
    assert exc.status == 5
    assert "value=********" in exc.tail and "stderr ********" in exc.tail
    assert "exit status 5" in str(exc)
    assert secret not in str(exc) and not any(secret in line for line in exc.tail)


def test_timeout_kills_the_remote_command(make, box):
    t = make()
    t0 = time.monotonic()
    with pytest.raises(CommandTimeout) as ei:
        t.run("echo started; sleep 3171", timeout=1.5)
    took = time.monotonic() - t0
    assert 1.4 < took < 4, took
    assert "started" in ei.value.tail and "Timed out" in str(ei.value)
    assert wait_until(lambda: not running(box, "sleep 3171"), 5), "remote sleep survived the timeout"
    assert t.run("echo still usable").stdout == "still usable\n"


def test_cancel_event_stops_the_remote_command(make, box):
    t = make()
    cancel = threading.Event()
    threading.Timer(1.0, cancel.set).start()
    t0 = time.monotonic()
    with pytest.raises(CommandCancelled):
        t.run("echo started; sleep 3172", cancel=cancel)
    assert 0.9 < time.monotonic() - t0 < 3
    assert wait_until(lambda: not running(box, "sleep 3172"), 5), "remote sleep survived the cancel"


# --------------------------------------------------------------------------- secrets


def test_hostile_secret_arrives_intact_and_never_in_ps(make, box):
    assert sh(box, "rm -f /tmp/pwned").returncode == 0
    t = make()
    job = Background(lambda: t.run(
        'printf %s "$PW" | sha256sum; sleep 2.3171; printf %s "$PW" | wc -c',
        secrets={"PW": HOSTILE}))
    captures = capture_ps_while(box, job, "sleep 2.3171")
    assert job.error is None, job.error
    digest, _, count = job.result.stdout.split()
    assert digest == hashlib.sha256(HOSTILE.encode()).hexdigest()
    assert int(count) == len(HOSTILE.encode())
    for ps in captures:
        for form in secret_forms(HOSTILE) + ["o#r d", "touch /tmp/pwned"]:
            assert form not in ps
    assert sh(box, "test -e /tmp/pwned").returncode == 1, "the secret was executed by a shell"


def test_secret_not_in_transcript_or_state(make, tmp_path):
    red = Redactor([HOSTILE])
    t = make(redactor=red)
    state = RunState(tmp_path / "state.json", red)
    log = tmp_path / "run.log"
    transcript = Transcript(log, red)

    def fact(c):
        c.facts["echoed"] = c.sh('printf %s "$PW"', secrets={"PW": HOSTILE}, quiet=True).stdout

    def leak(c):
        c.sh('echo "out: $PW"; echo "err: $PW" >&2; exit 4', secrets={"PW": HOSTILE})

    plan = Plan([Phase("p", "P", [Step("p.fact", "fact", run=fact), Step("p.leak", "leak", run=leak)])])
    eng = Engine(plan, Context(t, None, None, red, state), listeners=[transcript],
                 decide=lambda s, e: Decision.ABORT)
    result = eng.run()
    transcript.close()
    assert result.aborted
    text, raw_state = log.read_text(), (tmp_path / "state.json").read_text()
    for form in secret_forms(HOSTILE):
        assert form not in text
        assert form not in raw_state
    assert "out: ********" in text and "err: ********" in text   # the lines did reach the log
    data = json.loads(raw_state)
    assert data["facts"]["echoed"] == "********"
    assert "out: ********" in data["steps"]["p.leak"]["error"]["tail"]


# --------------------------------------------------------------------------- sudo


@pytest.fixture(scope="module")
def deployer(box):
    add_user(box, "deployer", HOSTILE)
    return "deployer"


def test_sudo_as_non_root_user(make, box, deployer):
    t = make(user=deployer, sudo_password=HOSTILE)
    assert t.run("id -un", sudo=False).stdout.strip() == "deployer"
    assert t.run("id -u").stdout.strip() == "0"
    assert not t.is_root
    # The sudo password and the secrets share stdin: each arrives intact, in order.
    r = t.run('printf %s "$PW" | sha256sum; cat', secrets={"PW": HOSTILE}, stdin="after\n")
    assert r.stdout.split()[0] == hashlib.sha256(HOSTILE.encode()).hexdigest()
    assert r.stdout.endswith("after\n")
    t.write_file("/etc/stack-tui-sudo-test.conf", "x = 1\n", mode=0o640, group=deployer)
    r = sh(box, "stat -c '%a %U %G' /etc/stack-tui-sudo-test.conf; cat /etc/stack-tui-sudo-test.conf")
    assert r.stdout == "640 root deployer\nx = 1\n"


def test_sudo_password_never_in_ps(make, box, deployer):
    t = make(user=deployer, sudo_password=HOSTILE)
    t.connect()
    job = Background(lambda: t.run("id -u; sleep 2.3172"))
    captures = capture_ps_while(box, job, "sleep 2.3172")
    assert job.error is None and job.result.stdout.strip() == "0"
    assert any("sudo" in c and "sleep 2.3172" in c for c in captures)
    for ps in captures:
        for form in secret_forms(HOSTILE) + ["o#r d"]:
            assert form not in ps


def test_timeout_under_sudo_kills_the_remote_command(make, box, deployer):
    t = make(user=deployer, sudo_password=HOSTILE)
    with pytest.raises(CommandTimeout):
        t.run("echo started; sleep 3176", timeout=1.5)
    assert wait_until(lambda: not running(box, "sleep 3176"), 5), "sudo'd sleep survived the timeout"


def test_wrong_sudo_password(make, deployer):
    wrong = "Not-The-Pw-9$'x"
    t = make(user=deployer, sudo_password=wrong)
    t0 = time.monotonic()
    with pytest.raises(SudoError) as ei:
        t.connect()
    assert time.monotonic() - t0 < 10
    msg = str(ei.value)
    assert "sudo" in msg and "wrong sudo password" in msg and wrong not in msg
    # The refused connection must not be used for unprivileged commands afterwards.
    with pytest.raises(SudoError):
        t.run("id -u")


def test_sudo_without_password_and_user_without_sudo(make, box):
    root = make()
    add_user(box, "nopw", "Nopw-Passw0rd-x")
    root.write_file("/etc/sudoers.d/nopw", "nopw ALL=(ALL) NOPASSWD: ALL\n", mode=0o440)
    t = make(user="nopw")                       # no sudo password needed, none given
    assert t.run("id -u").stdout.strip() == "0"
    assert t.run("id -un", sudo=False).stdout.strip() == "nopw"
    with pytest.raises(CommandTimeout):
        t.run("sleep 3178", timeout=1)
    assert wait_until(lambda: not running(box, "sleep 3178"), 5)

    add_user(box, "plain", "Plain-Passw0rd-x", sudo=False)
    t = make(user="plain", sudo_password="Plain-Passw0rd-x")
    with pytest.raises(SudoError) as ei:
        t.connect()
    assert "may not use sudo" in str(ei.value) and "Plain-Passw0rd-x" not in str(ei.value)
    assert not t.connected


def test_missing_sudo_password(make, deployer):
    t = make(user=deployer)
    with pytest.raises(SudoError, match="needs a password for sudo"):
        t.connect()


# --------------------------------------------------------------------------- files


def _poll_script(dest: str, stop: str) -> str:
    q = shlex.quote(dest)
    return (
        f"rm -f {stop}; {{ "
        f"(while [ ! -e {stop} ]; do stat -c 'S %s' {q} 2>/dev/null || echo MISSING; done) & "
        f"(first=1; while [ ! -e {stop} ]; do "
        f"  {{ sha256sum < {q} || echo HMISSING; }} 2>/dev/null | sed 's/^/H /; s/ .-$//'; "
        f"  if [ -n \"$first\" ]; then echo ready >&2; first=; fi; done) & "
        f"wait; }} | sort | uniq -c"
    )


def watch_while_replacing(make, box, dest: str, replace) -> tuple[set, set]:
    """Poll ``dest`` (sizes and hashes, from a second connection) while ``replace()`` runs."""
    watcher = make()
    stop = f"/tmp/stop-poll-{os.getpid()}"
    ready = threading.Event()
    job = Background(lambda: watcher.run(
        _poll_script(dest, stop), timeout=120,
        on_line=lambda line: line == "ready" and ready.set()))
    assert ready.wait(20), "poller did not start"
    replace()
    time.sleep(0.5)
    assert sh(box, f"touch {stop}").returncode == 0
    job.join()
    assert job.error is None, job.error
    sizes, hashes = set(), set()
    for line in job.result.stdout.splitlines():
        _, value = line.split(None, 1)
        (sizes if value.startswith(("S", "MISSING")) else hashes).add(value)
    return sizes, hashes


@pytest.fixture
def files(box, make):
    t = make()
    t.run("rm -rf /srv/atomic && mkdir -p /srv/atomic")
    return t


def test_upload_is_atomic_with_mode_and_owner(files, make, box, tmp_path):
    t = files
    dest = "/srv/atomic/blob.bin"
    old = b"old content\n" * 1000
    t.write_file(dest, old)
    new = os.urandom(20 * 1024 * 1024)
    local = tmp_path / "blob.bin"
    local.write_bytes(new)
    progress: list[tuple[int, int]] = []
    sizes, hashes = watch_while_replacing(
        make, box, dest, lambda: t.upload(local, dest, mode=0o640, owner="nobody", group="nogroup",
                                     progress=lambda a, b: progress.append((a, b))))
    h_old, h_new = hashlib.sha256(old).hexdigest(), hashlib.sha256(new).hexdigest()
    assert sizes == {f"S {len(old)}", f"S {len(new)}"}, sizes
    assert hashes == {f"H {h_old}", f"H {h_new}"}, hashes
    assert progress and progress[-1] == (len(new), len(new))
    r = sh(box, f"stat -c '%a %U %G %s' {dest}; sha256sum < {dest}; ls -A /srv/atomic; "
                "ls -A /tmp | grep -c stack-tui-upload")
    assert r.stdout.split("\n")[:3] == [f"640 nobody nogroup {len(new)}", f"{h_new}  -", "blob.bin"]
    assert r.stdout.split("\n")[3] == "0", "temporary upload file left behind"


def test_write_file_is_atomic_with_mode_and_owner(files, make, box):
    t = files
    dest = "/srv/atomic/conf.txt"
    old = "a = 1\n" * 100
    new = "".join(f"line {i} with some text ü\n" for i in range(300_000))
    t.write_file(dest, old)
    sizes, hashes = watch_while_replacing(
        make, box, dest, lambda: t.write_file(dest, new, mode=0o600, owner="daemon", group="daemon"))
    assert sizes == {f"S {len(old.encode())}", f"S {len(new.encode())}"}, sizes
    assert hashes == {f"H {hashlib.sha256(old.encode()).hexdigest()}",
                      f"H {hashlib.sha256(new.encode()).hexdigest()}"}, hashes
    r = sh(box, f"stat -c '%a %U %G' {dest}; ls -A /srv/atomic")
    assert r.stdout == "600 daemon daemon\nconf.txt\n"
    assert t.read_file(dest) == new
    assert t.read_file("/srv/atomic/nope") is None


def test_download_round_trip(files, tmp_path):
    t = files
    payload = os.urandom(3 * 1024 * 1024) + "text ü\r\n\0".encode()
    local = tmp_path / "up.bin"
    local.write_bytes(payload)
    t.upload(local, "/srv/atomic/round.bin", mode=0o600)
    back = tmp_path / "sub" / "back.bin"
    t.download("/srv/atomic/round.bin", back)
    assert back.read_bytes() == payload
    assert back.stat().st_mode & 0o777 == 0o600
    with pytest.raises(CommandFailed):
        t.download("/srv/atomic/missing.bin", tmp_path / "missing.bin")


# --------------------------------------------------------------------------- forwarding


def banner(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.settimeout(10)
        return s.recv(256)


def test_forward_reaches_sshd_and_survives_reconnect(make):
    t = make()
    t.connect()
    port = t.forward("127.0.0.1", 22)
    assert banner(port).startswith(b"SSH-2.0-OpenSSH")
    assert banner(port).startswith(b"SSH-2.0-")      # more than one connection through it
    t.reconnect()
    assert t.connects == 2
    assert t.forward("127.0.0.1", 22) == port
    assert banner(port).startswith(b"SSH-2.0-OpenSSH")
    t.close()
    with pytest.raises(OSError):
        banner(port)


# --------------------------------------------------------------------------- host keys


def test_unknown_host_key_refused_without_consent(make, box, fresh_home):
    marker = f"/root/hostkey-marker-{os.getpid()}"
    fp = host_fingerprint(box)
    assert fp.startswith("SHA256:")
    t = make(accept_new_host_key=False)
    with pytest.raises(UnknownHostKey) as ei:
        t.run(f"touch {marker}")
    exc = ei.value
    assert exc.fingerprint == fp and exc.key_type == "ssh-ed25519"
    assert fp in str(exc) and "--accept-new-host-key" in str(exc)
    assert t.commands_run == 0 and not t.connected
    assert not hostkeys.lookup(box.address, box.port)
    assert sh(box, f"test -e {marker}").returncode == 1, "a command ran despite the unknown key"

    t2 = make(accept_new_host_key=True)
    assert t2.run("echo hi").stdout == "hi\n"
    known = hostkeys.lookup(box.address, box.port)
    assert list(known) == ["ssh-ed25519"] and hostkeys.fingerprint(known["ssh-ed25519"]) == fp
    assert paths.known_hosts_file().stat().st_mode & 0o777 == 0o600
    # Known now: no flag needed any more.
    make(accept_new_host_key=False).connect()


def test_confirm_host_key_callback(make, box, fresh_home):
    fp = host_fingerprint(box)
    asked = []
    t = make(accept_new_host_key=False, confirm_host_key=lambda *a: asked.append(a) or False)
    with pytest.raises(UnknownHostKey):
        t.connect()
    assert asked == [(box.address, "ssh-ed25519", fp)]
    assert not hostkeys.lookup(box.address, box.port)

    t = make(accept_new_host_key=False, confirm_host_key=lambda *a: asked.append(a) or True)
    assert t.run("echo ok").stdout == "ok\n"
    assert len(asked) == 2
    assert hostkeys.fingerprint(hostkeys.lookup(box.address, box.port)["ssh-ed25519"]) == fp


def _other_key_line(tmp_path, address: str, kind: str = "ed25519") -> str:
    key = tmp_path / f"other-{kind}"
    subprocess.run(["ssh-keygen", "-q", "-t", kind, "-N", "", "-f", str(key)], check=True)
    ktype, blob = (tmp_path / f"other-{kind}.pub").read_text().split()[:2]
    return f"{address} {ktype} {blob}\n"


@pytest.mark.parametrize("where,kind", [("ours", "ed25519"), ("ours", "rsa"), ("user", "ed25519")])
def test_changed_host_key_refused(make, box, fresh_home, no_user_ssh_state, tmp_path, where, kind):
    marker = f"/root/changed-marker-{os.getpid()}"
    kh = paths.known_hosts_file() if where == "ours" else no_user_ssh_state / ".ssh/known_hosts"
    kh.parent.mkdir(parents=True, exist_ok=True)
    kh.write_text(_other_key_line(tmp_path, box.address, kind))
    before = kh.read_bytes()
    asked = []
    t = make(accept_new_host_key=True, confirm_host_key=lambda *a: asked.append(a) or True)
    with pytest.raises(HostKeyChanged) as ei:
        t.run(f"touch {marker}")
    msg = str(ei.value)
    assert "HAS CHANGED" in msg and "Nothing was run" in msg
    assert ei.value.fingerprint == host_fingerprint(box, kind)
    assert asked == []                       # a changed key is never offered for trust
    assert kh.read_bytes() == before
    assert t.commands_run == 0 and not t.connected
    assert sh(box, f"test -e {marker}").returncode == 1


def test_regenerated_host_keys_refused(make, box, fresh_home, stack_home, monkeypatch):
    """Real key change on the server: the next connection is refused, even with the flag."""
    marker = f"/root/regen-marker-{os.getpid()}"
    old_fp = host_fingerprint(box)
    t = make()
    t.connect()
    try:
        t.run("rm -f /etc/ssh/ssh_host_* && ssh-keygen -A >/dev/null && systemctl restart ssh")
        new_fp = host_fingerprint(box)
        assert new_fp != old_fp
        t2 = make(accept_new_host_key=True)
        with pytest.raises(HostKeyChanged) as ei:
            t2.run(f"touch {marker}")
        assert ei.value.fingerprint == new_fp and old_fp in str(ei.value)
        assert t2.commands_run == 0
        assert sh(box, f"test -e {marker}").returncode == 1
        assert hostkeys.fingerprint(hostkeys.lookup(box.address, box.port)["ssh-ed25519"]) == old_fp
        # The connection made before the change is unaffected.
        assert t.run("echo same").stdout == "same\n"
    finally:
        # The session's own known_hosts still has the old key: forget it for later tests.
        monkeypatch.setenv("STACK_TUI_HOME", str(stack_home))
        hostkeys.forget(box.address, box.port)


# --------------------------------------------------------------------------- errors


def test_connection_errors_are_distinct_and_fast(make, box, tmp_path):
    other = tmp_path / "unrelated_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    results = {}
    for name, kw in {
        "wrong key": dict(key_file=str(other)),
        "closed port": dict(port=2222),
        "unreachable": dict(address=UNUSED_ADDRESS, connect_timeout=5),
    }.items():
        t = make(**kw)
        t0 = time.monotonic()
        with pytest.raises(Exception) as ei:
            t.run("true")
        results[name] = (ei.value, time.monotonic() - t0)
        assert results[name][1] < 10, (name, results[name])
        assert t.commands_run == 0

    auth, _ = results["wrong key"]
    assert type(auth) is AuthError and "refused" in str(auth) and "key" in str(auth)
    closed, took = results["closed port"]
    assert type(closed) is ConnectError and "refused" in str(closed) and ":2222" in str(closed)
    assert took < 3
    # nothing to offer at all: no key file, no agent, an empty ~/.ssh (the fixture's HOME)
    t = make(key_file=None)
    with pytest.raises(AuthError) as ei:
        t.run("true")
    assert "No SSH key or password was offered" in str(ei.value)
    assert "handshake" not in str(ei.value) and "key file" in str(ei.value)
    unreach, took = results["unreachable"]
    assert type(unreach) is ConnectError and UNUSED_ADDRESS in str(unreach)
    assert "refused" not in str(unreach)
    assert len({str(e) for e, _ in results.values()}) == 3


# --------------------------------------------------------------------------- dropped connection

def kill_session_script(marker: str) -> str:
    """Shell: SIGKILL the sshd process serving the connection that runs ``marker``."""
    pattern = shlex.quote(f"[{marker[0]}]{marker[1:]}")
    return f"""
p=$(pgrep -f -- {pattern} | head -n1)
[ -n "$p" ] || exit 9
while [ "$p" -gt 1 ]; do
  case "$(cat /proc/$p/comm)" in sshd*) break;; esac
  p=$(ps -o ppid= -p "$p" | tr -d ' ')
done
[ "$p" -gt 1 ] || exit 8
ps -o args= -p "$p"
kill -9 "$p"
"""


def end_leftovers(box, marker: str) -> None:
    """The killed connection's command lives on (orphaned): end its session."""
    pattern = shlex.quote(f"[{marker[0]}]{marker[1:]}")
    sh(box, f"for p in $(pgrep -f -- {pattern}); do pkill -KILL -s $(ps -o sid= -p $p); done")


def test_dropped_connection_raises_connection_lost_then_reconnects(make, box):
    t = make()
    killer = make()
    t.connect()
    job = Background(lambda: t.run("echo started; sleep 3174", timeout=60))
    assert wait_until(lambda: running(box, "sleep 3174"), 10)
    try:
        r = killer.run(kill_session_script("sleep 3174"))
        # sshd-session on OpenSSH >= 9.8 (Debian 13), sshd before
        assert re.search(r"sshd(-session)?: root@notty", r.stdout), r.stdout
        job.join(20)
    finally:
        end_leftovers(box, "sleep 3174")
    assert isinstance(job.error, ConnectionLost), job.error
    assert "started" in job.error.tail
    assert not t.connected
    t.reconnect(30)
    assert t.run("echo back").stdout == "back\n"
    assert t.connects == 2
    assert killer.run("echo killer fine").stdout == "killer fine\n"


def test_engine_retries_a_step_after_the_connection_dropped(make, box):
    """The interrupted step is retried on a fresh connection, without asking anyone."""
    t = make()
    killer = make()
    t.connect()
    attempts: list[int] = []
    asked: list = []

    def step(c):
        attempts.append(t.connects)
        if len(attempts) == 1:
            c.sh("sleep 3175", timeout=60)
        else:
            assert c.sh("echo second attempt").stdout == "second attempt\n"

    def kill_when_running():
        assert wait_until(lambda: running(box, "sleep 3175"), 10)
        killer.run(kill_session_script("sleep 3175"))

    red = Redactor()
    events: list = []
    state = RunState(Path(box.dir) / f"engine-state-{os.getpid()}.json", red)
    eng = Engine(Plan([Phase("p", "P", [Step("p.long", "long", run=step)])]),
                 Context(t, None, None, red, state), listeners=[events.append],
                 decide=lambda s, e: asked.append(e) or Decision.ABORT)
    killer_job = Background(kill_when_running)
    try:
        result = eng.run()
        killer_job.join()
    finally:
        end_leftovers(box, "sleep 3175")
    assert killer_job.error is None, killer_job.error
    assert result.ok and asked == []
    assert attempts == [1, 2]                 # second attempt on a new connection
    assert any("reconnecting" in getattr(ev, "text", "") for ev in events)
