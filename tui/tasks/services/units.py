"""systemd units on the host: start one and watch it come up (it stays active, its port
answers and is its own), or say why not with its journal; the time limits by purpose."""

from __future__ import annotations

import shlex
import time

from ..engine import Context, StepError

q = shlex.quote

# Time limits by purpose, in seconds.  A command that hangs fails its step after the
# limit of what it does (with its name, the wait and what to try; the transport stops
# it on the host) instead of holding the run for ctx.sh's 900 s default.
LOOK = 30        # a look at the host: systemctl is-active, dpkg-query, cp, journalctl
SERVICE = 180    # systemctl start/restart (systemd's own start timeout is 90 s)
SQL = 120        # root SQL over the unix socket
# A service just started must still be active this long afterwards (a daemon that
# dies on a bad option is "active" for a few milliseconds first)...
MOMENT = 0.5
# ...and its port must answer within this many seconds.
SETTLE = 30


def url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def journal_tail(unit: str, window: str = "-n 25 ") -> str:
    """The unit's last journal lines, once its last words are in: journald reads a unit's
    output stream on its own time, so a look made as systemd saw the process exit once ended
    at "Started memcached.service" without memcached's "Address already in use".  Flushed,
    then re-read every 0.2 s (up to 2 s) while nothing follows a "Started" line."""
    log = f"journalctl -u {q(unit)} {window}--no-pager -o cat 2>&1 | tail -n 25"
    return ("journalctl --sync 2>/dev/null; for i in 1 2 3 4 5 6 7 8 9 10; do "
            f"j=$({log}); last=$(printf '%s\\n' \"$j\" | tail -n 1); "
            "case \"$last\" in Started\\ *|'') sleep 0.2;; *) break;; esac; done; "
            "printf '%s\\n' \"$j\"")


def service_failed(ctx: Context, unit: str, what: str, since: str | None = None,
                   output: list[str] = (), *, why: str | None = None,
                   hint: str | None = None) -> StepError:
    """The failure of ``unit`` with its journal: only what it logged ``since`` (the host's
    epoch seconds when this step started it), so an earlier failure's lines do not
    explain this one; ``output`` is what systemctl itself said."""
    window = f"--since @{int(since)} " if since and since.isdigit() else "-n 25 "
    r = ctx.sh(journal_tail(unit, window) + "; "
               f"systemctl status {q(unit)} --no-pager -n 0 2>&1 | head -5", check=False,
               quiet=True, timeout=LOOK)
    return StepError(what, why or f"{unit} is not running; its journal is below",
                     hint or f"fix the cause shown in the journal, then Retry (journalctl -u "
                             f"{unit})",
                     tail=([ln for ln in output if ln.strip()] + r.lines)[-30:])


def ensure_service(ctx: Context, unit: str, *, restart: bool = False, port: int | None = None,
                   host: str = "127.0.0.1", within: float | None = None) -> None:
    """Enable and (re)start ``unit``; then make sure it stayed up and ``port`` answers."""
    action = "restart" if restart else "start"
    r = ctx.sh(f"date +%s; systemctl enable -q {q(unit)} 2>&1; systemctl {action} {q(unit)} 2>&1",
               check=False, quiet=True, timeout=SERVICE)
    since = r.lines[0].strip() if r.lines and r.lines[0].strip().isdigit() else None
    said = r.lines[1:] if since else r.lines
    for ln in said:
        ctx.output(ln)
    if r.status != 0:
        raise service_failed(ctx, unit, f"Could not {action} {unit}.", since, said)
    stays_up(ctx, unit, port=port, host=host, within=within, since=since)


