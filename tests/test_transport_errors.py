"""Transport errors that need no sandbox host: a silent port on loopback, the
host-key-changed advice, malformed known_hosts lines.

A real TCP listener on 127.0.0.1 stands in for the silent server; known_hosts
files are real files in a temporary HOME / STACK_TUI_HOME.
"""

from __future__ import annotations

import base64
import socket
import stat
import threading
import time

import paramiko
import pytest

from tui.tasks import hostkeys, paths
from tui.tasks.transport import ConnectError, HostKeyChanged, Transport, UnknownHostKey


@pytest.fixture(autouse=True)
def homes(tmp_path, monkeypatch):
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("STACK_TUI_HOME", str(tmp_path / "stack"))
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    return home


@pytest.fixture
def silent_port():
    """A listener that accepts every connection and never sends a byte."""
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept():
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(srv.accept()[0])
            except OSError:
                continue

    threading.Thread(target=accept, daemon=True).start()
    yield srv.getsockname()[1]
    stop.set()
    for c in held:
        c.close()
    srv.close()


@pytest.mark.parametrize("attempt", range(3))  # paramiko's banner wait and ours race
def test_a_silent_port_says_nothing_answers(silent_port, attempt):
    t = Transport("127.0.0.1", silent_port, password="unused", connect_timeout=1.5)
    t0 = time.monotonic()
    with pytest.raises(ConnectError) as ei:
        t.connect()
    took = time.monotonic() - t0
    text = str(ei.value)
    assert f"nothing answers on 127.0.0.1:{silent_port}" in text
    assert "No existing session" not in text and "handshake" not in text
    assert "within 1.5 s" in text  # the wait is named
    assert 1.4 <= took < 6
    assert t.commands_run == 0


# --------------------------------------------------------------------------- host key changed

def test_changed_key_advice_on_port_22_names_the_bare_host():
    err = HostKeyChanged("203.0.113.7", "ssh-ed25519", "SHA256:new", ["ssh-ed25519 SHA256:old"])
    assert "`ssh-keygen -R 203.0.113.7`" in err.hint
    assert "known_hosts" in err.hint


def test_changed_key_advice_on_another_port_names_the_bracketed_entry():
    err = HostKeyChanged("203.0.113.7", "ssh-ed25519", "SHA256:new", ["ssh-ed25519 SHA256:old"],
                         2222)
    assert "`ssh-keygen -R '[203.0.113.7]:2222'`" in err.hint
    assert "[203.0.113.7]:2222 HAS CHANGED" in err.what


# --------------------------------------------------------------------------- known_hosts

def _key_line(host: str) -> tuple[str, paramiko.PKey]:
    key = paramiko.Ed25519Key.from_private_key_file(_ed25519_file())
    return f"{host} {key.get_name()} {key.get_base64()}", key


_KEYFILE: list[str] = []


def _ed25519_file() -> str:
    if not _KEYFILE:
        import subprocess
        import tempfile

        d = tempfile.mkdtemp()
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", f"{d}/k"], check=True)
        _KEYFILE.append(f"{d}/k")
    return _KEYFILE[0]


BAD_LINES = [
    "badhost ssh-ed25519 !!!not-base64!!!",                  # paramiko: InvalidHostKey (a tuple)
    "onlytwo ssh-ed25519",                                    # too few fields
    "trunc ssh-ed25519 " + base64.b64encode(b"\x00\x00\x00\x0bssh-ed25519\x00").decode(),
]


def test_bad_lines_in_the_users_known_hosts_are_skipped_and_reported(homes):
    good, key = _key_line("[127.0.0.1]:2200")
    path = homes / ".ssh" / "known_hosts"
    lines = ["# comment", BAD_LINES[0], BAD_LINES[1], "", BAD_LINES[2], good]
    path.write_bytes("\n".join(lines).encode() + b"\nlatin1 \xe9\xff ssh-ed25519 AAAA\n")
    bad: list[str] = []
    found = hostkeys.lookup("127.0.0.1", 2200, bad)
    assert found == {"ssh-ed25519": key}  # the good line after the bad ones still counts
    assert bad == [f"{path}:2: invalid line, ignored", f"{path}:3: invalid line, ignored",
                   f"{path}:5: invalid line, ignored", f"{path}:7: invalid line, ignored"]


