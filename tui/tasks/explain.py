"""Known failures mapped to plain words and the next thing to try.

``improve`` looks at an error's text and output tail; when it recognises the
failure it fills in the why/hint (and marks transient failures so the engine
retries them with backoff before asking the user).  ``add_logs`` then fetches
the log tail a recognised failure points to (Keystone's Apache log for a
401/403/500, glance-api.log for a store or auth error, RabbitMQ's or
MariaDB's journal), so the user sees the cause without opening a shell.

Unknown failures keep the command, its exit status and the last output lines.

The rules here are the ones of no single service (package manager, config files,
ports, catch-alls); each service module declares its own (``RULES`` in its
``Service``), and ``rules_for(REGISTRY)`` puts them together for the plan
(deploy.build_plan), which the engine hands to ``improve`` and ``add_logs``.
"""

from __future__ import annotations

import re
from typing import Callable, Iterable, Union

from .services.base import Rule

Text = Union[str, Callable[[str], str]]


def _holder(text: str) -> str:
    m = re.search(r"held by process (\d+) \(([^)]+)\)", text)
    if m:
        return f"{m.group(2)} (pid {m.group(1)})"
    m = re.search(r"held by (\S+ \(pid \d+\)(?:, \S+ \(pid \d+\))*)", text)
    if m:
        return m.group(1)
    m = re.search(r"locked by another process with pid (\d+)", text)
    return f"pid {m.group(1)}" if m else ""


def _lock_why(text: str) -> str:
    who = _holder(text)
    return ("another package manager " + (f"({who}) " if who else "(apt, unattended-upgrades, "
            "a second installer) ") + "holds the dpkg/apt lock on the host")


def _lock_hint(text: str) -> str:
    m = re.search(r"pid (\d+)", _holder(text))
    see = f"`ps -fp {m.group(1)}`" if m else "`ps aux | grep -E 'apt|dpkg'`"
    return (f"let it finish (see {see} on the host; after boot it is often "
            "unattended-upgrades), then Retry; never delete the lock files")


# Rules of no one service: the package manager, config files, ports (before the services' own)
GENERIC: list[Rule] = [
    Rule("dpkg-lock",
         re.compile(r"Could not get lock|Unable to acquire the dpkg frontend lock|"
                    r"dpkg frontend lock|frontend lock was locked|is another process using it|"
                    r"package manager lock is still held|Waiting for cache lock", re.I),
         "transient", _lock_why, _lock_hint),
    Rule("apt-proxy", re.compile(r"407\s+Proxy Authentication Required|Proxy Authentication", re.I),
         "error", "the HTTP proxy between the host and the package mirror wants credentials",
         "set Acquire::http::Proxy with user:password in /etc/apt/apt.conf.d/ on the host, then "
         "Retry"),
    Rule("mirror",
         re.compile(r"Temporary failure resolving|Could not resolve|Failed to fetch|"
                    r"Unable to fetch some archives|Some index files failed to download|"
                    r"Could not connect to .*:(80|443)|Connection timed out|Network is unreachable|"
                    r"Cannot initiate the connection|Cannot reach the package repository|"
                    r"Hash Sum mismatch|Connection failed \[IP", re.I),
         "transient",
         "the package download failed: the host cannot reach its package mirror (mirror down "
         "or syncing, DNS, proxy, or no outbound network)",
         "run `apt-get update` on the host to see the same; check /etc/resolv.conf, the apt "
         "proxy and the mirror in /etc/apt/sources.list, then Retry"),
    Rule("no-package",
         re.compile(r"Unable to locate package|has no installation candidate|"
                    r"No match for argument", re.I),
         "error",
         "a package is not in the host's configured repositories (missing repository section "
         "or stale package lists)",
         "check /etc/apt/sources.list (main, updates and security), run `apt-get update`, "
         "then Retry"),
    Rule("bad-config",
         re.compile(r"unknown variable|unknown option|invalid option|unrecognized option|"
                    r"illegal option|Unknown directive|Invalid command '|Syntax error on line|"
                    r"AH00526|ConfigFileValueError|NoSuchOptError|Found option without preceding "
                    r"group|could not parse|Error parsing", re.I),
         "error",
         "the service rejects a setting in its configuration file (the journal lines below "
         "name it), so it does not start",
         "correct or remove that line in the file the journal names (stack-tui keeps the "
         "original of files it changed as FILE.stack-tui.orig), then Retry"),
    Rule("port-in-use",
         re.compile(r"Address already in use|port \S+ (is )?already in use|could not bind|"
                    r"bind\(\) .* failed|AH00072|eaddrinuse", re.I),
         "error",
         "another program already listens on a port this service needs",
         "`stack-tui check PROFILE` or `ss -ltnp` on the host names it; stop it or move it to "
         "another port, then Retry"),
]