def _probe_sh(unit: str, port: int | None, host: str) -> str:
    """The unit's state; ``auto-restart`` when systemd is restarting it after a crash;
    ``port-answers`` when the port accepts a connection, and ``port-foreign=NAME/PID`` for
    each listener on that port outside the unit's control group (another program holds
    the port: the unit's own answer is then not what answered)."""
    sh = f"systemctl is-active {q(unit)} 2>/dev/null; "
    if port is not None:
        # bash's /dev/tcp: a plain TCP connect, no client tool needed on the host
        sh += (f"timeout 3 bash -c {q(f'exec 3<>/dev/tcp/{host}/{int(port)}')} 2>/dev/null "
               "&& echo port-answers; ")
    sh += (f"[ \"$(systemctl show -p SubState --value {q(unit)} 2>/dev/null)\" = auto-restart ] "
           "&& echo auto-restart; ")
    if port is not None:
        # /proc/PID/cgroup names the group on cgroup v2, hybrid and v1 (name=systemd) alike
        sh += (f"cg=$(systemctl show -p ControlGroup --value {q(unit)} 2>/dev/null); "
               f"[ -n \"$cg\" ] && for p in $(ss -Hltnp 'sport = :{int(port)}' 2>/dev/null | "
               "grep -o 'pid=[0-9]*' | cut -d= -f2 | sort -u); do "
               "sed 's/^[^:]*:[^:]*://' /proc/$p/cgroup 2>/dev/null | awk -v c=\"$cg\" "
               "'$0 == c || index($0, c \"/\") == 1 {f = 1} END {exit !f}' || "
               "echo \"port-foreign=$(cat /proc/$p/comm 2>/dev/null)/$p\"; done; ")
    return sh + "true"


def stays_up(ctx: Context, unit: str, *, port: int | None = None, host: str = "127.0.0.1",
             within: float | None = None, since: str | None = None) -> None:
    """Poll until ``unit`` has been active for a moment and ``port`` answers.

    A service that starts and then dies (memcached on an address it cannot bind)
    fails the step that started it, with its journal, not a later step that uses it.
    Bounded by ``within`` seconds; no fixed sleep."""
    within = SETTLE if within is None else within
    start = time.monotonic()
    probe = _probe_sh(unit, port, host)
    while True:
        out = ctx.sh(probe, check=False, quiet=True, timeout=LOOK).stdout.split()
        answers = port is None or "port-answers" in out
        state = out[0] if out and out[0] != "port-answers" else "unknown"
        if "auto-restart" in out:
            state = "crashed; systemd restarts it"
        up = state in ("active", "activating", "reloading")
        foreign = [t.split("=", 1)[1] for t in out if t.startswith("port-foreign=")]
        # another program on its port: the cause, whether the probe caught the unit in the
        # moment it was up (the holder answered for it) or already crashed on the bind
        if foreign and (answers or not up):
            raise service_failed(
                ctx, unit, f"{unit} cannot have its port: port {port} is already in use by "
                           f"{', '.join(foreign)}.", since,
                why=f"{unit} is not what listens on port {port}",
                hint=f"stop that program or move it off port {port} (ss -ltnp | grep {port} "
                     "names it), then Retry")
        if not up:
            raise service_failed(ctx, unit, f"{unit} started, then stopped ({state}).", since)
        waited = time.monotonic() - start
        if state == "active" and answers and waited >= MOMENT:
            return
        if waited >= within:
            break
        ctx.cancel.wait(0.2)
    if state != "active":
        raise service_failed(ctx, unit, f"{unit} did not finish starting within {within:.0f} s "
                                        f"({state}).", since)
    raise service_failed(
        ctx, unit, f"{unit} runs, but nothing answers on {url_host(host)}:{port} after "
                   f"{within:.0f} s.", since,
        why=f"{unit} is active but does not accept connections on port {port}",
        hint=f"check the address it listens on (ss -ltnp | grep {port}) and its journal "
             f"(journalctl -u {unit}), then Retry")


def service_ok(ctx: Context, unit: str) -> bool:
    r = ctx.sh(f"systemctl is-active -q {q(unit)} && systemctl is-enabled -q {q(unit)}",
               check=False, quiet=True, timeout=LOOK)
    return r.status == 0
