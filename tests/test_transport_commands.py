"""The command loop (transport/commands.py) on a stand-in channel, no host: a
command that never returns is stopped at its limit, ended on the host by its tag,
and reported with its name and the wait; output before the hang is kept."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from tui.tasks.transport import CommandCancelled, CommandTimeout
from tui.tasks.transport.commands import ChannelRun, kill_script, wrap


class HungChannel:
    """A channel whose command printed one line and then never ends."""

    def __init__(self):
        self.a, self.b = socket.socketpair()
        self.pending = [b"started\n"]
        self.closed = False
        self.eof_received = False
        self.signals: list[str] = []
        self.remote_chanid = 1

    def fileno(self):
        return self.a.fileno()

    def recv_ready(self):
        return bool(self.pending)

    def recv(self, n):
        return self.pending.pop(0)

    def recv_stderr_ready(self):
        return False

    def exit_status_ready(self):
        return False

    def close(self):
        self.closed = True
        self.a.close()
        self.b.close()


class Session:
    address = "203.0.113.9"
    connected = True
    connect_timeout = 1.0
    idle_probe = 60.0

    def __init__(self):
        self.killed: list[str] = []

    @staticmethod
    def redact(text):
        return text

    def alive(self, timeout):
        return True

    def drop(self):
        self.connected = False

    def kill(self, tag):
        self.killed.append(tag)


def test_a_command_that_never_returns_is_stopped_and_killed_at_its_limit():
    s, chan = Session(), HungChannel()
    shown = "LC_ALL=C.UTF-8 rabbitmqctl list_users"
    t0 = time.monotonic()
    with pytest.raises(CommandTimeout) as ei:
        ChannelRun(s, chan, shown, timeout=0.6, kill_tag="stack-tui-run-abc123").result()
    took = time.monotonic() - t0
    assert 0.6 <= took < 3
    assert s.killed == ["stack-tui-run-abc123"] and chan.closed
    err = ei.value
    assert err.what == "Timed out after 1 s: rabbitmqctl list_users did not finish."
    assert "stopped on the host" in err.why and "Retry" in err.hint
    assert err.tail == ["started"]


def test_cancel_stops_and_kills_too():
    s, chan = Session(), HungChannel()
    cancel = threading.Event()
    threading.Timer(0.3, cancel.set).start()
    with pytest.raises(CommandCancelled):
        ChannelRun(s, chan, "sleep 1000", timeout=60, cancel=cancel, kill_tag="tag-1").result()
    assert s.killed == ["tag-1"] and chan.closed


def test_the_kill_script_never_matches_itself_and_ends_whole_sessions():
    script = kill_script("stack-tui-run-abc123")
    assert "pgrep -f -- '[s]tack-tui-run-abc123'" in script
    assert 'pkill -TERM -s "$s"' in script


def test_wrap_puts_the_tag_as_dollar_zero_and_sudo_in_front():
    line = wrap("echo hi", ["DB_PW"], "nopasswd", tag="stack-tui-run-x")
    assert line.startswith("sudo -n -- sh -c ")
    assert line.endswith(" stack-tui-run-x")
    assert "IFS= read -r DB_PW && export DB_PW" in line
    assert wrap("id", [], "root") == "sh -c id"
    assert wrap("id", [], "password").startswith("sudo -k -S -p '' -- ")
