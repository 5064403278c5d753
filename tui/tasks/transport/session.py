"""The paramiko implementation of the transport: one SSH connection per run.

It keeps the connection, the sudo mode and the forwards; connecting
(``connect.py``), running a command on a channel (``commands.py``), files
(``files.py``) and forwards (``forwards.py``) live in their own modules.
"""

from __future__ import annotations

import threading
import time
from secrets import token_hex
from typing import Callable

from ..redact import Redactor
from . import files
from .commands import ChannelRun, Result, feed, kill_script, wrap
from .connect import open_client
from .errors import (
    AuthError, CommandFailed, ConnectionLost, HostKeyChanged, SudoError, TransportError,
    UnknownHostKey,
)
from .forwards import Forward


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
        self._forwards: list[Forward] = []
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
        with self._lock:
            if self.connected:
                return self
            self.drop()
            self._client = open_client(self)
            self.connects += 1
            if self._sudo_mode is None:
                try:
                    self._sudo_mode = self._probe_sudo()
                except BaseException:
                    # Without a working sudo this connection must not be used: the next
                    # run() would otherwise execute its command unprivileged.
                    self.drop()
                    raise
            return self

    def reconnect(self, deadline: float = 60.0) -> None:
        """Re-establish a lost connection, retrying until ``deadline`` seconds."""
        end = time.monotonic() + deadline
        delay = 0.5
        while True:
            try:
                with self._lock:
                    self.drop()
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

    def drop(self) -> None:
        """Close the SSH connection (not the forwards: they reconnect on use)."""
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
            self.drop()

    def __enter__(self):
        return self.connect()

    def __exit__(self, *exc):
        self.close()

    def ssh(self):
        """The live paramiko Transport (channels are opened on it), or ConnectionLost."""
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
    def _probe_sudo(self) -> str:
        if self.user == "root":
            return "root"
        if self._exec("id -u", None, timeout=20).stdout.strip() == "0":
            return "root"
        if self._exec("sudo -n true", None, timeout=20).status == 0:
            return "nopasswd"
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
        return "password"

    @property
    def sudo_mode(self) -> str | None:
        """How commands get root: "root" (logged in as uid 0), "nopasswd" (sudo -n),
        "password" (sudo -S with the sudo password); None before the first connect."""
        return self._sudo_mode

    @property
    def is_root(self) -> bool:
        return self._sudo_mode == "root"

    # -- commands -----------------------------------------------------------
    def wrap(self, command: str, secret_names: list[str], *, sudo: bool = True,
             tag: str | None = None) -> str:
        """The command line sent to the server (contains no secret values)."""
        return wrap(command, secret_names, self._sudo_mode, sudo=sudo, tag=tag)

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
        delivered on stdin and exported before ``command`` runs.  At ``timeout``
        seconds (or when ``cancel`` is set) the command is ended on the host.
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

    def kill(self, tag: str) -> None:
        """End what a timed-out or cancelled command (tagged ``tag``) left running."""
        # Sessions first, then kill.  Before the channel's own "signal" request: for a
        # non-root login sshd delivers that one to sudo only, which passes it to the tagged
        # shell alone; its children would live on untagged.
        data = (self.sudo_password + "\n").encode() if self._sudo_mode == "password" else None
        try:
            self._exec(self.wrap(kill_script(tag), []), data, timeout=15)
        except TransportError:
            pass

    def _exec(self, line, data, *, timeout=None, on_line=None, cancel=None, shown=None,
              kill_tag=None) -> Result:
        import paramiko

        shown = self.redact(shown or line)
        try:
            chan = self.ssh().open_session(timeout=self.connect_timeout)
            chan.exec_command(line)
        except (paramiko.SSHException, EOFError, OSError) as exc:
            raise ConnectionLost(
                f"The SSH connection to {self.address} dropped before running: {shown}",
                self.redact(str(exc)) or "connection closed",
            ) from None
        self.commands_run += 1
        feed(chan, data)
        return ChannelRun(self, chan, shown, timeout=timeout, on_line=on_line, cancel=cancel,
                          kill_tag=kill_tag).result()

    # -- files --------------------------------------------------------------
    def write_file(self, path: str, content: str | bytes, *, mode: int = 0o644,
                   owner: str = "root", group: str | None = None) -> None:
        """Atomically replace ``path`` (temp file in the same dir + rename)."""
        files.write_file(self, path, content, mode=mode, owner=owner, group=group)

    def read_bytes(self, path: str, timeout: float = 60) -> bytes | None:
        return files.read_bytes(self, path, timeout)

    def read_file(self, path: str) -> str | None:
        """The text of ``path`` on the host, None when it does not exist."""
        return files.read_file(self, path)

    read = read_file

    def sftp(self):
        """An SFTP session over the connection (the caller closes it)."""
        self.connect()
        return self._client.open_sftp()

    def upload(self, local: str, remote: str, *, mode: int = 0o644, owner: str = "root",
               group: str | None = None, progress: Callable[[int, int], None] | None = None) -> None:
        """SFTP into a private temp directory, then chown/chmod/rename into place."""
        files.upload(self, local, remote, mode=mode, owner=owner, group=group, progress=progress)

    def download(self, remote: str, local: str) -> None:
        files.download(self, remote, local)

    # -- port forwarding ----------------------------------------------------
    def forward(self, remote_host: str, remote_port: int) -> int:
        """Listen on 127.0.0.1:<free port> and tunnel to remote_host:remote_port."""
        for fw in self._forwards:
            if (fw.remote_host, fw.remote_port) == (remote_host, remote_port) and fw.alive:
                return fw.local_port
        fw = Forward(self, remote_host, remote_port)
        self._forwards.append(fw)
        return fw.local_port
