"""upload() without a host: its shell runs in a local /bin/sh, SFTP is a local copy.

What is checked is the order of events on the "host": the private directory
(``mktemp -d`` as the connecting user) and the 0600 file exist before the first
byte arrives, the file lands atomically with its mode, and nothing is left behind.
The same upload against a real sandbox host is tests/e2e/test_transport.py -k upload.
"""

from __future__ import annotations

import getpass
import os
import stat
import subprocess

import pytest

from tui.tasks.transport import CommandFailed, Result, Transport


class LocalHost:
    """Runs the transport's commands in a local shell; SFTP puts are local copies."""

    def __init__(self, tmpdir):
        self.tmpdir = str(tmpdir)
        self.ran: list[tuple[str, bool]] = []
        self.seen_at_put: list[tuple[int, int, int]] = []

    def run(self, command, *, sudo=True, check=True, timeout=600, **kw):
        self.ran.append((command, sudo))
        p = subprocess.run(["/bin/sh", "-c", command], capture_output=True, timeout=timeout,
                           env={**os.environ, "TMPDIR": self.tmpdir})
        out = p.stdout.decode()
        r = Result(p.returncode, out, p.stderr.decode(), out.splitlines(), p.stdout)
        if check and p.returncode:
            raise CommandFailed(command, p.returncode, r.lines + p.stderr.decode().splitlines())
        return r

    def sftp(self):
        host = self

        class Sftp:
            def put(self, local, remote, callback=None):
                st, dst = os.stat(os.path.dirname(remote)), os.stat(remote)
                host.seen_at_put.append((stat.S_IMODE(st.st_mode), stat.S_IMODE(dst.st_mode),
                                         dst.st_size))
                with open(local, "rb") as src, open(remote, "wb") as out:
                    data = src.read()
                    out.write(data)
                if callback:
                    callback(len(data), len(data))

            def close(self):
                pass
        return Sftp()


@pytest.fixture
def t(tmp_path, monkeypatch):
    tr = Transport("192.0.2.1")
    host = LocalHost(tmp_path / "remote-tmp")
    os.mkdir(host.tmpdir)
    monkeypatch.setattr(tr, "run", host.run)
    monkeypatch.setattr(tr, "sftp", host.sftp)
    return tr, host


def test_upload_goes_through_a_private_directory_made_by_the_user(t, tmp_path):
    tr, host = t
    local = tmp_path / "image.bin"
    local.write_bytes(b"\x00payload\xff" * 1000)
    dest = tmp_path / "srv" / "image.bin"
    me = getpass.getuser()
    tr.upload(str(local), str(dest), mode=0o640, owner=me)

    assert dest.read_bytes() == local.read_bytes()
    assert stat.S_IMODE(dest.stat().st_mode) == 0o640
    # before the first byte: the directory is 0700 and the file exists, 0600 and empty
    assert host.seen_at_put == [(0o700, 0o600, 0)]
    first, as_sudo = host.ran[0]
    assert "mktemp -d" in first and as_sudo is False
    assert "/tmp/.stack-tui-upload" not in " ".join(c for c, _ in host.ran)
    assert os.listdir(host.tmpdir) == []          # the private directory is gone
    assert os.listdir(dest.parent) == ["image.bin"]


def test_a_failed_upload_leaves_no_private_directory(t, tmp_path):
    tr, host = t
    with pytest.raises(FileNotFoundError):
        tr.upload(str(tmp_path / "missing.bin"), str(tmp_path / "srv" / "x"))
    assert os.listdir(host.tmpdir) == []
    assert not (tmp_path / "srv").exists()
