"""One SSH connection per run (paramiko), used for every remote step.

* Commands stream stdout/stderr lines, return the exit status, honour a
  timeout and a cancel event.
* Non-root users get ``sudo``: ``sudo -n`` when it needs no password, else
  ``sudo -k -S`` with the password as the first line of stdin.
* Secrets reach remote commands only through stdin: the wrapper reads them
  with the shell builtin ``read`` into exported variables, so they are never
  in any process's argv.
* Files are written atomically (temp file + rename) with mode and owner.
* Local port forwards go through the same connection and survive reconnects.
* Host keys are checked against our known_hosts (and the user's, read-only);
  unknown keys need the caller's consent, changed keys are refused.
"""

from __future__ import annotations

import errno
import logging
import posixpath
import re
import select
import shlex
import socket
import threading
import time
from dataclasses import dataclass, field
from secrets import token_hex
from typing import Callable

from . import hostkeys, paths
from .redact import Redactor

# paramiko logs its own tracebacks (e.g. "Error reading SSH protocol banner") through
# logging; with no handler configured, logging.lastResort printed them to stderr,
# unredacted, next to (or across the TUI screen instead of) our plain messages.
logging.getLogger("paramiko").addHandler(logging.NullHandler())


class TransportError(Exception):
    """A failure with a plain explanation: what, why, what to try."""

    def __init__(self, what: str, why: str = "", hint: str = "", tail: list[str] | None = None):
        self.what, self.why, self.hint = what, why, hint
        self.tail = list(tail or [])
        super().__init__(self.message())

    def message(self) -> str:
        parts = [self.what]
        if self.why:
            parts.append(f"Why: {self.why}")
        if self.hint:
            parts.append(f"Try: {self.hint}")
        return "\n".join(parts)


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


def _silent(address: str, port: int, waited: float) -> "ConnectError":
    # TCP connected, then not one byte: a firewall or proxy that accepts every port,
    # another service that waits for the client to speak first, or a wedged sshd.
    where = f"[{address}]:{port}" if ":" in address else f"{address}:{port}"
    return ConnectError(
        f"Could not connect to {where}: nothing answers on {where}.",
        f"the TCP connection opened, but no SSH server greeted within {waited:g} s",
        "check that this is the server's SSH port (ssh -v -p PORT HOST), that sshd runs "
        "and is not overloaded, and that no firewall or proxy swallows the connection",
    )


def _closed_early(address: str, port: int) -> "ConnectError":
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


@dataclass
class Result:
    status: int
    stdout: str = ""
    stderr: str = ""
    lines: list[str] = field(default_factory=list)  # redacted, merged, for people
    raw: bytes = b""  # stdout exactly as received (binary-safe)

    @property
    def ok(self) -> bool:
        return self.status == 0


def _signal_channel(chan, name: str = "TERM") -> None:
    """Send an SSH 'signal' request (OpenSSH >= 7.9 delivers it)."""
    try:
        from paramiko.common import cMSG_CHANNEL_REQUEST
        from paramiko.message import Message

        m = Message()
        m.add_byte(cMSG_CHANNEL_REQUEST)
        m.add_int(chan.remote_chanid)
        m.add_string("signal")
        m.add_boolean(False)
        m.add_string(name)
        chan.transport._send_user_message(m)
    except Exception:
        pass


