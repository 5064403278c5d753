"""Slot claims: each sandbox claims an index 1..MAX_INDEX under CLAIM_ROOT (the owner file names
its directory), from which every system resource name derives.  A claim whose owner is gone is
stale: the slot is cleaned (processes, network, cgroups, nspawn state) and reused."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
from pathlib import Path

from .base import (MAX_INDEX, Log, SandboxError, _flock, _names, _remove_tree, _say,
                   _unmount_all, _wait, _write_atomic)
from .network import _netns_pids, _teardown_network
from .processes import _cgroup_pids, _kill, _pid_alive, _remove_cgroups


CLAIM_ROOT = Path("/run/stack-tui-sandbox")


def _claim_dir(i: int) -> Path:
    return CLAIM_ROOT / f"idx-{i}"


def _claim_owner(i: int) -> str | None:
    try:
        return (_claim_dir(i) / "owner").read_text().strip() or None
    except OSError:
        return None


def _claims() -> dict[int, str | None]:
    found: dict[int, str | None] = {}
    if not CLAIM_ROOT.is_dir():
        return found
    for entry in CLAIM_ROOT.iterdir():
        m = re.fullmatch(r"idx-(\d+)", entry.name)
        if m and entry.is_dir():
            found[int(m.group(1))] = _claim_owner(int(m.group(1)))
    return found


def _owned_claims(sdir: Path) -> list[int]:
    return [i for i, owner in _claims().items() if owner == str(sdir)]


def _claim_index(owner: Path, log: Log) -> int:
    CLAIM_ROOT.mkdir(mode=0o755, parents=True, exist_ok=True)
    with _flock(CLAIM_ROOT / ".lock"):
        for i in range(1, MAX_INDEX + 1):
            d = _claim_dir(i)
            try:
                os.mkdir(d, 0o755)
            except FileExistsError:
                current = _claim_owner(i)
                if current and Path(current).exists():
                    continue  # in use by a live sandbox dir
                _say(log, f"reclaiming stale sandbox slot {i} (owner {current or 'unknown'} is gone)")
                _clean_index(i, log)
                if current:
                    with contextlib.suppress(SandboxError):
                        _unmount_all(Path(current), log)
                shutil.rmtree(d, ignore_errors=True)
                os.mkdir(d, 0o755)
            _write_atomic(d / "owner", f"{owner}\n", 0o644)
            return i
    raise SandboxError(
        f"All {MAX_INDEX} sandbox slots under {CLAIM_ROOT} are in use. "
        "Stop unused sandboxes (down()) or remove stale idx-* dirs whose owner no longer exists."
    )


def _release_index(i: int, log: Log) -> None:
    with _flock(CLAIM_ROOT / ".lock"):
        shutil.rmtree(_claim_dir(i), ignore_errors=True)
        _restore_ip_forward_if_last(log)


def _enable_ip_forward(log: Log) -> bool:
    """Set net.ipv4.ip_forward=1 if it is 0; remember the old value for the last down()."""
    flag = Path("/proc/sys/net/ipv4/ip_forward")
    with _flock(CLAIM_ROOT / ".lock"):
        if flag.read_text().strip() != "0":
            return False
        orig = CLAIM_ROOT / "ip_forward.orig"
        if not orig.exists():
            _write_atomic(orig, "0\n", 0o644)
        flag.write_text("1\n")
        _say(log, "enabled net.ipv4.ip_forward (restored when the last sandbox is removed)")
        return True


def _restore_ip_forward_if_last(log: Log) -> None:
    # Caller holds CLAIM_ROOT/.lock.
    orig = CLAIM_ROOT / "ip_forward.orig"
    if not orig.exists() or _claims():
        return
    value = orig.read_text().strip() or "0"
    with contextlib.suppress(OSError):
        Path("/proc/sys/net/ipv4/ip_forward").write_text(value + "\n")
        _say(log, f"restored net.ipv4.ip_forward={value}")
    orig.unlink()


def _clean_index(i: int, log: Log) -> None:
    """Forcefully remove everything an index may own (processes, network, cgroups, nspawn state)."""
    pids = _cgroup_pids(i) | _netns_pids(i)
    if pids:
        _say(log, f"killing {len(pids)} leftover process(es) of slot {i}")
        _kill(pids, signal.SIGKILL)
        _wait(lambda: not any(_pid_alive(p) for p in pids), 10)
    _teardown_network(i, log)
    left = _remove_cgroups(i)
    if left:
        _wait(lambda: not _remove_cgroups(i), 5)
    _clean_nspawn_run(_names(i)["machine"], log)


def _clean_nspawn_run(machine: str, log: Log) -> None:
    base = Path("/run/systemd/nspawn")
    for sub in ("propagate", "unix-export", "incoming"):
        p = base / sub / machine
        if p.exists() or p.is_symlink():
            with contextlib.suppress(SandboxError):
                _remove_tree(p, log)
    # Remove empty parents we may have caused to exist (harmless if others are in use).
    for sub in ("propagate", "unix-export", "incoming", "locks"):
        with contextlib.suppress(OSError):
            (base / sub).rmdir()
    with contextlib.suppress(OSError):
        base.rmdir()
