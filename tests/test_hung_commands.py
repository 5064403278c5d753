"""Hung remote commands and services that die after starting, without a host.

The transport is a scripted stand-in: each command is answered by the first rule
whose pattern it matches.  A rule answering HANG is a command that never returns:
the stand-in does what the real transport does when the caller's time limit runs
out (it raises ``transport.timed_out``; the real one also kills the command on the
host, which tests/e2e/test_transport.py's timeout tests prove on a sandbox host).
So what is tested here is which limit each step gives its commands, and what the
step, the engine and the user see when one runs out or a service dies.
"""

from __future__ import annotations

import re

import pytest

from tui.tasks import engine as e
from tui.tasks.profile import Profile
from tui.tasks.redact import Redactor
from tui.tasks.services import common, glance, keystone, mariadb, memcached, rabbitmq, units
from tui.tasks.transport import CommandFailed, CommandTimeout, Result, timed_out

HANG = object()
MGMT = "10.0.0.5"
MEMCACHED_CONF = "# memcached\n-m 64\n-p 11211\n-l 127.0.0.1\n"


class ScriptedHost:
    """Answers commands by rule; keeps files in memory; records (command, limit)."""

    def __init__(self, rules, files=None):
        self.rules = list(rules)   # [(regex, answer)], answer: (status, out) | HANG | callable
        self.files = dict(files or {})
        self.ran: list[tuple[str, float | None]] = []

    def run(self, command, *, stdin=None, secrets=None, sudo=True, timeout=600, on_line=None,
            check=True, cancel=None):
        self.ran.append((command, timeout))
        answer = next((a for pat, a in self.rules if re.search(pat, command)), (0, ""))
        if callable(answer):
            answer = answer(command)
        if answer is HANG:
            assert timeout is not None, f"no time limit: would hang forever: {command}"
            raise timed_out(command, timeout, ["(no output)"])
        status, out = answer
        lines = out.splitlines()
        if check and status:
            raise CommandFailed(command, status, lines)
        return Result(status, out, "", lines, out.encode())

    def read_file(self, path):
        return self.files.get(path)

    def write_file(self, path, content, **kw):
        self.files[path] = content

    def reconnect(self, deadline=60.0):
        pass

    def limits(self, pattern: str) -> list[float | None]:
        return [t for c, t in self.ran if re.search(pattern, c)]


def make(tmp_path, host, phases, decisions=()):
    profile = Profile(name="t")
    profile.host.address = MGMT
    ctx = e.Context(host, profile, {"rabbit_password": "rabbit-pw-1"}, Redactor(),
                    e.RunState(tmp_path / "s.json"))
    ctx.facts["platform"] = "debian-13"
    ctx.facts["mgmt_address"] = MGMT
    asked = list(decisions)
    seen: list[e.ErrorInfo] = []

    def decide(step, info):
        seen.append(info)
        return asked.pop(0) if asked else e.Decision.ABORT

    events: list = []
    eng = e.Engine(e.Plan(phases), ctx, listeners=[events.append], decide=decide)
    return eng, events, seen


def finished(events):
    return [(ev.step_id, ev.status) for ev in events if isinstance(ev, e.StepFinished)]


def once(answer, then=(0, "")):
    """``answer`` the first time, ``then`` afterwards."""
    calls = []

    def respond(command):
        calls.append(command)
        return answer if len(calls) == 1 else then
    return respond


def memcached_phases():
    plat = common.PLATFORMS["debian-13"]
    return memcached.phases(None, plat)


# --------------------------------------------------------------------------- limits