class Transport:
    def __init__(
        self,
        address: str,
        port: int = 22,
        user: str = "root",
        *,
        key_file: str | None = None,
        password: str | None = None,
        sudo_password: str | None = None,
        redactor: Redactor | None = None,
        accept_new_host_key: bool = False,
        confirm_host_key: Callable[[str, str, str], bool] | None = None,
        connect_timeout: float = 10.0,
    ):
        self.address, self.port, self.user = address, int(port), user
        self.key_file = key_file
        self.password = password
        self.sudo_password = sudo_password
        self.redact = redactor or Redactor()
        self.redact.add(password)
        self.redact.add(sudo_password)
        self.accept_new_host_key = accept_new_host_key
        self.confirm_host_key = confirm_host_key
        self.connect_timeout = connect_timeout
        # Seconds of silence before checking the server is alive.  A host gone for good is
        # then reported within idle_probe + connect_timeout + the reconnect deadline.
        self.idle_probe = 10.0
        self._client = None
        self._lock = threading.RLock()
        self._sudo_mode: str | None = None  # "root" | "nopasswd" | "password"
        self._forwards: list[_Forward] = []
        self.commands_run = 0
        self.connects = 0
        # known_hosts lines skipped at the last connect, as ``file:line: reason``
        self.known_hosts_problems: list[str] = []

    # -- connection ---------------------------------------------------------
    @property
    def connected(self) -> bool:
        c = self._client
        t = c.get_transport() if c is not None else None
        return bool(t and t.is_active())

    def connect(self) -> "Transport":
        import paramiko

        with self._lock:
            if self.connected:
                return self
            self._close_client()
            client = paramiko.SSHClient()
            bad: list[str] = []
            known = hostkeys.lookup(self.address, self.port, bad)
            self.known_hosts_problems = bad
            entry = hostkeys.host_entry(self.address, self.port)
            for ktype, key in known.items():
                client.get_host_keys().add(entry, ktype, key)
            client.set_missing_host_key_policy(_Policy(self, known, bad))
            kwargs = dict(
                hostname=self.address,
                port=self.port,
                username=self.user,
                timeout=self.connect_timeout,
                banner_timeout=self.connect_timeout,
                auth_timeout=self.connect_timeout,
                allow_agent=True,
                look_for_keys=self.key_file is None,
            )
            if self.key_file:
                kwargs["key_filename"] = str(_expand(self.key_file))
            if self.password:
                kwargs["password"] = self.password
            try:
                client.connect(**kwargs)
            except (UnknownHostKey, HostKeyChanged):
                client.close()
                raise
            except paramiko.BadHostKeyException as exc:
                client.close()
                raise HostKeyChanged(
                    self.address,
                    exc.key.get_name(),
                    hostkeys.fingerprint(exc.key),
                    [hostkeys.fingerprint(exc.expected_key)],
                    self.port,
                ) from None
            except paramiko.AuthenticationException as exc:
                client.close()
                raise AuthError(
                    f"SSH login to {self.user}@{self.address}:{self.port} was refused.",
                    self.redact(str(exc)) or "the server rejected the key/password",
                    "check the user name, the key file (and that its public key is in "
                    "~/.ssh/authorized_keys on the server) or the SSH password",
                ) from None
            except (socket.timeout, TimeoutError):
                client.close()
                raise ConnectError(
                    f"Could not connect to {self.address}:{self.port}.",
                    f"no answer within {self.connect_timeout:.0f} s",
                    "check the address, that the server is up and that no firewall drops SSH",
                ) from None
            except paramiko.ssh_exception.NoValidConnectionsError as exc:
                # paramiko wraps "refused" and "no route" (for every address it tried) in
                # this; unwrapped, they got the generic "Unable to connect to port ..." text.
                client.close()
                errs = list(exc.errors.values())
                if errs and all(getattr(e, "errno", None) == errno.ECONNREFUSED for e in errs):
                    raise ConnectError(
                        f"Could not connect to {self.address}:{self.port}.",
                        "connection refused: nothing listens on that port",
                        "check the port and that sshd runs on the server (systemctl status ssh)",
                    ) from None
                raise ConnectError(
                    f"Could not connect to {self.address}:{self.port}.",
                    "the host is unreachable (no route)",
                    "check the address and the network between here and the server",
                ) from None
            except ConnectionRefusedError:
                client.close()
                raise ConnectError(
                    f"Could not connect to {self.address}:{self.port}.",
                    "connection refused: nothing listens on that port",
                    "check the port and that sshd runs on the server (systemctl status ssh)",
                ) from None
            except socket.gaierror as exc:
                client.close()
                raise ConnectError(
                    f"Could not resolve the host name {self.address}.",
                    str(exc),
                    "check the spelling or use the IP address",
                ) from None
            except paramiko.SSHException as exc:
                silent = _no_greeting(client, exc)  # before close() drops the transport
                client.close()
                if "No authentication methods available" in str(exc):
                    # paramiko's words when it had nothing to offer: no key file, no agent,
                    # no default key in ~/.ssh, no password.  Not a handshake problem.
                    raise AuthError(
                        f"No SSH key or password was offered to {self.user}@{self.address}.",
                        "no key file is set, no SSH agent answered and ~/.ssh holds no "
                        "default key (id_ed25519, id_ecdsa, id_rsa)",
                        "choose a key file or a password (Host screen: Authentication; "
                        "headless: [host] key_file, or STACK_TUI_SSH_PASSWORD)",
                    ) from None
                if silent:
                    raise _silent(self.address, self.port, self.connect_timeout) from None
                banner = "Error reading SSH protocol banner"
                msg = str(exc)
                if msg.startswith(banner) and (msg == banner or "reset" in msg.lower()):
                    raise _closed_early(self.address, self.port) from None
                raise ConnectError(
                    f"SSH handshake with {self.address}:{self.port} failed.",
                    self.redact(msg),
                    "check that this port really is an SSH server",
                ) from None
            except EOFError:
                # paramiko lets a bare EOFError through when the socket fails while it
                # sends its own banner (the peer reset the connection at once).
                client.close()
                raise _closed_early(self.address, self.port) from None
            except OSError as exc:
                client.close()
                why = exc.strerror or str(exc)
                if exc.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH):
                    why = "the host is unreachable (no route)"
                raise ConnectError(
                    f"Could not connect to {self.address}:{self.port}.",
                    why,
                    "check the address and the network between here and the server",
                ) from None
            t = client.get_transport()
            t.set_keepalive(10)
            try:
                # Without TCP_NODELAY every channel open waits out a delayed ACK
                # (~40 ms): 49 ms per remote command instead of 5 ms.
                t.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except (OSError, AttributeError):
                pass
            self._client = client
            self.connects += 1
            if self._sudo_mode is None:
                try:
                    self._probe_sudo()
                except BaseException:
                    # Without a working sudo this connection must not be used: the next
                    # run() would otherwise execute its command unprivileged.
                    self._close_client()
                    raise
            return self

    def reconnect(self, deadline: float = 60.0) -> None:
        """Re-establish a lost connection, retrying until ``deadline`` seconds."""
        end = time.monotonic() + deadline
        delay = 0.5
        while True:
            try:
                with self._lock:
                    self._close_client()
                    self.connect()
                return
            except (UnknownHostKey, HostKeyChanged, AuthError):
                raise
            except TransportError as exc:
                if time.monotonic() + delay > end:
                    raise ConnectionLost(
                        f"Lost the SSH connection to {self.address} and could not re-establish it "
                        f"within {deadline:.0f} s.",
                        exc.why,
                        "check that the server is up and reachable, then run apply again: "
                        "it resumes where it stopped",
                    ) from None
                time.sleep(delay)
                delay = min(delay * 2, 5)

    def _close_client(self) -> None:
        if self._client is not None:
            try:
                self._client.close()
            except Exception:
                pass
        self._client = None

    def close(self) -> None:
        for fw in self._forwards:
            fw.close()
        self._forwards.clear()
        with self._lock:
            self._close_client()

    def __enter__(self):
        return self.connect()

    def __exit__(self, *exc):
        self.close()

    def _transport(self):
        if not self.connected:
            raise ConnectionLost(
                f"The SSH connection to {self.address} is down.",
                "the server closed it or the network dropped",
            )
        return self._client.get_transport()

    def alive(self, timeout: float = 10.0) -> bool:
        """True when the server answers an SSH keepalive request within ``timeout``."""
        c = self._client
        t = c.get_transport() if c is not None else None
        if t is None or not t.is_active():
            return False
        done = threading.Event()

        def probe():
            try:
                t.global_request("keepalive@openssh.com", wait=True)
            except Exception:
                return
            if t.is_active():
                done.set()

        threading.Thread(target=probe, daemon=True, name="ssh-keepalive").start()
        return done.wait(timeout)

    # -- sudo -----------------------------------------------------------------
    def _probe_sudo(self) -> None:
        if self.user == "root":
            self._sudo_mode = "root"
            return
        r = self._exec("id -u", None, timeout=20)
        if r.stdout.strip() == "0":
            self._sudo_mode = "root"
            return
        r = self._exec("sudo -n true", None, timeout=20)
        if r.status == 0:
            self._sudo_mode = "nopasswd"
            return
        if not self.sudo_password:
            raise SudoError(
                f"{self.user}@{self.address} needs a password for sudo.",
                "sudo -n asked for a password and no sudo_password was given",
                "set the sudo password (TUI: Host screen; headless: STACK_TUI_SUDO_PASSWORD "
                "or the secrets file)",
            )
        r = self._exec("sudo -k -S -p '' true", self.sudo_password + "\n", timeout=20)
        if r.status != 0:
            raise SudoError(
                f"sudo as {self.user} on {self.address} failed.",
                "wrong sudo password, or the user may not use sudo "
                + (f"({self.redact(r.stderr.strip())})" if r.stderr.strip() else ""),
                "check the sudo password and that the user is in the sudo group",
            )
        self._sudo_mode = "password"

    @property
    def is_root(self) -> bool:
        return self._sudo_mode == "root"

    # -- commands -----------------------------------------------------------
    def wrap(self, command: str, secret_names: list[str], *, sudo: bool = True,
             tag: str | None = None) -> str:
        """The command line sent to the server (contains no secret values).

        ``tag`` becomes the wrapper shell's $0, so the command can be found
        (and killed) from another channel."""
        script = command
        if secret_names:
            reads = " && ".join(f"IFS= read -r {n} && export {n}" for n in secret_names)
            script = f"{reads} && {{ {command}\n}}"
        line = "sh -c " + shlex.quote(script) + (f" {tag}" if tag else "")
        if sudo and self._sudo_mode == "nopasswd":
            line = "sudo -n -- " + line
        elif sudo and self._sudo_mode == "password":
            line = "sudo -k -S -p '' -- " + line
        return line

    def run(
        self,
        command: str,
        *,
        stdin: str | bytes | None = None,
        secrets: dict[str, str] | None = None,
        sudo: bool = True,
        timeout: float | None = 600,
        on_line: Callable[[str], None] | None = None,
        check: bool = True,
        cancel: threading.Event | None = None,
    ) -> Result:
        """Run ``command`` with /bin/sh as root (via sudo when needed).

        ``secrets`` maps environment variable names to values; they are
        delivered on stdin and exported before ``command`` runs.
        """
        self.connect()
        names = list((secrets or {}).keys())
        for value in (secrets or {}).values():
            self.redact.add(value)
            if "\n" in value or "\r" in value:
                raise ValueError("secret values cannot contain newlines")
        head = ""
        if sudo and self._sudo_mode == "password":
            head += self.sudo_password + "\n"
        for name in names:
            head += secrets[name] + "\n"
        data = head.encode()
        if stdin is not None:
            data += stdin.encode() if isinstance(stdin, str) else stdin
        elif not data:
            data = None
        tag = f"stack-tui-run-{token_hex(6)}"
        line = self.wrap(command, names, sudo=sudo, tag=tag)
        r = self._exec(line, data, timeout=timeout, on_line=on_line, cancel=cancel, shown=command,
                       kill_tag=tag)
        if check and r.status != 0:
            raise CommandFailed(self.redact(command), r.status, r.lines[-20:])
        return r

    def _kill_remote(self, tag: str) -> None:
        """End what a timed-out or cancelled command left running on the server.

        The SSH "signal" request alone is not enough: sshd refuses it for root
        logins (no privilege separation after authentication), so the command
        kept running.  Find the wrapper shell by its tag ($0) and terminate
        its whole session (the command and everything it started)."""
        pattern = shlex.quote(f"[{tag[0]}]{tag[1:]}")  # never matches this killer itself
        # Sessions first, then kill.  Before the channel's own "signal" request: for a
        # non-root login sshd delivers that one to sudo only, which passes it to the tagged
        # shell alone; its children would live on untagged.
        script = (f"sids=$(for p in $(pgrep -f -- {pattern}); do ps -o sid= -p \"$p\"; done); "
                  "for s in $sids; do pkill -TERM -s \"$s\"; done; true")
        data = (self.sudo_password + "\n").encode() if self._sudo_mode == "password" else None
        try:
            self._exec(self.wrap(script, []), data, timeout=15)
        except TransportError:
            pass

    def _exec(self, line, data, *, timeout=None, on_line=None, cancel=None, shown=None,
              kill_tag=None) -> Result:
        import paramiko

        shown = self.redact(shown or line)
        try:
            chan = self._transport().open_session(timeout=self.connect_timeout)
            chan.exec_command(line)
        except (paramiko.SSHException, EOFError, OSError) as exc:
            raise ConnectionLost(
                f"The SSH connection to {self.address} dropped before running: {shown}",
                self.redact(str(exc)) or "connection closed",
            ) from None
        self.commands_run += 1
        if data:
            def feed():
                try:
                    chan.sendall(data if isinstance(data, bytes) else data.encode())
                except Exception:
                    pass
                finally:
                    try:
                        chan.shutdown_write()
                    except Exception:
                        pass
            threading.Thread(target=feed, daemon=True).start()
        else:
            chan.shutdown_write()
        out, err = bytearray(), bytearray()
        lines: list[str] = []
        partial = {1: b"", 2: b""}

        def emit(kind, chunk: bytes, final=False):
            buf = partial[kind] + chunk
            parts = buf.split(b"\n")
            partial[kind] = b"" if final else parts.pop()
            for raw in parts:
                if final and not raw:
                    continue
                text = self.redact(raw.decode("utf-8", "replace").rstrip("\r"))
                lines.append(text)
                if len(lines) > 2000:
                    del lines[:1000]
                if on_line is not None:
                    on_line(text)

        start = time.monotonic()
        last = start
        try:
            while True:
                got = False
                while chan.recv_ready():
                    chunk = chan.recv(65536)
                    out += chunk
                    emit(1, chunk)
                    got = True
                while chan.recv_stderr_ready():
                    chunk = chan.recv_stderr(65536)
                    err += chunk
                    emit(2, chunk)
                    got = True
                if chan.exit_status_ready() and not chan.recv_ready() and not chan.recv_stderr_ready():
                    # sshd sends the exit status as soon as the command ends, ahead of output
                    # still held back by the channel window: read on until EOF.  A background
                    # process may keep stdout open and EOF never come: then stop after a
                    # second without data.
                    if chan.eof_received or chan.closed or time.monotonic() - last > 1.0:
                        break
                if chan.closed and not got:
                    if not chan.exit_status_ready():
                        break
                if cancel is not None and cancel.is_set():
                    if kill_tag:
                        self._kill_remote(kill_tag)
                    _signal_channel(chan, "TERM")
                    chan.close()
                    raise CommandCancelled(f"Cancelled: {shown}", tail=lines[-20:])
                if timeout is not None and time.monotonic() - start > timeout:
                    if kill_tag:
                        self._kill_remote(kill_tag)
                    _signal_channel(chan, "TERM")
                    chan.close()
                    raise timed_out(shown, timeout, lines[-20:])
                if got:
                    last = time.monotonic()
                else:
                    if not self.connected:
                        break
                    if time.monotonic() - last > self.idle_probe:
                        # Quiet for a while: is the server still there?  A dead link
                        # (cable pulled, veth down) never errors on its own.
                        if not self.alive(self.connect_timeout):
                            self._close_client()
                            raise ConnectionLost(
                                f"The server {self.address} stopped answering while running: "
                                f"{shown}",
                                f"no answer to an SSH keepalive within {self.connect_timeout:.0f} s",
                                "check the network and the server; the step is retried after "
                                "reconnecting", tail=lines[-20:])
                        last = time.monotonic()
                    select.select([chan], [], [], 0.2)
        except (paramiko.SSHException, EOFError, OSError) as exc:
            raise ConnectionLost(
                f"The SSH connection to {self.address} dropped while running: {shown}",
                self.redact(str(exc)) or "connection closed",
                tail=lines[-20:],
            ) from None
        emit(1, b"", final=True)
        emit(2, b"", final=True)
        if not chan.exit_status_ready():
            raise ConnectionLost(
                f"The SSH connection to {self.address} dropped while running: {shown}",
                "the channel closed without an exit status",
                tail=lines[-20:],
            )
        status = chan.recv_exit_status()
        if status == -1 and not self.connected:
            # paramiko marks a channel "exit status ready" (-1) when the connection dies.
            raise ConnectionLost(
                f"The SSH connection to {self.address} dropped while running: {shown}",
                "the connection closed before the command finished",
                tail=lines[-20:],
            )
        chan.close()
        return Result(status, out.decode("utf-8", "replace"), err.decode("utf-8", "replace"), lines,
                      bytes(out))

    # -- files --------------------------------------------------------------
    def write_file(
        self,
        path: str,
        content: str | bytes,
        *,
        mode: int = 0o644,
        owner: str = "root",
        group: str | None = None,
    ) -> None:
        """Atomically replace ``path`` (temp file in the same dir + rename)."""
        data = content.encode() if isinstance(content, str) else content
        d = posixpath.dirname(path) or "."
        tmp = posixpath.join(d, f".{posixpath.basename(path)}.stack-tui.tmp")
        q = shlex.quote
        cmd = (
            f"(umask 022 && mkdir -p {q(d)}) && umask 077 && cat > {q(tmp)} && "
            f"chown {q(owner + ':' + (group or ''))} {q(tmp)} && "
            f"chmod {mode:o} {q(tmp)} && mv -f {q(tmp)} {q(path)}"
        )
        self.run(cmd, stdin=data, timeout=120)

    def read_bytes(self, path: str, timeout: float = 60) -> bytes | None:
        q = shlex.quote(path)
        r = self.run(f"if [ -e {q} ]; then cat {q}; else exit 3; fi", check=False, timeout=timeout)
        if r.status == 3:
            return None
        if r.status != 0:
            raise CommandFailed(f"read {path}", r.status, r.lines[-10:])
        return r.raw

    def read_file(self, path: str) -> str | None:
        data = self.read_bytes(path)
        return None if data is None else data.decode("utf-8", "replace")

    def sftp(self):
        """An SFTP session over the connection (the caller closes it)."""
        self.connect()
        return self._client.open_sftp()

    def upload(self, local: str, remote: str, *, mode: int = 0o644, owner: str = "root",
               group: str | None = None, progress: Callable[[int, int], None] | None = None) -> None:
        """SFTP into a private temp directory, then (with sudo when needed) chown/chmod/rename.

        The directory comes from ``mktemp -d`` as the connecting user (0700, a name
        nobody can guess) and the file is created 0600 before a byte is written: a
        predictable name in /tmp, chmodded afterwards, could be pre-created or read
        by another local user meanwhile."""
        q = shlex.quote
        made = self.run('d=$(mktemp -d "${TMPDIR:-/tmp}/stack-tui-upload.XXXXXXXXXX") && '
                        '(umask 077 && : > "$d/upload") && printf %s "$d"',
                        sudo=False, timeout=30)
        tmpdir = made.stdout.strip()
        if not re.fullmatch(r"/[^\n]*/stack-tui-upload\.[A-Za-z0-9]{10}", tmpdir):
            raise CommandFailed("mktemp -d", made.status, made.lines[-5:],
                                what=f"Could not make a private upload directory on "
                                     f"{self.address} (mktemp -d printed {tmpdir[:80]!r}).")
        tmp = posixpath.join(tmpdir, "upload")
        try:
            sftp = self.sftp()
            try:
                sftp.put(str(local), tmp, callback=progress)  # truncates: keeps 0600
            finally:
                sftp.close()
            d = posixpath.dirname(remote) or "."
            final_tmp = posixpath.join(d, f".{posixpath.basename(remote)}.stack-tui.tmp")
            self.run(
                f"mkdir -p {q(d)} && mv -f {q(tmp)} {q(final_tmp)} && "
                f"chown {q(owner + ':' + (group or ''))} {q(final_tmp)} && "
                f"chmod {mode:o} {q(final_tmp)} && mv -f {q(final_tmp)} {q(remote)}",
                timeout=120,
            )
        finally:
            try:
                self.run(f"rm -rf {q(tmpdir)}", sudo=False, check=False, timeout=30)
            except TransportError:
                pass  # the upload's own error (a dropped connection) is the one to show

    def download(self, remote: str, local: str) -> None:
        from .fsutil import atomic_write

        data = self.read_bytes(remote, timeout=600)
        if data is None:
            raise CommandFailed(f"download {remote}", 3, [f"{remote} does not exist"])
        atomic_write(_expand(local), data, mode=0o600)

    # -- port forwarding ----------------------------------------------------
    def forward(self, remote_host: str, remote_port: int) -> int:
        """Listen on 127.0.0.1:<free port> and tunnel to remote_host:remote_port."""
        for fw in self._forwards:
            if (fw.remote_host, fw.remote_port) == (remote_host, remote_port) and fw.alive:
                return fw.local_port
        fw = _Forward(self, remote_host, remote_port)
        self._forwards.append(fw)
        return fw.local_port


