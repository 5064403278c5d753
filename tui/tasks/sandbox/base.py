"""Shared pieces of the test sandbox: constants, SandboxInfo, errors, subprocess and lock helpers,
the per-slot names, the cache locations and safe removal of trees that may hold mounts."""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import subprocess
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Callable, Iterator

from .. import paths
from ..errors import Failure
from ..fsutil import atomic_write


# Debian release (as the user names it) -> suite.  The first is the default.
RELEASES = {"13": "trixie", "12": "bookworm"}
DEFAULT_RELEASE = "13"
MIRROR = "http://deb.debian.org/debian"
SECURITY_MIRROR = "http://deb.debian.org/debian-security"
INCLUDE = (
    "openssh-server", "systemd-sysv", "dbus", "iproute2", "python3", "procps",
    "ca-certificates", "curl", "netbase", "sudo",
)


# Bump when the recipe for the base tarball changes (the old one is ignored).
BASE_VERSION = 1


# tool -> Debian package that provides it
TOOLS = {
    "debootstrap": "debootstrap",
    "systemd-nspawn": "systemd-container",
    "nft": "nftables",
    "zstd": "zstd",
    "qemu-img": "qemu-utils",
    "ssh-keygen": "openssh-client",
    "ssh": "openssh-client",
    "ip": "iproute2",
    "nsenter": "util-linux",
    "tar": "tar",
}
APT_COMMAND = ("apt-get install -y --no-install-recommends "
               "debootstrap systemd-container nftables zstd qemu-utils openssh-client")
MAX_INDEX = 60
NET_PREFIX = "10.199.0."
HOSTNAME = "stackhost"
BOOT_TIMEOUT = 60.0
POLL = 0.1
Log = Callable[[str], None] | None
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")   # whole name: fullmatch


class SandboxError(Failure, RuntimeError):
    """Something about the sandbox failed; the message says what, why, and the fix."""


@dataclass
class SandboxInfo:
    name: str
    index: int
    address: str
    host_address: str
    key_file: str = ""
    image_file: str = ""
    rootfs: str = ""
    netns: str = ""
    port: int = 22
    user: str = "root"
    hostname: str = HOSTNAME
    pid: int | None = None
    # extras (not needed by most callers)
    dir: str = ""
    log_file: str = ""
    machine: str = ""
    veth: str = ""
    nft_table: str = ""
    ip_forward_changed: bool = False
    rootfs_mode: str = ""  # "overlay" (upper dir over the shared base tree) or "copy" (untarred)
    release: str = DEFAULT_RELEASE  # Debian release ("13", "12")
    created: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "SandboxInfo":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def _say(log: Log, text: str) -> None:
    if log is not None:
        try:
            log(text)
        except Exception:  # a broken progress callback must not break the sandbox
            pass


def _tail(text: str | bytes | None, lines: int = 20) -> str:
    if text is None:
        return ""
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    return "\n".join(text.rstrip().splitlines()[-lines:])


def _run(cmd: list[str], *, check: bool = True, input: bytes | None = None,
         timeout: float | None = 120, hint: str = "") -> subprocess.CompletedProcess:
    try:
        proc = subprocess.run(cmd, input=input, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              timeout=timeout, stdin=None if input is not None else subprocess.DEVNULL)
    except FileNotFoundError as exc:
        raise SandboxError(f"{cmd[0]} is not installed. Fix: {APT_COMMAND}") from exc
    except subprocess.TimeoutExpired as exc:
        if not check:
            return subprocess.CompletedProcess(cmd, 124, exc.stdout or b"", exc.stderr or b"")
        raise SandboxError(f"`{' '.join(cmd[:4])}` did not finish within {timeout:.0f} s. {hint}".rstrip()) from exc
    if check and proc.returncode != 0:
        out = _tail(proc.stderr) or _tail(proc.stdout)
        raise SandboxError(
            f"`{' '.join(cmd[:6])}` failed (exit {proc.returncode}): {out}" + (f"\n{hint}" if hint else "")
        )
    return proc


def _write_atomic(path: Path, text: str, mode: int = 0o600) -> None:
    atomic_write(path, text.encode(), mode=mode)


@contextlib.contextmanager
def _flock(path: Path, log: Log = None, waiting: str = "") -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if waiting:
                _say(log, waiting)
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _wait(pred: Callable[[], bool], timeout: float, interval: float = POLL) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if pred():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def _check_name(name: str) -> None:
    if not _NAME_RE.fullmatch(name or ""):
        raise SandboxError(
            f"Invalid sandbox name {name!r}: use letters, digits, '.', '_' or '-' (max 64 characters)."
        )