def test_a_hung_user_check_fails_in_seconds_with_its_name_and_what_to_try(tmp_path):
    """`systemctl is-active` that never returns: the check fails after its own short
    limit (not the 900 s default), naming the command, the wait and Retry; Retry runs
    the step again and it goes through."""
    good = {"/etc/memcached.conf": MEMCACHED_CONF.replace("127.0.0.1", MGMT)}
    host = ScriptedHost([(r"is-active -q memcached && systemctl is-enabled", once(HANG))], good)
    eng, events, seen = make(tmp_path, host, memcached_phases(), [e.Decision.RETRY])
    result = eng.run()

    assert finished(events) == [("memcached.config", e.Status.FAILED),
                                ("memcached.config", e.Status.ALREADY_DONE)]
    assert result.ok
    info = seen[0]
    limit = host.limits(r"is-active -q memcached && systemctl is-enabled")[0]
    assert limit <= 30
    assert info.kind == "CommandTimeout"
    assert info.what == f"Timed out after {limit:.0f} s: systemctl is-active did not finish."
    assert f"within its {limit:.0f} s limit" in info.why and "stopped on the host" in info.why
    assert "Retry" in info.hint and "Skip" in info.hint and "systemctl status" in info.hint


def test_skip_after_a_hang_goes_on_with_the_next_step(tmp_path):
    host = ScriptedHost([(r"rabbitmqctl.*list_users", HANG),
                         (r"is-active -q rabbitmq-server", (0, ""))])
    plat = common.PLATFORMS["debian-13"]
    phases = rabbitmq.phases(None, plat) + memcached_phases()
    host.files["/etc/memcached.conf"] = MEMCACHED_CONF.replace("127.0.0.1", MGMT)
    eng, events, seen = make(tmp_path, host, phases, [e.Decision.SKIP])
    eng.run()
    assert finished(events)[:2] == [("rabbitmq.user", e.Status.FAILED),
                                    ("rabbitmq.user", e.Status.SKIPPED)]
    assert finished(events)[2][0] == "memcached.config"
    assert seen[0].what.startswith("Timed out after ")
    assert "rabbitmqctl" in seen[0].what and "900" not in seen[0].what


UNCHOSEN = 4321.0   # ctx.sh's default in these tests: a command that gets it chose no limit


def test_every_command_of_the_core_services_has_a_limit_for_what_it_does(tmp_path, monkeypatch):
    """No command of these steps waits for the default; looks at the host get seconds."""
    monkeypatch.setattr(e, "DEFAULT_LIMIT", UNCHOSEN)
    started = set()

    def state(command):
        unit = command.split()[2]
        return (0, "active\nport-answers\n") if unit in started else (0, "inactive\n")

    def start(command):
        started.add(command.split()[-2])
        return (0, "")

    host = ScriptedHost([
        (r"^date \+%s; systemctl enable -q (\S+) 2>&1; systemctl (re)?start", start),
        (r"^systemctl is-active \S+ 2>/dev/null;", state),
        (r"is-active -q", (3, "")),
        (r"list_users", (0, "guest\n")),
    ])
    plat = common.PLATFORMS["debian-13"]
    db = mariadb.phases(None, plat)[0]
    phases = memcached_phases() + [e.Phase(db.id, db.title, db.steps[:2])] \
        + rabbitmq.phases(None, plat)  # mariadb.databases needs a real port forward
    eng, events, seen = make(tmp_path, host, phases)
    assert eng.run().ok, seen
    assert all(t is not None and t < 900 and t != UNCHOSEN for _, t in host.ran), host.ran
    assert all(t <= 30 for c, t in host.ran if "is-active" in c or "dpkg-query" in c)
    assert {"memcached", "mariadb", "rabbitmq-server"} <= started


def _steps(phases, *ids):
    steps = {s.id: s for p in phases for s in p.steps}
    return [steps[i] for i in ids]