# An API request through the run's tunnel, by the path of its URL (the port is the local
# end of the tunnel, so it says nothing): (the API's name, its log on the controller)
API_PATHS = [
    (re.compile(r"/v2\.0/"), "Neutron", "/var/log/neutron/neutron-api.log"),
    (re.compile(r"/v2\.1/"), "Nova", "/var/log/nova/nova-api.log"),
    (re.compile(r"/v2/(images|schemas|info|stores)"), "Glance", "/var/log/glance/glance-api.log"),
    (re.compile(r"/(resource_providers|allocation_candidates|placement)"), "Placement",
     "/var/log/apache2/placement.log"),
    (re.compile(r"/v3/"), "Keystone", "/var/log/keystone/keystone.log"),
]
API_TIMEOUT = re.compile(r"Request to (https?://\S+) timed out|Read timed out", re.I)
# keystoneauth's ConnectFailure for a connection the server closed mid-request (not refused)
API_DROPPED = re.compile(r"Unable to establish connection to (https?://[^\s:]+(?::\d+)?\S*?):? "
                         r".*(Connection aborted|reset by peer|RemoteDisconnected)", re.I)


def _api_of(text: str) -> tuple[str, str] | None:
    m = API_TIMEOUT.search(text) or API_DROPPED.search(text)
    url = m.group(1) if m and m.group(1) else ""
    for pattern, name, log in API_PATHS:
        if pattern.search(url):
            return name, log
    return None


def _api_words(text: str) -> tuple[str, str]:
    """(which API, where its log is) for a client error about the URL in ``text``."""
    api = _api_of(text)
    if api is None:
        return "an OpenStack API", "the API's log on the controller"
    return f"{api[0]}'s API", f"{api[1]} on the controller"


def _timeout_why(text: str) -> str:
    return (f"{_api_words(text)[0]} did not answer within the client's time limit (30 s): the "
            "controller is overloaded, or the service's workers are all stuck waiting (on the "
            "database, the message queue, or another service)")


def _timeout_hint(text: str) -> str:
    return (f"read {_api_words(text)[1]} (its last lines are below) and the load on the host "
            "(`uptime`); when it answers again, Retry: the step looks before it acts")


def _dropped_why(text: str) -> str:
    return (f"{_api_words(text)[0]} closed the connection in the middle of a request (reset, "
            "no answer): the worker process that held it died or was restarted, or the "
            "service restarted")


def _dropped_hint(text: str) -> str:
    return (f"read {_api_words(text)[1]} (its last lines are below; uWSGI writes \"DAMN ! "
            "worker ... died\" when a worker dies) and `systemctl status` of the service; "
            "then Retry: the step looks before it acts")


# Failures the engine retries once by itself, whatever the step's own retries: a connection
# an API reset mid-request was most likely not served, and every step looks before it acts,
# so running it again is safe.  (Not a timeout: that request may still be running.)
RETRY_ONCE = frozenset({"api-dropped"})


# Catch-alls: after the services' own rules, which say more.
CATCH_ALL: list[Rule] = [
    Rule("api-timeout", API_TIMEOUT, "error", _timeout_why, _timeout_hint, logs=("api-log",)),
    Rule("api-dropped", API_DROPPED, "error", _dropped_why, _dropped_hint, logs=("api-log",)),
    Rule("server-error",
         re.compile(r"\b50[0-3]\b|Internal Server Error|Service Unavailable|InternalServerError|"
                    r"ServiceUnavailable|HttpServerError|Bad Gateway", re.I),
         "error",
         "the OpenStack API answered with a server error: the application behind it fails",
         "the log tail below shows the exception; fix its cause (often the database "
         "connection or a config value), then Retry",
         logs=("api",)),
    Rule("service-failed",
         re.compile(r"Job for .*\.service failed|failed to start|start request repeated too "
                    r"quickly|is not running; its journal is below|Could not (re)?start ", re.I),
         "error",
         "a system service failed to start; the journal lines below say why",
         "read the journal tail, fix the configuration, then Retry"),
]

# The rules without any service's: what a plan without services (or a test) gets.
RULES: list[Rule] = GENERIC + CATCH_ALL


def rules_for(services: Iterable) -> list[Rule]:
    """Every rule for a plan of ``services`` (the registry): the generic ones, then each
    service's own (``Service.rules``), a service before those it requires (Glance's 401
    before Keystone's), then the catch-alls."""
    ordered = list(services)[::-1]
    return GENERIC + [r for svc in ordered for r in svc.rules] + CATCH_ALL


