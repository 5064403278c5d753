"""Running one command on an open SSH channel: the sudo/secrets wrapper, streamed
output, the exit status, the time limit, cancel, and ending what a stopped command
left running on the host."""

from __future__ import annotations

import select
import shlex
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

from .errors import CommandCancelled, ConnectionLost, timed_out


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


def wrap(command: str, secret_names: list[str], sudo_mode: str | None, *, sudo: bool = True,
         tag: str | None = None) -> str:
    """The command line sent to the server (contains no secret values).

    ``tag`` becomes the wrapper shell's $0, so the command can be found
    (and killed) from another channel."""
    script = command
    if secret_names:
        reads = " && ".join(f"IFS= read -r {n} && export {n}" for n in secret_names)
        script = f"{reads} && {{ {command}\n}}"
    line = "sh -c " + shlex.quote(script) + (f" {tag}" if tag else "")
    if sudo and sudo_mode == "nopasswd":
        line = "sudo -n -- " + line
    elif sudo and sudo_mode == "password":
        line = "sudo -k -S -p '' -- " + line
    return line


def kill_script(tag: str) -> str:
    """Shell that ends the session of the wrapper shell tagged ``tag``.

    The SSH "signal" request alone is not enough: sshd refuses it for root
    logins (no privilege separation after authentication), so the command
    kept running.  Find the wrapper shell by its tag ($0) and terminate
    its whole session (the command and everything it started)."""
    pattern = shlex.quote(f"[{tag[0]}]{tag[1:]}")  # never matches this killer itself
    return (f"sids=$(for p in $(pgrep -f -- {pattern}); do ps -o sid= -p \"$p\"; done); "
            "for s in $sids; do pkill -TERM -s \"$s\"; done; true")


def signal_channel(chan, name: str = "TERM") -> None:
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


def feed(chan, data) -> None:
    """Send ``data`` as the command's stdin (in a thread: it may be large), then EOF."""
    if not data:
        chan.shutdown_write()
        return

    def send():
        try:
            chan.sendall(data if isinstance(data, bytes) else data.encode())
        except Exception:
            pass
        finally:
            try:
                chan.shutdown_write()
            except Exception:
                pass
    threading.Thread(target=send, daemon=True).start()


class Lines:
    """Splits stdout/stderr chunks into redacted lines for people, as they come."""

    def __init__(self, redact: Callable[[str], str], on_line=None):
        self.redact, self.on_line = redact, on_line
        self.lines: list[str] = []
        self.partial = {1: b"", 2: b""}

    def add(self, kind: int, chunk: bytes, final: bool = False) -> None:
        buf = self.partial[kind] + chunk
        parts = buf.split(b"\n")
        self.partial[kind] = b"" if final else parts.pop()
        for raw in parts:
            if final and not raw:
                continue
            text = self.redact(raw.decode("utf-8", "replace").rstrip("\r"))
            self.lines.append(text)
            if len(self.lines) > 2000:
                del self.lines[:1000]
            if self.on_line is not None:
                self.on_line(text)

    def tail(self) -> list[str]:
        return self.lines[-20:]


class ChannelRun:
    """One command on one channel, read to its end.

    ``session`` is what the channel belongs to: ``connected``, ``alive(timeout)``,
    ``drop()`` (close a dead connection), ``kill(tag)``, ``address``,
    ``connect_timeout`` and ``idle_probe``."""

    def __init__(self, session, chan, shown: str, *, timeout=None, on_line=None, cancel=None,
                 kill_tag=None):
        self.s, self.chan, self.shown = session, chan, shown
        self.timeout, self.cancel, self.kill_tag = timeout, cancel, kill_tag
        self.out, self.err = bytearray(), bytearray()
        self.lines = Lines(session.redact, on_line)

    def result(self) -> Result:
        import paramiko

        try:
            self._read_until_done()
        except (paramiko.SSHException, EOFError, OSError) as exc:
            raise self._lost(self.s.redact(str(exc)) or "connection closed") from None
        self.lines.add(1, b"", final=True)
        self.lines.add(2, b"", final=True)
        chan = self.chan
        if not chan.exit_status_ready():
            raise self._lost("the channel closed without an exit status")
        status = chan.recv_exit_status()
        if status == -1 and not self.s.connected:
            # paramiko marks a channel "exit status ready" (-1) when the connection dies.
            raise self._lost("the connection closed before the command finished")
        chan.close()
        return Result(status, self.out.decode("utf-8", "replace"),
                      self.err.decode("utf-8", "replace"), self.lines.lines, bytes(self.out))

    def _lost(self, why: str) -> ConnectionLost:
        return ConnectionLost(
            f"The SSH connection to {self.s.address} dropped while running: {self.shown}",
            why, tail=self.lines.tail())

    def _drain(self) -> bool:
        chan, got = self.chan, False
        while chan.recv_ready():
            chunk = chan.recv(65536)
            self.out += chunk
            self.lines.add(1, chunk)
            got = True
        while chan.recv_stderr_ready():
            chunk = chan.recv_stderr(65536)
            self.err += chunk
            self.lines.add(2, chunk)
            got = True
        return got

    def _finished(self, got: bool, last: float) -> bool:
        chan = self.chan
        if chan.exit_status_ready() and not chan.recv_ready() and not chan.recv_stderr_ready():
            # sshd sends the exit status as soon as the command ends, ahead of output
            # still held back by the channel window: read on until EOF.  A background
            # process may keep stdout open and EOF never come: then stop after a
            # second without data.
            if chan.eof_received or chan.closed or time.monotonic() - last > 1.0:
                return True
        return chan.closed and not got and not chan.exit_status_ready()

    def _stop(self) -> None:
        """End the command on the host, then the channel."""
        if self.kill_tag:
            self.s.kill(self.kill_tag)
        signal_channel(self.chan, "TERM")
        self.chan.close()

    def _read_until_done(self) -> None:
        start = last = time.monotonic()
        while True:
            got = self._drain()
            if self._finished(got, last):
                return
            if self.cancel is not None and self.cancel.is_set():
                self._stop()
                raise CommandCancelled(f"Cancelled: {self.shown}", tail=self.lines.tail())
            if self.timeout is not None and time.monotonic() - start > self.timeout:
                self._stop()
                raise timed_out(self.shown, self.timeout, self.lines.tail())
            if got:
                last = time.monotonic()
                continue
            if not self.s.connected:
                return
            if time.monotonic() - last > self.s.idle_probe:
                self._probe_alive()
                last = time.monotonic()
            select.select([self.chan], [], [], 0.2)

    def _probe_alive(self) -> None:
        # Quiet for a while: is the server still there?  A dead link
        # (cable pulled, veth down) never errors on its own.
        if self.s.alive(self.s.connect_timeout):
            return
        self.s.drop()
        raise ConnectionLost(
            f"The server {self.s.address} stopped answering while running: {self.shown}",
            f"no answer to an SSH keepalive within {self.s.connect_timeout:.0f} s",
            "check the network and the server; the step is retried after reconnecting",
            tail=self.lines.tail())