def test_keystone_and_glance_commands_have_a_limit_for_what_they_do(tmp_path, monkeypatch):
    """Keystone's and Glance's shell work (their API calls aside) chooses its limits:
    looks get seconds, Apache's configtest / a2enmod a service's limit, SQL its own,
    keystone-manage / glance-manage their long one; nothing falls back to the default."""
    monkeypatch.setattr(e, "DEFAULT_LIMIT", UNCHOSEN)
    host = ScriptedHost([
        (r"^systemctl is-active -q \S+$", (3, "")),            # not running yet
        (r"^systemctl is-active \S+ 2>/dev/null;", (0, "active\n")),
        (r"^nproc;", (0, "2\n4000000\n")),
        (r"^bad=0; for i", (0, "200\n")),
        (r"curl -s -o /dev/null -w", (0, "200")),
        (r"SELECT COUNT\(\*\) FROM keystone", (0, "0\n")),
        (r"SELECT COUNT\(\*\) FROM glance", (0, "0\n")),
    ])
    eng, _, _ = make(tmp_path, host, [])
    ctx = eng.ctx
    ctx.secrets.update({"keystone_db_password": "k-db-pw-1", "glance_db_password": "g-db-pw-1",
                        "glance_password": "g-pw-1", "admin_password": "a-pw-1"})
    plat = common.PLATFORMS["debian-13"]
    ks = _steps(keystone.phases(None, plat), "keystone.config", "keystone.db_sync",
                "keystone.fernet_setup", "keystone.apache")
    gl = _steps(glance.phases(ctx.profile, plat), "glance.config", "glance.db_sync",
                "glance.metadefs", "glance.service")
    for step in ks + gl:
        step.check(ctx)
        step.run(ctx)
        step.check(ctx)
    assert not keystone._bootstrap_check(ctx)   # no admin in the database yet
    limits = {c: t for c, t in host.ran}
    assert all(t is not None and t < 900 and t != UNCHOSEN for t in limits.values()), host.ran
    looks = [t for c, t in limits.items() if re.match(r"(systemctl is-active|test |nproc|curl "
                                                      r"|dpkg-query|install -d)", c)]
    assert looks and max(looks) <= common.LOOK
    assert host.limits(r"configtest") == [common.SERVICE]
    assert host.limits(r"a2enmod") == [common.SERVICE]
    assert set(host.limits(r"keystone-manage|glance-manage")) == {600}
    assert set(host.limits(r"^mysql")) == {common.SQL}
    assert f"{MGMT}" in host.files["/etc/glance/glance-api.conf"]


# --------------------------------------------------------------------------- services that die

def test_memcached_that_starts_then_dies_fails_the_step_that_started_it(tmp_path):
    probes = iter(["active\n", "failed\n"])
    host = ScriptedHost([
        (r"^systemctl is-active memcached 2>/dev/null;", lambda c: (0, next(probes, "failed\n"))),
        (r"journalctl -u memcached", (0, "memcached: failed to listen on TCP port 11211: "
                                         "Cannot assign requested address\n")),
    ], {"/etc/memcached.conf": MEMCACHED_CONF})
    eng, events, seen = make(tmp_path, host, memcached_phases())
    assert not eng.run().ok
    assert finished(events) == [("memcached.config", e.Status.FAILED)]
    assert seen[0].what == "memcached started, then stopped (failed)."
    assert any("Cannot assign requested address" in t for t in seen[0].tail)
    assert "journal" in seen[0].why


def test_a_service_is_watched_until_its_port_answers_then_the_step_is_done(tmp_path):
    answers = iter(["active\n", "active\n", "active\nport-answers\n"])
    host = ScriptedHost([
        (r"^systemctl is-active memcached 2>/dev/null;",
         lambda c: (0, next(answers, "active\nport-answers\n"))),
    ], {"/etc/memcached.conf": MEMCACHED_CONF})
    eng, events, _ = make(tmp_path, host, memcached_phases())
    assert eng.run().ok
    probes = [c for c, _ in host.ran if c.startswith("systemctl is-active memcached 2>/dev/null;")]
    assert len(probes) >= 3
    assert f"/dev/tcp/{MGMT}/11211" in probes[0]
    assert host.files["/etc/memcached.conf"].count(f"-l {MGMT}") == 1