# SSH failures: the transport already says what and why; these fill gaps only.
SSH_KINDS = {
    "ConnectionLost": ("the SSH connection dropped (network, the server rebooted, or sshd was "
                       "restarted)",
                       "check that the server is up and reachable, then Retry or run apply "
                       "again: it resumes where it stopped"),
    "ConnectError": ("the server cannot be reached over SSH",
                     "check the address, the port and that sshd runs on the server"),
    "CommandTimeout": ("the command ran longer than its time limit (the host is slow, a "
                       "download stalled, or the command waits for something)",
                       "look at the last output lines, then Retry"),
}


def classify(text: str, rules: list[Rule] | None = None) -> tuple[str, str, str] | None:
    rule = match(text, rules)
    if rule is None:
        return None
    return rule.kind, _text(rule.why, text), _text(rule.hint, text)


def match(text: str, rules: list[Rule] | None = None) -> Rule | None:
    for rule in RULES if rules is None else rules:
        if rule.pattern.search(text):
            return rule
    return None


def _text(t: Text, text: str) -> str:
    return t(text) if callable(t) else t


def _all_text(info) -> str:
    return "\n".join([info.what, info.why, *info.tail])


def improve(info, rules: list[Rule] | None = None):
    """Fill an ErrorInfo's why/hint from known patterns (keeps existing text); ``rules``:
    the plan's (``rules_for`` the registry), else the generic ones."""
    if info.what.startswith("Preflight"):
        return info  # the preflight explains itself, item by item
    if info.kind in SSH_KINDS:
        why, hint = SSH_KINDS[info.kind]
        info.why = info.why or why
        info.hint = info.hint or hint
        return info
    text = _all_text(info)
    rule = match(text, rules)
    if rule is None:
        if not info.why and info.tail:
            info.why = "the last output lines are shown below"
        if not info.hint:
            info.hint = "read the output below, fix the cause on the host, then Retry"
        return info
    why, hint = _text(rule.why, text), _text(rule.hint, text)
    if rule.kind == "transient":
        info.kind = "transient"
    elif info.kind == "error":
        info.kind = rule.name
    unexpected = info.why.startswith("raised at ")  # an exception we recognise after all
    if not info.why or info.why.startswith("the last output") or unexpected:
        info.why = why
    elif why not in info.why:
        info.why = f"{info.why}; {why}"
    if not info.hint or unexpected:
        info.hint = hint
    return info


def _logs(key: str, ctx, text: str) -> list[tuple[str, str]]:
    """(title, shell command) for a log key."""
    from .platforms import PLATFORMS

    plat = PLATFORMS.get(ctx.facts.get("platform", ""))
    # Keystone logs where the platform's web server does; not knowing the platform (the
    # failure came before prepare.detect), no guess: the rule's own text must do.
    ks = f"{plat.apache_log_dir}/keystone.log" if plat is not None else None
    gl = "/var/log/glance/glance-api.log"
    errs = ("grep -E 'ERROR|CRITICAL|Error|Exception|denied|refused|WARNING|DAMN' | "
            "awk '!seen[$0]++' | tail -n 12")
    if key == "keystone":
        # Keystone's own log (refused logins are its WARNINGs) and the web server's for it.
        own = "/var/log/keystone/keystone.log"
        return [(f, f"tail -n 400 {f} 2>/dev/null | {errs}") for f in (ks, own)] if ks else []
    if key == "glance":
        return [(gl, f"tail -n 400 {gl} 2>/dev/null | {errs}")]
    if key == "api":
        if re.search(r"glance|9292|image", text, re.I):
            return _logs("glance", ctx, text)
        return _logs("keystone", ctx, text)
    if key == "api-log":
        api = _api_of(text)
        return [(api[1], f"tail -n 400 {api[1]} 2>/dev/null | {errs}")] if api else []
    if key == "rabbitmq":
        return [("journalctl -u rabbitmq-server",
                 "journalctl -u rabbitmq-server -n 15 --no-pager -o cat 2>&1")]
    if key == "mariadb":
        return [("journalctl -u mariadb", "journalctl -u mariadb -n 15 --no-pager -o cat 2>&1")]
    return []


def add_logs(info, ctx, rules: list[Rule] | None = None) -> None:
    """Append the log tail a recognised failure points to (when the step did not already)."""
    try:
        if info.kind in SSH_KINDS or info.kind in ("transient", "cancelled") or len(info.tail) >= 3:
            return
        transport = getattr(ctx, "transport", None)
        if transport is None or not getattr(transport, "connected", False):
            return
        text = _all_text(info)
        rule = match(text, rules)
        if rule is None or not rule.logs:
            return
        for key in rule.logs:
            for title, cmd in _logs(key, ctx, text):
                r = ctx.sh(cmd, check=False, quiet=True, timeout=20)
                lines = [ctx.redact(ln) for ln in r.lines if ln.strip()]
                if lines:
                    info.tail += [f"--- {title} (last lines) ---", *lines]
        info.tail = info.tail[-40:]
    except Exception:  # noqa: BLE001 - explaining must never fail the failure report
        return