def test_bad_lines_in_our_own_known_hosts_keep_the_good_ones(homes):
    good, key = _key_line("[127.0.0.1]:2201")
    ours = paths.known_hosts_file()
    ours.parent.mkdir(parents=True, exist_ok=True)
    ours.write_text(BAD_LINES[0] + "\n" + good + "\n")
    found = hostkeys.lookup("127.0.0.1", 2201)  # no list given: no exception either
    assert found == {"ssh-ed25519": key}
    other = paramiko.Ed25519Key.from_private_key_file(_ed25519_file())
    hostkeys.remember("127.0.0.2", 22, other)  # rewriting the file works too
    assert hostkeys.lookup("127.0.0.1", 2201) == {"ssh-ed25519": key}


def test_saving_our_known_hosts_keeps_malformed_lines_and_other_hosts(homes):
    """remember/forget rewrite only the host's own line: a malformed line, a comment and
    other hosts' keys stay as they were (paramiko's save dropped them silently)."""
    good, key = _key_line("[127.0.0.1]:2202")
    ours = paths.known_hosts_file()
    ours.parent.mkdir(parents=True, exist_ok=True)
    ours.write_text("# mine\n" + BAD_LINES[0] + "\n" + good + "\n")
    other = paramiko.Ed25519Key.from_private_key_file(_ed25519_file())
    hostkeys.remember("127.0.0.3", 22, other)
    hostkeys.remember("127.0.0.3", 22, other)   # again: replaced, not doubled
    text = ours.read_text()
    assert text.splitlines()[:3] == ["# mine", BAD_LINES[0], good]
    assert text.count("127.0.0.3 ssh-ed25519 ") == 1
    assert hostkeys.lookup("127.0.0.3", 22) == {"ssh-ed25519": other}
    assert hostkeys.forget("127.0.0.3") is True and hostkeys.forget("127.0.0.3") is False
    assert ours.read_text().splitlines() == ["# mine", BAD_LINES[0], good]
    assert stat.S_IMODE(ours.stat().st_mode) == 0o600
    assert hostkeys.lookup("127.0.0.1", 2202) == {"ssh-ed25519": key}


def test_connect_with_a_bad_known_hosts_line_gives_a_plain_error(homes, silent_port):
    """The malformed line no longer raises out of connect (it gave paramiko's raw
    ('line', Error) tuple); the connection goes on and the skipped line is kept."""
    path = homes / ".ssh" / "known_hosts"
    path.write_text(BAD_LINES[0] + "\n")
    t = Transport("127.0.0.1", silent_port, password="unused", connect_timeout=1)
    with pytest.raises(ConnectError) as ei:
        t.connect()
    assert "nothing answers" in str(ei.value)
    assert t.known_hosts_problems == [f"{path}:1: invalid line, ignored"]


def test_unknown_key_message_names_the_skipped_lines():
    err = UnknownHostKey("[h]:2222", "ssh-ed25519", "SHA256:x", ["/k:3: invalid line, ignored"])
    assert "/k:3: invalid line, ignored" in err.why
    assert "SHA256:x" in err.why


def test_a_port_forward_keeps_accepting_after_a_failed_accept(monkeypatch):
    """accept() can fail for one client (ECONNABORTED: gone before it was accepted; EMFILE
    for a moment); the forward must go on accepting, not leave its port listening with no
    one behind it (every later request then times out)."""
    from tui.tasks.transport import forwards

    real, calls = socket.socket.accept, []

    def flaky(self):
        calls.append(1)
        if len(calls) == 1:
            raise ConnectionAbortedError(103, "Software caused connection abort")
        return real(self)

    pumped = threading.Event()
    monkeypatch.setattr(socket.socket, "accept", flaky)
    monkeypatch.setattr(forwards.Forward, "_pump", lambda self, conn, peer: (conn.close(),
                                                                             pumped.set()))
    fw = forwards.Forward(object(), "127.0.0.1", 9696)
    try:
        with socket.create_connection(("127.0.0.1", fw.local_port), timeout=5):
            assert pumped.wait(5), "the forward stopped accepting after one failed accept"
        assert len(calls) >= 2
    finally:
        fw.close()
