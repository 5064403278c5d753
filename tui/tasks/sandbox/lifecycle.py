"""The sandbox lifecycle: up() (claim, rootfs, network, boot, wait for SSH and systemd), down()
(stop, clean the slot, share the downloaded debs, remove the directory), status(), and users."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

from .. import hostkeys, paths
from .base import (BOOT_TIMEOUT, DEFAULT_RELEASE, HOSTNAME, POLL, Log, SandboxError, SandboxInfo, _apt_cache,
                   _check_name, _flock, _lock_path, _mounts_under, _names, _remove_tree, _run,
                   _sandbox_path, _say, _wait, _write_atomic, require_root_tools, suite_of)
from .claims import (_claim_index, _claim_owner, _clean_index, _enable_ip_forward, _owned_claims,
                     _release_index)
from .network import _nft_exists, _netns_exists, _setup_network, _veth_exists
from .processes import (_CHILDREN, _cgroup_dirs, _container_leader, _is_our_nspawn, _kill,
                        _log_tail, _pid_alive, _ssh_argv, _ssh_banner, _system_state)
from .compute import compute_args, compute_env
from .rootfs import _customize, _harvest_debs, _mount_rootfs, ensure_base


# The hosts of a group boot in threads of one process: known_hosts is rewritten by one at a time.
_KNOWN_HOSTS_LOCK = threading.Lock()


def _info_path(name: str) -> Path:
    return _sandbox_path(name) / "info.json"


def _load_info(name: str) -> SandboxInfo | None:
    try:
        return SandboxInfo.from_dict(json.loads(_info_path(name).read_text()))
    except (OSError, ValueError, TypeError):
        return None


def _save_info(info: SandboxInfo) -> None:
    _write_atomic(Path(info.dir) / "info.json", json.dumps(info.to_dict(), indent=2) + "\n", 0o600)


def _healthy(info: SandboxInfo) -> bool:
    if _claim_owner(info.index) != info.dir:
        return False
    if not _is_our_nspawn(info.pid, info.machine) or not Path(info.rootfs).is_dir():
        return False
    if not _ssh_banner(info.address, info.port):
        return False
    return _system_state(info).split()[:1] in (["running"], ["degraded"])


def up(name: str = "sandbox", *, log: Log = None, release: str = DEFAULT_RELEASE,
       hostname: str = HOSTNAME) -> SandboxInfo:
    """Boot (or return the already running) sandbox ``name`` on Debian ``release``, its host
    name ``hostname`` (a group's hosts are named after themselves)."""
    require_root_tools()
    _check_name(name)
    suite_of(release)
    with _flock(_lock_path(name)):
        info = _load_info(name)
        if info is not None and _healthy(info) and (info.release, info.hostname) == (release, hostname):
            _say(log, f"sandbox {name!r} already running at {info.address}")
            return info
        if info is not None and _healthy(info):
            _say(log, f"sandbox {name!r} runs Debian {info.release} as {info.hostname!r}; replacing it "
                      f"with Debian {release} as {hostname!r}")
        if _sandbox_path(name).exists() or info is not None or _owned_claims(_sandbox_path(name)):
            _say(log, f"cleaning up a previous, unhealthy instance of sandbox {name!r}")
            _down_locked(name, log)
        return _create(name, log, release, hostname)


def _create(name: str, log: Log, release: str = DEFAULT_RELEASE, hostname: str = HOSTNAME) -> SandboxInfo:
    start = time.monotonic()
    tarball = ensure_base(log, release)
    apt_cache = _apt_cache(release)
    sdir = _sandbox_path(name)
    sdir.mkdir(mode=0o700, parents=True, exist_ok=False)
    index = _claim_index(sdir, log)
    n = _names(index)
    info = SandboxInfo(
        name=name, index=index, address=n["address"], host_address=n["host_address"],
        key_file=str(sdir / "id_ed25519"), image_file=str(sdir / "test-image.qcow2"),
        rootfs=str(sdir / "rootfs"), netns=n["netns"], dir=str(sdir),
        log_file=str(sdir / "nspawn.log"), machine=n["machine"], veth=n["veth"],
        nft_table=n["table"], created=time.time(), release=release, hostname=hostname,
    )
    _save_info(info)  # early, so a crash part-way can still be cleaned up by down()
    try:
        # A reused slot may have been left half-built by a crashed process.
        _clean_index(index, log)
        with _KNOWN_HOSTS_LOCK:
            hostkeys.forget(info.address, info.port)
        info.rootfs_mode = _mount_rootfs(info, tarball, log)
        _save_info(info)
        _customize(info)
        _run(["qemu-img", "create", "-q", "-f", "qcow2", info.image_file, "64M"], timeout=60)
        info.ip_forward_changed = _enable_ip_forward(log)
        _setup_network(index, log)
        _save_info(info)
        _boot(info, apt_cache, log)
        _save_info(info)
        _wait_ready(info, log)
    except BaseException as exc:
        failed: Path | None = paths.log_dir() / f"sandbox-{name}-failed.log"
        try:
            shutil.copyfile(info.log_file, failed)
        except OSError:
            failed = None
        _say(log, f"sandbox {name!r} failed to start; cleaning up")
        with contextlib.suppress(Exception):
            _down_locked(name, log)
        if isinstance(exc, SandboxError):
            raise SandboxError(f"{exc}\n(nspawn log kept at {failed})" if failed else str(exc)) from exc
        raise
    _say(log, f"sandbox {name!r} is up at {info.address} ({time.monotonic() - start:.1f} s)")
    return info


def _boot(info: SandboxInfo, apt_cache: Path, log: Log) -> None:
    n = _names(info.index)
    cgroup_procs = []
    for cg in _cgroup_dirs(info.index):
        cg.mkdir(exist_ok=True)
        cgroup_procs.append(str(cg / "cgroup.procs"))
    cmd = [
        "systemd-nspawn", "-b", "-D", info.rootfs, f"--machine={n['machine']}",
        f"--hostname={info.hostname}",
        f"--network-namespace-path=/run/netns/{n['netns']}",
        "--register=no", "--keep-unit", "--resolv-conf=copy-host", "--console=passive",
        # The shared apt archive cache is the read-only lower layer of an overlay;
        # this instance's downloads (and apt's lock file) land in its own upper
        # dir, so concurrent sandboxes never contend for apt's archive lock and
        # apt can never delete shared debs.  down() harvests new debs into the cache.
        f"--overlay={apt_cache}:{info.dir}/apt-archives:/var/cache/apt/archives",
        *compute_args(),
    ]
    for path in (str(apt_cache), info.dir):
        if ":" in path:
            raise SandboxError(f"Path {path!r} contains ':', which systemd-nspawn cannot take in --overlay. "
                               "Use a STACK_TUI_HOME / STACK_TUI_CACHE_DIR without ':'.")
    (Path(info.dir) / "apt-archives").mkdir(mode=0o755, exist_ok=True)
    # Move ourselves into the slot's own cgroup first, then become nspawn (same pid).
    script = ('for f in $STK_CGROUPS; do echo $$ > "$f" || '
              '{ echo "stack-tui: cannot move into cgroup $f" >&2; exit 121; }; done; exec "$@"')
    env = dict(os.environ, STK_CGROUPS=" ".join(cgroup_procs), SYSTEMD_LOG_COLOR="0", **compute_env())
    _say(log, f"booting {n['machine']} (systemd-nspawn -b)")
    with open(info.log_file, "ab") as out:
        proc = subprocess.Popen(["sh", "-c", script, "sh", *cmd], stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True, env=env, close_fds=True)
    _CHILDREN[proc.pid] = proc
    info.pid = proc.pid


def _wait_ready(info: SandboxInfo, log: Log) -> None:
    deadline = time.monotonic() + BOOT_TIMEOUT

    def dead() -> bool:
        return not _pid_alive(info.pid)

    while not _ssh_banner(info.address, info.port, timeout=0.5):
        if dead():
            raise SandboxError(
                f"systemd-nspawn exited before sshd answered. Log tail:\n{_log_tail(info)}"
            )
        if time.monotonic() > deadline:
            raise SandboxError(
                f"sshd in the sandbox did not answer on {info.address}:22 within {BOOT_TIMEOUT:.0f} s. "
                f"Log tail:\n{_log_tail(info)}"
            )
        time.sleep(POLL)
    _say(log, "sshd answers; waiting for systemd to finish booting")
    state = ""
    while True:
        state = _system_state(info, timeout=max(1.0, min(8.0, deadline - time.monotonic())))
        if state.split()[:1] in (["running"], ["degraded"]):
            if state.startswith("degraded"):
                _say(log, "systemd reports 'degraded' (some unit failed); continuing")
            return
        if dead():
            raise SandboxError(f"systemd-nspawn exited during boot. Log tail:\n{_log_tail(info)}")
        if time.monotonic() > deadline:
            raise SandboxError(
                f"The sandbox did not finish booting within {BOOT_TIMEOUT:.0f} s "
                f"(systemctl is-system-running: {state!r}). Log tail:\n{_log_tail(info)}"
            )
        time.sleep(0.3)


def down(name: str = "sandbox", *, log: Log = None, graceful: bool = True,
         wait: bool = True) -> bool:
    """Stop sandbox ``name`` and remove everything it made. False if nothing existed.

    ``graceful=False`` (a test's throwaway host, whose state nobody keeps) skips the
    shutdown: an installed OpenStack host took 10-20 s to power off, for nothing.
    ``wait=False`` leaves deleting its files to a detached process (see _remove_tree)."""
    _check_name(name)
    if os.geteuid() != 0:
        require_root_tools()
    with _flock(_lock_path(name)):
        # The lock file itself stays (unlinking it would race with a waiting locker).
        return _down_locked(name, log, graceful=graceful, wait=wait)


def _down_locked(name: str, log: Log, *, graceful: bool = True, wait: bool = True) -> bool:
    sdir = _sandbox_path(name)
    info = _load_info(name)
    indexes = set(_owned_claims(sdir))
    if info is not None and _claim_owner(info.index) in (None, str(sdir)):
        indexes.add(info.index)
    existed = sdir.exists() or bool(indexes)
    if not existed:
        return False
    _say(log, f"stopping sandbox {name!r}")
    if info is not None and _is_our_nspawn(info.pid, info.machine):
        _stop(info, log, graceful=graceful)
    for i in sorted(indexes):
        _clean_index(i, log)
        _release_index(i, log)
    with contextlib.suppress(OSError):
        _harvest_debs(sdir, log, info.release if info is not None else DEFAULT_RELEASE)
    _remove_tree(sdir, log, wait=wait)
    _say(log, f"sandbox {name!r} removed" + ("" if wait else " (its files are deleted in the background)"))
    return True


def _stop(info: SandboxInfo, log: Log, *, graceful: bool = True) -> None:
    pid = info.pid
    leader = _container_leader(pid)
    start = time.monotonic()
    asked = False
    if not graceful:
        _kill_container(pid, leader)
        _say(log, f"sandbox killed ({time.monotonic() - start:.1f} s)")
        return
    with contextlib.suppress(subprocess.TimeoutExpired, OSError):
        proc = subprocess.run(_ssh_argv(info, "systemctl", "poweroff", timeout=3), stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=5)
        # 255 is also what ssh says when the shutdown closes the connection first.
        asked = proc.returncode in (0, 255)
    if _wait(lambda: not _pid_alive(pid), 10 if asked else 1):
        _say(log, f"sandbox powered off ({time.monotonic() - start:.1f} s)")
        return
    _say(log, "sandbox did not power off in time; sending SIGTERM")
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGTERM)  # nspawn turns this into a clean shutdown request
    if _wait(lambda: not _pid_alive(pid), 5):
        return
    _say(log, "still running; sending SIGKILL")
    _kill_container(pid, leader)


