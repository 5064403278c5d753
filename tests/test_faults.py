"""Fault handling without a host: the packages step's words for an unreachable mirror,
the order it waits for another package manager, and the bound on a lost host.

The transport is a stand-in that answers each remote command from a table (what the
real apt prints in those situations, copied from runs against a sandbox host), so
what the step *does* with the answer is tested exactly.  The e2e half, on real
hosts, is tests/e2e/test_faults_e2e.py.
"""

from __future__ import annotations

import threading

import pytest

from tui.tasks import deploy
from tui.tasks.platforms import PLATFORMS
from tui.tasks.services import all_packages, prepare
from tui.tasks import engine as e
from tui.tasks.profile import Profile
from tui.tasks.redact import Redactor
from tui.tasks.transport import CommandFailed, Result, Transport

# What bookworm's apt prints with the outbound network refused / blackholed.
UPDATE_NO_NETWORK = """\
Err:1 http://deb.debian.org/debian bookworm InRelease
  Temporary failure resolving 'deb.debian.org'
Err:2 http://deb.debian.org/debian bookworm-updates InRelease
  Temporary failure resolving 'deb.debian.org'
Reading package lists...
W: Failed to fetch http://deb.debian.org/debian/dists/bookworm/InRelease  Temporary failure resolving 'deb.debian.org'
W: Failed to fetch http://deb.debian.org/debian/dists/bookworm-updates/InRelease  Temporary failure resolving 'deb.debian.org'
W: Some index files failed to download. They have been ignored, or old ones used instead."""
UPDATE_OK = """\
Hit:1 http://deb.debian.org/debian bookworm InRelease
Get:2 http://deb.debian.org/debian bookworm-updates InRelease [55.4 kB]
Reading package lists..."""
INSTALL_NO_NETWORK = """\
Reading package lists...
Err:1 http://deb.debian.org/debian bookworm/main amd64 memcached amd64 1.6.18-1
  Could not connect to deb.debian.org:80 (203.0.113.80). - connect (111: Connection refused)
E: Failed to fetch http://deb.debian.org/debian/pool/main/m/memcached/memcached_1.6.18-1_amd64.deb  Could not connect to deb.debian.org:80 (203.0.113.80). - connect (111: Connection refused)
E: Unable to fetch some archives, maybe run apt-get update or try with --fix-missing?"""
INSTALL_UNKNOWN = """\
Reading package lists...
E: Unable to locate package no-such-package"""


class FakeTransport:
    """Answers each command from ``table`` ({substring: (status, output)}), records all."""

    def __init__(self, table: dict[str, tuple[int, str]]):
        self.table = table
        self.commands: list[str] = []

    def run(self, command, *, stdin=None, secrets=None, sudo=True, timeout=None, on_line=None,
            check=True, cancel=None):
        self.commands.append(command)
        status, out = next((v for k, v in self.table.items() if k in command), (0, ""))
        if callable(out):
            out = out()
        if isinstance(out, tuple):  # a callable may answer (status, output)
            status, out = out
        lines = out.splitlines()
        for ln in lines:
            if on_line is not None:
                on_line(ln)
        if check and status != 0:
            raise CommandFailed(command, status, lines)
        return Result(status, out, "", lines, out.encode())

    def write_file(self, path, content, **kw):
        self.commands.append(f"write_file {path}")


def make_ctx(tmp_path, table):
    t = FakeTransport(table)
    ctx = e.Context(t, Profile(name="t"), {}, Redactor(), e.RunState(tmp_path / "s.json"))
    ctx.facts["platform"] = "debian-12"
    return ctx, t