def test_a_running_service_whose_port_never_answers_fails_after_a_bound(tmp_path, monkeypatch):
    import time

    monkeypatch.setattr(units, "SETTLE", 1.0)
    host = ScriptedHost([(r"^systemctl is-active memcached 2>/dev/null;", (0, "active\n"))],
                        {"/etc/memcached.conf": MEMCACHED_CONF})
    eng, events, seen = make(tmp_path, host, memcached_phases())
    t0 = time.monotonic()
    assert not eng.run().ok
    assert time.monotonic() - t0 < 5
    assert seen[0].what == f"memcached runs, but nothing answers on {MGMT}:11211 after 1 s."
    assert "ss -ltnp" in seen[0].hint


def test_timed_out_names_the_program_behind_wrappers():
    from tui.tasks.transport import command_name

    assert command_name("LC_ALL=C.UTF-8 timeout -k 5 60 rabbitmqctl add_user openstack") \
        == "rabbitmqctl add_user"
    assert command_name("d=$(mktemp -d) && { LC_ALL=C.UTF-8 timeout -k 5 60 rabbitmqctl -s "
                        "list_users </dev/null >$d/u") == "rabbitmqctl"
    assert command_name("runuser -u keystone -- keystone-manage db_sync 2>&1") \
        == "keystone-manage db_sync"
    assert command_name("mysql --batch --skip-column-names") == "mysql"
    err = timed_out("sleep 1000", 12, ["a"])
    assert isinstance(err, CommandTimeout) and err.tail == ["a"]
    assert str(err).startswith("Timed out after 12 s: sleep did not finish.")


def test_the_port_probe_tells_an_answering_port_from_a_closed_one():
    """The probe's shell, run here against loopback: a listening port answers, a
    closed one does not (bash's /dev/tcp, no client tool needed on the host)."""
    import socket
    import subprocess

    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    open_port = srv.getsockname()[1]
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    closed_port = closed.getsockname()[1]  # bound, never listening: refused
    try:
        outs = [subprocess.run(["/bin/sh", "-c", units._probe_sh("no-such-unit", p, "127.0.0.1")],
                               capture_output=True, text=True, timeout=20).stdout.split()
                for p in (open_port, closed_port)]
    finally:
        srv.close()
        closed.close()
    assert "port-answers" in outs[0]
    assert "port-answers" not in outs[1]


def test_a_command_given_no_limit_waits_minutes_not_a_quarter_hour(tmp_path):
    host = ScriptedHost([(r"^sleep", HANG)])
    eng, _, _ = make(tmp_path, host, [])
    with pytest.raises(CommandTimeout):
        eng.ctx.sh("sleep infinity")
    assert host.limits(r"^sleep") == [e.DEFAULT_LIMIT] and e.DEFAULT_LIMIT <= 180


def test_every_remote_command_of_every_service_names_its_limit():
    """Each ctx.sh in the service modules (compute included, whose steps the scripted runs
    above do not reach) says how long it may take; none relies on ctx.sh's default."""
    import ast
    from pathlib import Path

    import tui.tasks.services as services

    unnamed = []
    for path in sorted(Path(services.__file__).parent.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr == "sh"
                    and not any(k.arg == "timeout" for k in node.keywords)):
                unnamed.append(f"{path.name}:{node.lineno}")
    assert len(list(Path(services.__file__).parent.glob("*.py"))) >= 12
    assert unnamed == [], unnamed


