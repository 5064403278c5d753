"""Files written whole or not at all, and read only when they are what they claim (a leaf module)."""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from pathlib import Path


class FileRefused(ValueError):
    """A file that is not a regular file of a sane size (a directory, FIFO, device, huge);
    ``size`` is set when the size was the reason."""

    def __init__(self, message: str, size: int | None = None):
        super().__init__(message)
        self.size = size


def _refusal(st: os.stat_result, max_bytes: int) -> FileRefused | None:
    why = _kind(st.st_mode)
    if why:
        return FileRefused(why)
    if st.st_size > max_bytes:
        return FileRefused(f"is {st.st_size} bytes; at most {max_bytes} are expected here",
                           size=st.st_size)
    return None


def _kind(mode: int) -> str | None:
    """Why a file of this mode cannot be read as a document, or None for a regular file."""
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "is a directory, not a file"
    if stat.S_ISFIFO(mode):
        return "is a named pipe (FIFO), not a file"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "is a device, not a file"
    if stat.S_ISSOCK(mode):
        return "is a socket, not a file"
    return "is not a regular file"


def open_regular(path: Path, max_bytes: int, *, follow: bool = True) -> tuple[int, os.stat_result]:
    """An fd open for reading on ``path`` once it is known to be a regular file of at most
    ``max_bytes``: stat before open, a non-blocking open (a FIFO swapped in meanwhile cannot
    hang us), the opened file checked again.  Raises FileRefused (a sentence) or OSError."""
    st = os.stat(path) if follow else os.lstat(path)
    if not follow and stat.S_ISLNK(st.st_mode):
        raise FileRefused("is a symbolic link; refusing to follow it")
    refused = _refusal(st, max_bytes)
    if refused:
        raise refused
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    if not follow:
        flags |= os.O_NOFOLLOW
    fd = os.open(path, flags)
    try:
        st = os.fstat(fd)
        refused = _refusal(st, max_bytes)
        if refused:
            raise refused
    except BaseException:
        os.close(fd)
        raise
    return fd, st


def read_regular(path: Path, max_bytes: int, *, follow: bool = True) -> bytes:
    """The bytes of a regular file of at most ``max_bytes`` (see open_regular)."""
    fd, _ = open_regular(path, max_bytes, follow=follow)
    with os.fdopen(fd, "rb") as fh:
        data = fh.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise FileRefused(f"grew past {max_bytes} bytes while being read")
    return data


@contextlib.contextmanager
def atomic_file(path: Path, mode: int = 0o600):
    """A binary file that becomes ``path`` whole when the block ends, or never.

    The temp file is created private and exclusively (mkstemp: O_EXCL, never through a
    symlink) in the target's directory, fsynced, chmodded to ``mode`` and renamed over
    ``path`` (a symlink there is replaced, not followed); removed on any failure."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            os.fchmod(fh.fileno(), mode)
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def atomic_write(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Write via temp file + fsync + rename so readers never see half a file."""
    path = Path(path)
    with atomic_file(path, mode) as fh:
        fh.write(data)
    try:
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass
