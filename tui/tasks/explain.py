"""Known failures mapped to plain words and the next thing to try.

``improve`` looks at an error's text and output tail; when it recognises the
failure it fills in the why/hint (and marks transient failures so the engine
retries them with backoff before asking the user).
"""

from __future__ import annotations

import re

# (pattern over what + tail, kind, why, hint)
RULES: list[tuple[re.Pattern, str, str, str]] = [
    (re.compile(r"Could not get lock|Unable to acquire the dpkg frontend lock|dpkg frontend lock|"
                r"is another process using it|dpkg was interrupted", re.I),
     "transient",
     "another package manager (apt, unattended-upgrades, a second installer) holds the "
     "dpkg/apt lock on the host",
     "wait for it to finish (see `ps aux | grep -E 'apt|dpkg'` on the host), then Retry; "
     "if dpkg was interrupted run `dpkg --configure -a`"),
    (re.compile(r"Temporary failure resolving|Could not resolve|Failed to fetch|"
                r"Unable to fetch some archives|Could not connect to .*:(80|443)|"
                r"Connection timed out|Network is unreachable|Cannot initiate the connection", re.I),
     "transient",
     "cannot reach the package repository from the host (mirror down, DNS, proxy or no "
     "outbound network)",
     "check `apt-get update` on the host, its DNS (/etc/resolv.conf) and proxy settings, "
     "then Retry"),
    (re.compile(r"Access denied for user", re.I), "error",
     "the database refused the login: wrong password or missing grant",
     "Retry (stack-tui re-applies users and grants); check the *_db_password secrets"),
    (re.compile(r"Address already in use|port .* (is )?already in use|bind\(\) .* failed", re.I),
     "error",
     "another program already listens on a port this service needs",
     "find it with `ss -ltnp` on the host, stop it, then Retry"),
    (re.compile(r"unable to (perform an operation on|connect to) node|nodedown|epmd", re.I),
     "error",
     "the RabbitMQ node is down or unreachable; usually the host name does not resolve "
     "to an address the host has (epmd)",
     "make /etc/hosts map the host name to its real address (preflight --fix does this), "
     "then Retry"),
    (re.compile(r"Job for .*\.service failed|failed to start|start request repeated too quickly",
                re.I),
     "error",
     "a system service failed to start; the journal lines below say why",
     "read the journal tail, fix the configuration, then Retry"),
    (re.compile(r"\b401\b|Unauthorized|The request you have made requires authentication", re.I),
     "error",
     "Keystone refused the credentials (401)",
     "check the admin password secret; Retry re-runs bootstrap which resets it"),
    (re.compile(r"\b50[0-3]\b|Internal Server Error|Service Unavailable", re.I),
     "error",
     "the OpenStack API answered with a server error",
     "look at the Apache/Keystone or Glance log tail below, fix, then Retry"),
]


def classify(text: str) -> tuple[str, str, str] | None:
    for pattern, kind, why, hint in RULES:
        if pattern.search(text):
            return kind, why, hint
    return None


def improve(info):
    """Fill an ErrorInfo's why/hint from known patterns (keeps existing text)."""
    text = "\n".join([info.what, info.why, *info.tail])
    found = classify(text)
    if found is None:
        if not info.why and info.tail:
            info.why = "the last output lines are shown below"
        if not info.hint:
            info.hint = "read the output below, fix the cause on the host, then Retry"
        return info
    kind, why, hint = found
    if kind == "transient":
        info.kind = "transient"
    if not info.why or info.why.startswith("the last output"):
        info.why = why
    else:
        info.why = f"{info.why}; {why}"
    if not info.hint:
        info.hint = hint
    return info