def test_update_that_cannot_fetch_is_a_plain_transient_error(tmp_path):
    """apt-get update exits 0 when no index could be fetched: still a clear error."""
    ctx, _ = make_ctx(tmp_path, {"apt-get update": (0, UPDATE_NO_NETWORK)})
    with pytest.raises(e.StepError) as ei:
        prepare._apt(ctx, "apt-get update -q -o Acquire::Retries=0")
    err = ei.value
    assert err.what == "Cannot reach the package repository from the host."
    assert "deb.debian.org" in err.why and "Temporary failure resolving" in err.why
    assert "DNS" in err.hint and "Retry" in err.hint
    assert err.transient is True
    assert any("Failed to fetch" in t for t in err.tail)


def test_install_that_cannot_download_is_the_same_error(tmp_path):
    ctx, _ = make_ctx(tmp_path, {"apt-get install": (100, INSTALL_NO_NETWORK)})
    with pytest.raises(e.StepError) as ei:
        prepare._apt(ctx, "apt-get install -y memcached")
    assert ei.value.what == "Cannot reach the package repository from the host."
    assert "Connection refused" in ei.value.why and ei.value.transient


def test_other_apt_failures_are_not_called_unreachable(tmp_path):
    ctx, _ = make_ctx(tmp_path, {"apt-get install": (100, INSTALL_UNKNOWN)})
    with pytest.raises(e.StepError) as ei:
        prepare._apt(ctx, "apt-get install -y no-such-package")
    assert ei.value.what.startswith("Package command failed (exit 100)")
    assert not ei.value.transient


def test_a_good_update_passes(tmp_path):
    ctx, _ = make_ctx(tmp_path, {"apt-get update": (0, UPDATE_OK)})
    prepare._apt(ctx, "apt-get update -q")


def test_explained_error_keeps_the_plain_words_and_stays_transient(tmp_path):
    ctx, _ = make_ctx(tmp_path, {"apt-get update": (0, UPDATE_NO_NETWORK)})
    with pytest.raises(e.StepError) as ei:
        prepare._apt(ctx, "apt-get update -q")
    info = e._explain(ei.value, Redactor())
    assert info.what == "Cannot reach the package repository from the host."
    assert "deb.debian.org" in info.why and info.kind == "transient"


def _packages_table(state):
    """dpkg-query says nothing is installed until the install command ran."""
    def query():
        if state["installed"]:
            return "\n".join(f"{p} installed" for p in all_packages(PLATFORMS["debian-12"]))
        return ""

    def install():
        state["installed"] = True
        return "ok"

    return {
        "dpkg-query": (0, query),
        "apt-get install": (0, install),
        "find /var/lib/apt/lists": (0, lambda: "fresh"),
    }


def test_packages_step_waits_for_the_lock_before_debconf(tmp_path):
    """After a killed run, its apt-get still holds dpkg's lock and debconf's database:
    the step must wait for the lock before debconf-set-selections (it failed there)."""
    state = {"installed": False}
    ctx, t = make_ctx(tmp_path, _packages_table(state))
    prepare._packages_run(ctx)
    cmds = t.commands
    debconf = next(i for i, c in enumerate(cmds) if c.startswith("debconf-set-selections"))
    first_wait = next(i for i, c in enumerate(cmds) if "stk_lock_holders" in c or "fuser" in c)
    assert first_wait < debconf
    install = next(i for i, c in enumerate(cmds) if "apt-get install" in c)
    assert debconf < install


def test_packages_step_with_nothing_missing_touches_neither_lock_nor_debconf(tmp_path):
    state = {"installed": True}
    ctx, t = make_ctx(tmp_path, _packages_table(state))
    prepare._packages_run(ctx)
    assert not any("debconf-set-selections" in c or "apt-get" in c for c in t.commands)