def _kill_container(pid: int, leader: int | None) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
    if leader:
        _kill({leader}, signal.SIGKILL)  # kills the whole container pid namespace
    _wait(lambda: not _pid_alive(pid), 5)


def status(name: str = "sandbox") -> dict | None:
    """What exists for sandbox ``name`` (None when nothing does)."""
    _check_name(name)
    sdir = _sandbox_path(name)
    info = _load_info(name)
    indexes = set(_owned_claims(sdir))
    if info is not None:
        indexes.add(info.index)
    index = info.index if info is not None else (min(indexes) if indexes else None)
    result: dict = {
        "name": name,
        "dir": str(sdir),
        "dir_exists": sdir.exists(),
        "info": info.to_dict() if info is not None else None,
        "index": index,
        "claim": index is not None and _claim_owner(index) == str(sdir),
        "rootfs": (sdir / "rootfs").is_dir(),
        "netns": False,
        "veth": False,
        "nft_table": False,
        "cgroup": False,
        "pid": info.pid if info is not None else None,
        "alive": bool(info is not None and _is_our_nspawn(info.pid, info.machine)),
        "address": info.address if info is not None else None,
        "mounts": _mounts_under(sdir),
    }
    own_slot = index is not None and (result["claim"] or _claim_owner(index) is None)
    if own_slot:
        result["netns"] = _netns_exists(index)
        result["veth"] = _veth_exists(index)
        result["nft_table"] = _nft_exists(index) if shutil.which("nft") and os.geteuid() == 0 else False
        result["cgroup"] = any(cg.is_dir() for cg in _cgroup_dirs(index))
    if not any(result[k] for k in ("dir_exists", "claim", "rootfs", "netns", "veth", "nft_table", "cgroup",
                                   "alive", "mounts")):
        return None
    return result


def list_sandboxes() -> list[str]:
    """Names of the sandboxes that have a directory under paths.sandbox_dir()."""
    base = paths.sandbox_dir()
    return sorted(p.name for p in base.iterdir() if p.is_dir() and not p.name.startswith("."))


def add_user(info: SandboxInfo, username: str, password: str, *, sudo: bool = True) -> None:
    """Create a non-root user with a password (and sudo that asks for it) in a running sandbox.

    The password only travels on stdin (chpasswd), never in argv.  The user's
    authorized_keys is the sandbox key, so ``info.key_file`` logs in as them too.
    """
    if not re.fullmatch(r"[a-z_][a-z0-9_-]{0,31}", username or ""):
        raise SandboxError(f"Invalid user name {username!r}: use lower-case letters, digits, '_' or '-'.")
    if "\n" in password or ":" in username:
        raise SandboxError("The password must not contain a newline.")
    leader = _container_leader(info.pid) if _is_our_nspawn(info.pid, info.machine) else None
    if leader is None:
        raise SandboxError(
            f"Sandbox {info.name!r} is not running (no container process for pid {info.pid}). Start it with up()."
        )
    enter = ["nsenter", "-t", str(leader), "-a", "--"]

    def inside(*argv: str, stdin: bytes | None = None) -> None:
        _run([*enter, *argv], input=stdin, timeout=60)

    exists = _run([*enter, "id", "-u", username], check=False, timeout=30).returncode == 0
    if not exists:
        inside("useradd", "--create-home", "--shell", "/bin/bash", username)
    inside("chpasswd", stdin=f"{username}:{password}\n".encode())
    if sudo:
        inside("usermod", "-aG", "sudo", username)
    home = f"/home/{username}"
    pub = Path(info.key_file + ".pub").read_bytes()
    inside("install", "-d", "-m", "700", "-o", username, "-g", username, f"{home}/.ssh")
    inside("sh", "-c", 'umask 077; cat > "$1"', "sh", f"{home}/.ssh/authorized_keys", stdin=pub)
    inside("chown", f"{username}:{username}", f"{home}/.ssh/authorized_keys")
    inside("chmod", "600", f"{home}/.ssh/authorized_keys")