def _expand(path):
    from pathlib import Path

    return Path(str(path)).expanduser()


def _no_greeting(client, exc) -> bool:
    """True when the server accepted TCP but never sent its SSH banner.

    paramiko then says "No existing session" (its wait for the handshake ended) or
    "Error reading SSH protocol banner" after a socket timeout: neither tells the user
    that nothing answers."""
    t = client.get_transport()
    if t is None or getattr(t, "remote_version", ""):
        return False
    msg = str(exc)
    timed = isinstance(exc.__context__, (socket.timeout, TimeoutError))
    return msg == "No existing session" or (msg.startswith("Error reading SSH protocol banner")
                                            and timed)


class _Policy:
    """Ask the caller about unknown keys; refuse keys of a host we know."""

    def __init__(self, transport: Transport, known: dict, bad: list | None = None):
        self.t = transport
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


class _Forward:
    def __init__(self, transport: Transport, remote_host: str, remote_port: int):
        self.t = transport
        self.remote_host, self.remote_port = remote_host, remote_port
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(32)
        self.local_port = self.sock.getsockname()[1]
        self.alive = True
        threading.Thread(target=self._accept, daemon=True, name=f"fwd-{remote_port}").start()

    def close(self):
        self.alive = False
        try:
            # close() alone does not wake the accept() blocked in the other thread: the
            # port kept accepting, and each new client made the closed transport reconnect.
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        try:
            self.sock.close()
        except OSError:
            pass

    def _accept(self):
        while self.alive:
            try:
                conn, peer = self.sock.accept()
            except OSError:
                return
            if not self.alive:
                conn.close()
                return
            threading.Thread(target=self._pump, args=(conn, peer), daemon=True).start()

    def _pump(self, conn, peer):
        chan = None
        try:
            if not self.t.connected:
                try:
                    self.t.reconnect(30)
                except TransportError:
                    conn.close()
                    return
            chan = self.t._transport().open_channel(
                "direct-tcpip", (self.remote_host, self.remote_port), peer, timeout=15
            )
        except Exception:
            conn.close()
            return
        try:
            while True:
                r, _, _ = select.select([conn, chan], [], [], 1.0)
                if conn in r:
                    data = conn.recv(65536)
                    if not data:
                        break
                    chan.sendall(data)
                if chan in r:
                    data = chan.recv(65536)
                    if not data:
                        break
                    conn.sendall(data)
                if chan.closed:
                    break
        except Exception:
            pass
        finally:
            for c in (chan, conn):
                try:
                    c.close()
                except Exception:
                    pass