def test_unreachable_mirror_in_the_engine_bounded_retries_then_failed(tmp_path, monkeypatch):
    """The packages step (retries=3) against an unreachable mirror: 3 automatic retries
    with 2/4/8 s backoff, then FAILED with the plain message; nothing else runs."""
    waits: list[float] = []
    orig_wait = threading.Event.wait

    def fast_wait(self, timeout=None):
        waits.append(timeout)
        return orig_wait(self, 0.001)

    monkeypatch.setattr(threading.Event, "wait", fast_wait)
    table = {"dpkg-query": (0, ""), "find /var/lib/apt/lists": (0, ""),
             "apt-get update": (0, UPDATE_NO_NETWORK)}
    ctx, t = make_ctx(tmp_path, table)
    plan = deploy.build_plan(ctx.profile, "debian-12")
    step = plan.find("prepare.packages")
    assert step.retries == 3
    events: list = []
    eng = e.Engine(e.Plan([e.Phase("prepare", "P", [step])]), ctx, listeners=[events.append])
    res = eng.run()
    assert not res.ok
    started = [ev.attempt for ev in events if isinstance(ev, e.StepStarted)]
    assert started == [1, 2, 3, 4]
    assert [w for w in waits if w in (2, 4, 8)] == [2, 4, 8]
    fin = [ev for ev in events if isinstance(ev, e.StepFinished)]
    assert [f.status for f in fin] == [e.Status.FAILED]
    assert fin[0].error.what == "Cannot reach the package repository from the host."
    assert not any("apt-get install" in c for c in t.commands)
    assert sum("apt-get update" in c for c in t.commands) == 4


def test_a_lost_host_is_reported_within_90_seconds_by_default():
    """Silence probe + keepalive answer + reconnect deadline: the bound the e2e suite
    measures (host gone for good mid-step) stays under 90 s with the defaults."""
    import inspect

    t = Transport("192.0.2.1")
    deadline = inspect.signature(e.Engine).parameters["reconnect_deadline"].default
    assert t.idle_probe + t.connect_timeout + deadline <= 80