def test_a_port_held_by_another_program_fails_the_step_as_port_in_use(tmp_path):
    """memcached crash-loops on a port another program holds: that program answers the
    port probe, so "the port answers" proved nothing.  The probe names listeners outside
    the unit's control group; the step fails naming the holder, explained as port-in-use."""
    from tui.tasks import explain

    host = ScriptedHost([
        (r"^systemctl is-active memcached 2>/dev/null;",
         (0, "active\nport-answers\nport-foreign=python3/4242\n")),
        (r"journalctl -u memcached", (0, "failed to listen on TCP port 11211: Address already "
                                         "in use\n")),
    ], {"/etc/memcached.conf": MEMCACHED_CONF})
    eng, events, seen = make(tmp_path, host, memcached_phases())
    assert not eng.run().ok
    info = seen[0]
    assert info.what == ("memcached cannot have its port: port 11211 is already in use by "
                         "python3/4242.")
    assert explain.match(info.what, explain.RULES).name == "port-in-use"
    assert "another program already listens" in info.why
    assert any("Address already in use" in t for t in info.tail)


def test_a_unit_already_crashed_on_a_port_another_program_holds_names_the_holder(tmp_path):
    """The probe may catch memcached after its bind failed (auto-restart, on a loaded
    machine), not in its moment up: the holder on its port is still the cause named."""
    from tui.tasks import explain

    host = ScriptedHost([
        (r"^systemctl is-active memcached 2>/dev/null;",
         (0, "activating\nport-answers\nauto-restart\nport-foreign=python3/4242\n")),
        (r"journalctl -u memcached", (0, "failed to listen on one of interface(s) 10.0.0.5: "
                                         "Address already in use\n")),
    ], {"/etc/memcached.conf": MEMCACHED_CONF})
    eng, events, seen = make(tmp_path, host, memcached_phases())
    assert not eng.run().ok
    assert seen[0].what == ("memcached cannot have its port: port 11211 is already in use by "
                            "python3/4242.")
    assert explain.match(seen[0].what, explain.RULES).name == "port-in-use"


def test_a_unit_systemd_is_restarting_after_a_crash_is_not_taken_for_running(tmp_path):
    host = ScriptedHost([
        (r"^systemctl is-active memcached 2>/dev/null;", (0, "activating\nauto-restart\n")),
    ], {"/etc/memcached.conf": MEMCACHED_CONF})
    eng, events, seen = make(tmp_path, host, memcached_phases())
    assert not eng.run().ok
    assert seen[0].what == "memcached started, then stopped (crashed; systemd restarts it)."



@pytest.mark.parametrize("shell", ["sh", "bash"])
def test_a_failed_units_journal_is_read_once_its_last_words_are_in(tmp_path, shell):
    """journald takes a unit's output on its own time: the look waits (bounded) while the
    journal ends at "Started ...", run in a real shell against a journalctl that has the
    unit's error line only from its third read on."""
    import subprocess
    import time

    from tui.tasks.services.units import journal_tail

    count = tmp_path / "reads"
    stub = tmp_path / "journalctl"
    stub.write_text(f"""#!/bin/sh
[ "$1" = --sync ] && exit 0
n=$(cat {count} 2>/dev/null || echo 0); n=$((n + 1)); echo $n > {count}
echo "Stopped memcached.service - memcached daemon."
echo "Started memcached.service - memcached daemon."
[ $n -ge 3 ] && echo "failed to listen on TCP port 11211: Address already in use"
exit 0
""")
    stub.chmod(0o755)
    env = {"PATH": f"{tmp_path}:/usr/bin:/bin"}
    r = subprocess.run([shell, "-c", journal_tail("memcached")], capture_output=True,
                       text=True, timeout=30, env=env)
    assert r.stdout.splitlines()[-1].endswith("Address already in use"), r.stdout
    assert count.read_text().strip() == "3"
    # a unit that never says more: the look gives up after about 2 s, with what there is
    stub.write_text("#!/bin/sh\n[ \"$1\" = --sync ] && exit 0\n"
                    "echo 'Started memcached.service - memcached daemon.'\n")
    t0 = time.monotonic()
    r = subprocess.run([shell, "-c", journal_tail("memcached")], capture_output=True,
                       text=True, timeout=30, env=env)
    assert r.stdout.splitlines() == ["Started memcached.service - memcached daemon."]
    assert 1.5 < time.monotonic() - t0 < 10