def _names(i: int) -> dict:
    base = 4 * i
    return {
        "netns": f"stk-{i}",
        "veth": f"stk{i}h",
        "peer": f"stk{i}c",
        "table": f"stktui_{i}",
        "machine": f"stk-{i}",
        "cgroup": f"stk-{i}",
        "host_address": f"{NET_PREFIX}{base + 1}",
        "address": f"{NET_PREFIX}{base + 2}",
        "subnet": f"{NET_PREFIX}{base}/30",
    }


def _sandbox_path(name: str) -> Path:
    return paths.sandbox_dir() / name


def _lock_path(name: str) -> Path:
    return paths.sandbox_dir() / f".{name}.lock"


def _cache() -> Path:
    path = paths.cache_dir() / "sandbox"
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


def suite_of(release: str) -> str:
    if release not in RELEASES:
        raise SandboxError(f"Unknown Debian release {release!r} for the sandbox; "
                           f"choose one of: {', '.join(RELEASES)}.")
    return RELEASES[release]


def _apt_cache(release: str = DEFAULT_RELEASE) -> Path:
    # One cache per release: every test host of that release installs from it.
    path = paths.cache_dir() / "apt-archives" / suite_of(release)
    (path / "partial").mkdir(parents=True, exist_ok=True)
    return path


def base_tarball(release: str = DEFAULT_RELEASE) -> Path:
    return _cache() / f"{suite_of(release)}-base.tar.zst"


def require_root_tools() -> None:
    """Raise SandboxError (with the fix) unless we are root and every tool is present."""
    if os.geteuid() != 0:
        raise SandboxError(
            "The test sandbox needs root (network namespaces, systemd-nspawn, nftables). "
            "Run as root, e.g. with sudo."
        )
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        pkgs = sorted({TOOLS[t] for t in missing})
        raise SandboxError(
            f"Missing tools for the test sandbox: {', '.join(missing)} (packages: {', '.join(pkgs)}). "
            f"Fix: {APT_COMMAND}"
        )


def _unescape_mount(path: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), path)


def _mounts_under(root: Path) -> list[str]:
    root_s = str(root.resolve()) if root.exists() else str(root)
    found = []
    try:
        with open("/proc/self/mountinfo") as fh:
            for line in fh:
                parts = line.split()
                if len(parts) < 5:
                    continue
                mp = _unescape_mount(parts[4])
                if mp == root_s or mp.startswith(root_s.rstrip("/") + "/"):
                    found.append(mp)
    except OSError:
        pass
    return found


def _unmount_all(root: Path, log: Log = None) -> None:
    for _ in range(5):
        mounts = _mounts_under(root)
        if not mounts:
            return
        for mp in sorted(set(mounts), key=len, reverse=True):
            if _run(["umount", mp], check=False, timeout=30).returncode != 0:
                _say(log, f"{mp} is busy; detaching it (umount -l)")
                _run(["umount", "-l", mp], check=False, timeout=30)
    if _mounts_under(root):
        raise SandboxError(
            f"Something is still mounted under {root} ({', '.join(_mounts_under(root))}); "
            "refusing to delete it. Unmount it (umount -l PATH) and run down() again."
        )


def _remove_tree(root: Path, log: Log = None, *, wait: bool = True) -> None:
    """rm -rf, but never through a mount (e.g. a bind mount of the apt cache).

    ``wait=False``: the tree is unmounted and renamed into ``TRASH`` beside it at once (the
    name is free again) and deleted by a detached ``rm``; an installed host's 4 GB took 11 s
    to delete, which a test run waited for on every host."""
    if not root.exists() and not root.is_symlink():
        return
    _unmount_all(root, log)
    if not wait and root.is_dir() and not root.is_symlink():
        trash = root.parent / TRASH
        trash.mkdir(mode=0o700, exist_ok=True)
        gone = trash / f"{root.name}.{os.getpid()}.{time.monotonic_ns()}"
        os.rename(root, gone)
        empty_trash(trash)
        return
    _run(["rm", "-rf", "--one-file-system", "--", str(root)], timeout=300,
         hint="Something under it may still be in use.")


TRASH = ".trash"


def empty_trash(trash: Path) -> None:
    """Delete what is in ``trash`` in a detached process (also what a killed run left)."""
    if not trash.is_dir() or not any(trash.iterdir()):
        return
    # setsid -f: rm runs on in its own session; this returns at once (no child to reap)
    _run(["setsid", "-f", "rm", "-rf", "--one-file-system", "--", *map(str, trash.iterdir())],
         timeout=30)
