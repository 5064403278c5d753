"""Files on the host: atomic writes with mode and owner, reads, SFTP uploads
through a private directory, downloads.  Each function takes the Transport ``t``
and uses only its public methods (run, sftp, address)."""

from __future__ import annotations

import posixpath
import re
import shlex
from typing import Callable

from ..fsutil import atomic_write
from .connect import expand
from .errors import CommandFailed, TransportError


def write_file(
    t,
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
    t.run(cmd, stdin=data, timeout=120)


def read_bytes(t, path: str, timeout: float = 60) -> bytes | None:
    q = shlex.quote(path)
    r = t.run(f"if [ -e {q} ]; then cat {q}; else exit 3; fi", check=False, timeout=timeout)
    if r.status == 3:
        return None
    if r.status != 0:
        raise CommandFailed(f"read {path}", r.status, r.lines[-10:])
    return r.raw


def read_file(t, path: str) -> str | None:
    data = read_bytes(t, path)
    return None if data is None else data.decode("utf-8", "replace")


def upload(t, local: str, remote: str, *, mode: int = 0o644, owner: str = "root",
           group: str | None = None, progress: Callable[[int, int], None] | None = None) -> None:
    """SFTP into a private temp directory, then (with sudo when needed) chown/chmod/rename.

    The directory comes from ``mktemp -d`` as the connecting user (0700, a name
    nobody can guess) and the file is created 0600 before a byte is written: a
    predictable name in /tmp, chmodded afterwards, could be pre-created or read
    by another local user meanwhile."""
    q = shlex.quote
    made = t.run('d=$(mktemp -d "${TMPDIR:-/tmp}/stack-tui-upload.XXXXXXXXXX") && '
                 '(umask 077 && : > "$d/upload") && printf %s "$d"',
                 sudo=False, timeout=30)
    tmpdir = made.stdout.strip()
    if not re.fullmatch(r"/[^\n]*/stack-tui-upload\.[A-Za-z0-9]{10}", tmpdir):
        raise CommandFailed("mktemp -d", made.status, made.lines[-5:],
                            what=f"Could not make a private upload directory on "
                                 f"{t.address} (mktemp -d printed {tmpdir[:80]!r}).")
    tmp = posixpath.join(tmpdir, "upload")
    try:
        sftp = t.sftp()
        try:
            sftp.put(str(local), tmp, callback=progress)  # truncates: keeps 0600
        finally:
            sftp.close()
        d = posixpath.dirname(remote) or "."
        final_tmp = posixpath.join(d, f".{posixpath.basename(remote)}.stack-tui.tmp")
        t.run(
            f"mkdir -p {q(d)} && mv -f {q(tmp)} {q(final_tmp)} && "
            f"chown {q(owner + ':' + (group or ''))} {q(final_tmp)} && "
            f"chmod {mode:o} {q(final_tmp)} && mv -f {q(final_tmp)} {q(remote)}",
            timeout=120,
        )
    finally:
        try:
            t.run(f"rm -rf {q(tmpdir)}", sudo=False, check=False, timeout=30)
        except TransportError:
            pass  # the upload's own error (a dropped connection) is the one to show


def download(t, remote: str, local: str) -> None:
    data = read_bytes(t, remote, timeout=600)
    if data is None:
        raise CommandFailed(f"download {remote}", 3, [f"{remote} does not exist"])
    atomic_write(expand(local), data, mode=0o600)
