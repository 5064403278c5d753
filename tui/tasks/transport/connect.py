"""Opening the SSH connection: host-key policy, login, and every way it can fail
turned into an error that says what happened (refused, unreachable, silent port,
changed key, no key offered...)."""

from __future__ import annotations

import errno
import socket
from pathlib import Path

from .. import hostkeys
from .errors import (
    AuthError, ConnectError, HostKeyChanged, TransportError, UnknownHostKey, closed_early, silent,
)


def expand(path) -> Path:
    return Path(str(path)).expanduser()


class HostKeyPolicy:
    """Ask the caller about unknown keys; refuse keys of a host we know.

    ``session`` is the Transport: its address, port, accept_new_host_key and
    confirm_host_key decide."""

    def __init__(self, session, known: dict, bad: list | None = None):
        self.t = session
        self.known = known
        self.bad = list(bad or [])

    def missing_host_key(self, client, hostname, key):
        fp = hostkeys.fingerprint(key)
        host = hostkeys.host_entry(self.t.address, self.t.port)
        if self.known:
            # We know this host under another key type: treat as a change.
            raise HostKeyChanged(
                self.t.address, key.get_name(), fp,
                [f"{k} {hostkeys.fingerprint(v)}" for k, v in self.known.items()], self.t.port,
            )
        ok = self.t.accept_new_host_key
        if not ok and self.t.confirm_host_key is not None:
            ok = bool(self.t.confirm_host_key(host, key.get_name(), fp))
        if not ok:
            raise UnknownHostKey(host, key.get_name(), fp, self.bad)
        hostkeys.remember(self.t.address, self.t.port, key)


def open_client(t):
    """A logged-in paramiko SSHClient for the Transport ``t``, or a TransportError."""
    import paramiko

    client = paramiko.SSHClient()
    bad: list[str] = []
    known = hostkeys.lookup(t.address, t.port, bad)
    t.known_hosts_problems = bad
    entry = hostkeys.host_entry(t.address, t.port)
    for ktype, key in known.items():
        client.get_host_keys().add(entry, ktype, key)
    client.set_missing_host_key_policy(HostKeyPolicy(t, known, bad))
    try:
        client.connect(**_login_options(t))
    except (UnknownHostKey, HostKeyChanged):
        client.close()
        raise
    except Exception as exc:  # noqa: BLE001 - every failure is explained or re-raised
        quiet = _no_greeting(client, exc)  # before close() drops the paramiko transport
        client.close()
        err = connect_error(t, exc, quiet)
        if err is None:
            raise
        raise err from None
    tr = client.get_transport()
    tr.set_keepalive(10)
    try:
        # Without TCP_NODELAY every channel open waits out a delayed ACK
        # (~40 ms): 49 ms per remote command instead of 5 ms.
        tr.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except (OSError, AttributeError):
        pass
    return client


def _login_options(t) -> dict:
    kwargs = dict(
        hostname=t.address,
        port=t.port,
        username=t.user,
        timeout=t.connect_timeout,
        banner_timeout=t.connect_timeout,
        auth_timeout=t.connect_timeout,
        allow_agent=True,
        look_for_keys=t.key_file is None,
    )
    if t.key_file:
        kwargs["key_filename"] = str(expand(t.key_file))
    if t.password:
        kwargs["password"] = t.password
    return kwargs


def _no_greeting(client, exc) -> bool:
    """True when the server accepted TCP but never sent its SSH banner.

    paramiko then says "No existing session" (its wait for the handshake ended) or
    "Error reading SSH protocol banner" after a socket timeout: neither tells the user
    that nothing answers."""
    import paramiko

    if not isinstance(exc, paramiko.SSHException):
        return False
    tr = client.get_transport()
    if tr is None or getattr(tr, "remote_version", ""):
        return False
    msg = str(exc)
    timed = isinstance(exc.__context__, (socket.timeout, TimeoutError))
    return msg == "No existing session" or (msg.startswith("Error reading SSH protocol banner")
                                            and timed)


def _cannot_connect(t, why: str, hint: str) -> ConnectError:
    return ConnectError(f"Could not connect to {t.address}:{t.port}.", why, hint)


REFUSED = ("connection refused: nothing listens on that port",
           "check the port and that sshd runs on the server (systemctl status ssh)")
NO_ROUTE = ("the host is unreachable (no route)",
            "check the address and the network between here and the server")


def connect_error(t, exc: BaseException, quiet: bool) -> TransportError | None:
    """The plain error for what ``client.connect`` raised (None: not ours to explain)."""
    import paramiko

    if isinstance(exc, paramiko.BadHostKeyException):
        return HostKeyChanged(t.address, exc.key.get_name(), hostkeys.fingerprint(exc.key),
                              [hostkeys.fingerprint(exc.expected_key)], t.port)
    if isinstance(exc, paramiko.AuthenticationException):
        return AuthError(
            f"SSH login to {t.user}@{t.address}:{t.port} was refused.",
            t.redact(str(exc)) or "the server rejected the key/password",
            "check the user name, the key file (and that its public key is in "
            "~/.ssh/authorized_keys on the server) or the SSH password")
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return _cannot_connect(
            t, f"no answer within {t.connect_timeout:.0f} s",
            "check the address, that the server is up and that no firewall drops SSH")
    if isinstance(exc, paramiko.ssh_exception.NoValidConnectionsError):
        # paramiko wraps "refused" and "no route" (for every address it tried) in
        # this; unwrapped, they got the generic "Unable to connect to port ..." text.
        errs = list(exc.errors.values())
        refused = errs and all(getattr(e, "errno", None) == errno.ECONNREFUSED for e in errs)
        return _cannot_connect(t, *(REFUSED if refused else NO_ROUTE))
    if isinstance(exc, ConnectionRefusedError):
        return _cannot_connect(t, *REFUSED)
    if isinstance(exc, socket.gaierror):
        return ConnectError(f"Could not resolve the host name {t.address}.", str(exc),
                            "check the spelling or use the IP address")
    if isinstance(exc, paramiko.SSHException):
        return _handshake_error(t, exc, quiet)
    if isinstance(exc, EOFError):
        # paramiko lets a bare EOFError through when the socket fails while it
        # sends its own banner (the peer reset the connection at once).
        return closed_early(t.address, t.port)
    if isinstance(exc, OSError):
        why = exc.strerror or str(exc)
        if exc.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH):
            why = NO_ROUTE[0]
        return _cannot_connect(t, why, NO_ROUTE[1])
    return None


def _handshake_error(t, exc: BaseException, quiet: bool) -> TransportError:
    msg = str(exc)
    if "No authentication methods available" in msg:
        # paramiko's words when it had nothing to offer: no key file, no agent,
        # no default key in ~/.ssh, no password.  Not a handshake problem.
        return AuthError(
            f"No SSH key or password was offered to {t.user}@{t.address}.",
            "no key file is set, no SSH agent answered and ~/.ssh holds no "
            "default key (id_ed25519, id_ecdsa, id_rsa)",
            "choose a key file or a password (Host screen: Authentication; "
            "headless: [host] key_file, or STACK_TUI_SSH_PASSWORD)")
    if quiet:
        return silent(t.address, t.port, t.connect_timeout)
    banner = "Error reading SSH protocol banner"
    if msg.startswith(banner) and (msg == banner or "reset" in msg.lower()):
        return closed_early(t.address, t.port)
    return ConnectError(f"SSH handshake with {t.address}:{t.port} failed.", t.redact(msg),
                        "check that this port really is an SSH server")
