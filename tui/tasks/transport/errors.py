"""What the transport raises: each error says what failed, why, and what to try."""

from __future__ import annotations

import re
import shlex

from .. import hostkeys, paths
from ..errors import Failure


class TransportError(Failure):
    """A failure with a plain explanation: what, why, what to try (all three in str())."""

    def message(self) -> str:
        return self.text()

    def _message(self) -> str:
        return self.text()


class ConnectError(TransportError):
    pass


class AuthError(TransportError):
    pass


class SudoError(TransportError):
    pass


class UnknownHostKey(TransportError):
    def __init__(self, host: str, key_type: str, fingerprint: str, bad_lines: list | None = None):
        self.host, self.key_type, self.fingerprint = host, key_type, fingerprint
        why = f"{key_type} key fingerprint {fingerprint}"
        if bad_lines:
            why += ("; these known_hosts lines could not be read and were ignored: "
                    + "; ".join(bad_lines[:5]))
        super().__init__(
            f"The SSH host key of {host} is not known yet.",
            why,
            "check the fingerprint on the server (ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub) "
            "and accept it (TUI: Trust; headless: --accept-new-host-key)",
        )


class HostKeyChanged(TransportError):
    def __init__(self, host: str, key_type: str, fingerprint: str, known: list[str],
                 port: int = 22):
        self.host, self.key_type, self.fingerprint = host, key_type, fingerprint
        # The known_hosts entry: HOST on port 22, [HOST]:PORT on any other (quoted: the
        # brackets are a shell pattern).
        entry = host if host.startswith("[") else hostkeys.host_entry(host, int(port))
        super().__init__(
            f"REFUSED: the SSH host key of {entry} HAS CHANGED. Nothing was run.",
            f"the server now presents {key_type} {fingerprint}, but {', '.join(known)} was "
            "recorded. Either the server was reinstalled, or someone is intercepting the "
            "connection (man-in-the-middle).",
            f"if you reinstalled {host}, remove its old key with "
            f"`ssh-keygen -R {shlex.quote(entry)}` and from stack-tui's known_hosts "
            f"({paths.known_hosts_file()}), then connect again",
        )


def silent(address: str, port: int, waited: float) -> "ConnectError":
    # TCP connected, then not one byte: a firewall or proxy that accepts every port,
    # another service that waits for the client to speak first, or a wedged sshd.
    where = f"[{address}]:{port}" if ":" in address else f"{address}:{port}"
    return ConnectError(
        f"Could not connect to {where}: nothing answers on {where}.",
        f"the TCP connection opened, but no SSH server greeted within {waited:g} s",
        "check that this is the server's SSH port (ssh -v -p PORT HOST), that sshd runs "
        "and is not overloaded, and that no firewall or proxy swallows the connection",
    )


def closed_early(address: str, port: int) -> "ConnectError":
    # The TCP connection opened, then closed before the SSH banner: sshd refusing the
    # connection (MaxStartups), a host going down, or a middlebox that accepts every port.
    return ConnectError(
        f"Could not connect to {address}:{port}.",
        "the connection was closed before the SSH handshake finished",
        "check that the server is up and that this port is its SSH server",
    )


class ConnectionLost(TransportError):
    pass


class CommandTimeout(TransportError):
    pass


# Words that only run another command: the name of what hung is the next word.
_WRAPPERS = {"sudo", "timeout", "env", "nice", "ionice", "runuser", "exec", "command", "stdbuf"}
_SHELL_WORDS = {"if", "then", "else", "elif", "fi", "for", "while", "until", "do", "done",
                "case", "esac", "in", "!", "{", "}", "(", ")", "&&", "||", ";", "|", "&"}
_VALUE_OPTIONS = {"-u", "-g", "-k", "-s"}
# Tools whose first argument says what they do (``systemctl is-active``).
_SUBCOMMANDS = {"systemctl", "rabbitmqctl", "apt-get", "apt", "dnf", "yum", "keystone-manage",
                "glance-manage", "mysqladmin", "journalctl", "dpkg-query"}


def command_name(command: str) -> str:
    """The program a shell line is about: ``LC_ALL=C timeout 60 rabbitmqctl add_user x``
    gives ``rabbitmqctl add_user``.  Falls back to the line's start."""
    words = command.replace(";", " ; ").replace("&&", " && ").split()
    skip = False
    for i, w in enumerate(words):
        w = w.lstrip("({").rstrip(";)}")
        if skip or w in _VALUE_OPTIONS:  # a wrapper's option and its value (runuser -u x)
            skip = not skip
            continue
        if not w or w in _SHELL_WORDS or w in _WRAPPERS or w.replace(".", "").isdigit() \
                or any(c in w for c in "=$'\"<>") or w.startswith(("-", "2>")):
            continue
        prog = w.rsplit("/", 1)[-1]
        nxt = words[i + 1] if i + 1 < len(words) else ""
        if prog in _SUBCOMMANDS and re.fullmatch(r"[a-z][a-z_-]*", nxt):
            return f"{prog} {nxt}"
        return prog
    first = command.strip().splitlines()[0] if command.strip() else command
    return first[:60]


def timed_out(command: str, limit: float, tail: list[str] | None = None) -> CommandTimeout:
    """The error of a command stopped at its time limit: its name, the wait, what to try."""
    name = command_name(command)
    first = command.strip().splitlines()[0] if command.strip() else ""
    shown = first if len(first) <= 160 else first[:157] + "..."
    return CommandTimeout(
        f"Timed out after {limit:.0f} s: {name} did not finish.",
        f"{name} had no result within its {limit:.0f} s limit, so it was stopped on the host "
        f"(command: {shown})",
        f"look at the last output lines below; if {name.split()[0]} waits for a service, "
        "check that service on the host (systemctl status, journalctl -e) and its load, "
        "then Retry; Skip goes on without this step",
        tail=tail,
    )


class CommandCancelled(TransportError):
    pass


class CommandFailed(TransportError):
    def __init__(self, command: str, status: int, tail: list[str], what: str | None = None):
        self.command, self.status = command, status
        super().__init__(
            what or f"Remote command failed with exit status {status}: {command}",
            tail=tail,
        )