class _AcceptAndClose:
    """A loopback TCP listener that accepts every connection and closes it at once: what a
    host that went away looks like behind a middlebox that answers every port (the e2e
    'host gone' fault met exactly this, and paramiko raised a bare EOFError)."""

    def __init__(self):
        import socket

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self._t = threading.Thread(target=self._serve, daemon=True)
        self._t.start()

    def _serve(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            c.close()

    def close(self):
        self.sock.close()


def test_connection_closed_before_the_banner_is_a_connect_error(tmp_path, monkeypatch):
    from tui.tasks.transport import ConnectError, ConnectionLost

    monkeypatch.setenv("HOME", str(tmp_path))
    srv = _AcceptAndClose()
    try:
        t = Transport("127.0.0.1", port=srv.port, key_file=None, connect_timeout=3)
        with pytest.raises(ConnectError) as ei:
            t.connect()
        assert "closed before the SSH handshake" in str(ei.value)
        # reconnect keeps trying (a closing host may come back) until its deadline, then
        # says so in the words the CLI shows
        with pytest.raises(ConnectionLost) as ei:
            t.reconnect(2)
        assert "could not re-establish" in str(ei.value) and "127.0.0.1" in str(ei.value)
        assert srv.accepted >= 3
    finally:
        srv.close()


def test_an_unexpected_error_while_reconnecting_is_explained_not_raised(tmp_path):
    """Whatever reconnect raises, the step ends FAILED with an explanation (the CLI
    printed a bare traceback when paramiko's EOFError escaped reconnect)."""
    from tui.tasks.transport import ConnectionLost

    class Lost(FakeTransport):
        def run(self, command, **kw):
            raise ConnectionLost("The server stopped answering.", "no answer", "")

        def reconnect(self, deadline):
            raise EOFError()

    t = Lost({})
    ctx = e.Context(t, Profile(name="t"), {}, Redactor(), e.RunState(tmp_path / "s.json"))
    plan = e.Plan([e.Phase("p", "P", [e.Step("p.s", "S", run=lambda c: c.sh("true"))])])
    events = []
    eng = e.Engine(plan, ctx, listeners=[events.append], decide=lambda s, i: e.Decision.ABORT)
    result = eng.run()
    assert not result.ok
    fin = [ev for ev in events if isinstance(ev, e.StepFinished)]
    assert [f.status for f in fin] == [e.Status.FAILED]
    assert "EOFError" in fin[0].error.what and "bug" in fin[0].error.why


def test_a_bare_eoferror_from_paramiko_is_a_connect_error(tmp_path, monkeypatch):
    """CI's 'host gone' run: paramiko raised EOFError out of its banner write (the peer
    reset the connection before paramiko had sent its version).  That race cannot be
    provoked reliably on loopback, so paramiko's connect raises it here as it did there."""
    import paramiko

    from tui.tasks.transport import ConnectError

    monkeypatch.setenv("HOME", str(tmp_path))

    def eof(self, *a, **kw):
        raise EOFError()

    monkeypatch.setattr(paramiko.SSHClient, "connect", eof)
    t = Transport("127.0.0.1", port=1, key_file=None, connect_timeout=3)
    with pytest.raises(ConnectError) as ei:
        t.connect()
    assert "closed before the SSH handshake" in str(ei.value)


# What bookworm's apt printed when openstack-dashboard's postinst failed (a real run).
INSTALL_POSTINST_FAILED = """\
Setting up neutron-server (2:21.0.0-7+deb12u1) ...
Errors were encountered while processing:
 openstack-dashboard
 openstack-dashboard-apache
E: Sub-process /usr/bin/dpkg returned an error code (1)"""


def _install_failing_in_a_setup_script_once():
    """(state, apt-get install's fake): the first install stops in a setup script."""
    state = {"installed": False, "installs": 0, "configures": 0}

    def install():
        state["installs"] += 1
        if state["installs"] == 1:
            return 100, INSTALL_POSTINST_FAILED
        state["installed"] = True
        return 0, "0 upgraded, 0 newly installed"

    return state, install


def test_a_failed_setup_script_is_configured_once_more_then_the_install_completes(tmp_path):
    state, install = _install_failing_in_a_setup_script_once()

    def configure():
        state["configures"] += 1
        return ""

    table = _packages_table(state)
    table["apt-get install"] = (0, install)
    table["dpkg --configure -a"] = (0, configure)
    ctx, t = make_ctx(tmp_path, table)
    outputs = []
    ctx.output = outputs.append
    prepare._packages_run(ctx)
    assert state["installs"] == 2 and state["configures"] == 2  # before, and once more
    assert any("openstack-dashboard, openstack-dashboard-apache failed; configuring once more"
               in o for o in outputs), outputs


@pytest.mark.parametrize("repairs_failing, ok", [(1, True), (2, False)])
def test_a_setup_script_failing_again_is_configured_one_last_time(tmp_path, repairs_failing,
                                                                  ok):
    state, install = _install_failing_in_a_setup_script_once()

    def configure():
        state["configures"] += 1
        # the first configure is the wait for another package manager (`true` before it)
        if 2 <= state["configures"] <= 1 + repairs_failing:
            return 1, INSTALL_POSTINST_FAILED.split("\n", 1)[1]
        return 0, ""

    table = _packages_table(state)
    table["apt-get install"] = (0, install)
    table["dpkg --configure -a"] = (0, configure)
    ctx, t = make_ctx(tmp_path, table)
    ctx.output = lambda *a: None
    if ok:
        prepare._packages_run(ctx)
        assert state["installed"] and state["configures"] == 3
    else:
        with pytest.raises(e.StepError):
            prepare._packages_run(ctx)
        assert not state["installed"] and state["configures"] == 3  # never a third repair


def test_setup_script_failures_are_only_apts_list_after_its_words():
    assert prepare.setup_script_failures(INSTALL_POSTINST_FAILED.splitlines()) == [
        "openstack-dashboard", "openstack-dashboard-apache"]
    assert prepare.setup_script_failures(INSTALL_NO_NETWORK.splitlines()) == []
    assert prepare.setup_script_failures(INSTALL_UNKNOWN.splitlines()) == []
