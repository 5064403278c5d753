"""Processes of a sandbox: the nspawn children this process started, the slot's cgroups, the
container's init, and the readiness probes over SSH."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
from pathlib import Path

from .base import SandboxInfo, _names, _tail


# Popen objects of nspawn processes started by this process (reaped via poll()).
_CHILDREN: dict[int, subprocess.Popen] = {}


def _cgroup_roots() -> list[Path]:
    base = Path("/sys/fs/cgroup")
    roots = []
    if (base / "cgroup.controllers").exists():  # pure cgroup v2
        return [base]
    if not base.is_dir():
        return roots
    for h in sorted(base.iterdir()):
        if h.is_dir() and not h.is_symlink() and ((h / "cgroup.procs").exists()):
            roots.append(h)
    return roots


def _cgroup_dirs(i: int) -> list[Path]:
    """Where this index's cgroup lives: for the systemd-ish hierarchies only."""
    out = []
    for h in _cgroup_roots():
        if h.name in ("systemd", "unified") or h == Path("/sys/fs/cgroup"):
            out.append(h / _names(i)["cgroup"])
    return out


def _cgroup_pids(i: int) -> set[int]:
    pids: set[int] = set()
    for cg in _cgroup_dirs(i):
        if not cg.is_dir():
            continue
        for dirpath, _dirs, files in os.walk(cg):
            if "cgroup.procs" in files:
                with contextlib.suppress(OSError, ValueError):
                    pids.update(int(x) for x in Path(dirpath, "cgroup.procs").read_text().split())
    return pids


def _remove_cgroups(i: int) -> list[str]:
    left = []
    for cg in _cgroup_dirs(i):
        if not cg.is_dir():
            continue
        for dirpath, _dirs, _files in os.walk(cg, topdown=False):
            try:
                os.rmdir(dirpath)
            except OSError:
                left.append(dirpath)
    return left


def _pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    child = _CHILDREN.get(pid)
    if child is not None:
        if child.poll() is not None:
            _CHILDREN.pop(pid, None)
            return False
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    state = stat.rsplit(")", 1)[-1].split()[0]
    return state not in ("Z", "X")


def _is_our_nspawn(pid: int | None, machine: str) -> bool:
    if not _pid_alive(pid):
        return False
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return any(a.endswith(b"systemd-nspawn") for a in argv[:1]) and f"--machine={machine}".encode() in argv


def _kill(pids: set[int], sig: int) -> None:
    for pid in pids:
        if pid == os.getpid():
            continue
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def _container_leader(pid: int | None) -> int | None:
    """PID (host view) of the container's init: the child of nspawn in another pid namespace."""
    if not pid:
        return None
    try:
        own_ns = os.readlink(f"/proc/{pid}/ns/pid")
    except OSError:
        return None
    children: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        with contextlib.suppress(OSError, ValueError):
            children.extend(int(x) for x in task.read_text().split())
    for child in children:
        try:
            if os.readlink(f"/proc/{child}/ns/pid") != own_ns:
                return child
        except OSError:
            continue
    return None


def _ssh_argv(info: SandboxInfo, *command: str, user: str | None = None, timeout: int = 5) -> list[str]:
    # Readiness probes only: the sandbox's host key is fresh on every boot, and
    # we deliberately do not record it anywhere (callers must accept it themselves).
    return [
        "ssh", "-F", "/dev/null", "-i", info.key_file, "-p", str(info.port),
        "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
        "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
        "-o", "GlobalKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
        "-o", f"ConnectTimeout={timeout}",
        f"{user or info.user}@{info.address}", "--", *command,
    ]


def _ssh_banner(address: str, port: int = 22, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((address, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            return sock.recv(256).startswith(b"SSH-")
    except OSError:
        return False


def _system_state(info: SandboxInfo, timeout: float = 8) -> str:
    try:
        proc = subprocess.run(_ssh_argv(info, "systemctl", "is-system-running"), stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)
    except subprocess.TimeoutExpired:
        return "timeout"
    if proc.returncode == 255:
        return "ssh-failed: " + _tail(proc.stderr, 2)
    return proc.stdout.decode(errors="replace").strip() or f"exit {proc.returncode}"


def _log_tail(info: SandboxInfo, lines: int = 25) -> str:
    try:
        return _tail(Path(info.log_file).read_text(errors="replace"), lines)
    except OSError:
        return "(no nspawn log)"
