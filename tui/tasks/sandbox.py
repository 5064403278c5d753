"""A disposable Debian test host (13 trixie by default, or 12 bookworm): systemd-nspawn in a
network namespace.

``up()`` boots a fresh Debian rootfs with real systemd as PID 1 in a
network namespace of its own, reachable over real SSH on a private /30.  The
base rootfs is built once with debootstrap and cached as a zstd tarball, which
(one per release) is unpacked once into a read-only base tree; every instance's rootfs is an
overlay mount over it with an upper dir of its own (a full untar is the
fallback when overlayfs is not available).  An apt archive cache (one per release) shared
by all instances is mounted into the container so repeated installs do
not download again: it is the read-only lower layer of an overlay at
/var/cache/apt/archives, each instance writes its downloads to its own upper
dir, and ``down()`` adds those to the shared cache.

Resources per instance, all derived from a claimed index ``i`` (1..60):

* claim directory ``/run/stack-tui-sandbox/idx-<i>`` (owner file = sandbox dir)
* network namespace ``stk-<i>``, veth pair ``stk<i>h``/``stk<i>c``
* 10.199.0.(4i)/30: host side .4i+1, container .4i+2
* nft table ``ip stktui_<i>`` (masquerade out of the default-route interface)
* cgroup ``stk-<i>`` in the name=systemd and unified hierarchies (nspawn runs inside it, so
  nspawn's own ``payload``/``supervisor`` dirs never collide between instances)
* machine name ``stk-<i>``

Files live under ``paths.sandbox_dir()/<name>/``.  Needs root.  No Textual.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Callable, Iterator

from . import hostkeys, paths
from .fsutil import atomic_write

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

CLAIM_ROOT = Path("/run/stack-tui-sandbox")
MAX_INDEX = 60
NET_PREFIX = "10.199.0."
HOSTNAME = "stackhost"
BOOT_TIMEOUT = 60.0
POLL = 0.1

Log = Callable[[str], None] | None

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
# Popen objects of nspawn processes started by this process (reaped via poll()).
_CHILDREN: dict[int, subprocess.Popen] = {}


class SandboxError(RuntimeError):
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


# --------------------------------------------------------------------------- helpers


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


def _check_name(name: str) -> None:
    if not _NAME_RE.match(name or ""):
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


# --------------------------------------------------------------------------- requirements


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


# --------------------------------------------------------------------------- mounts


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


def _remove_tree(root: Path, log: Log = None) -> None:
    """rm -rf, but never through a mount (e.g. a bind mount of the apt cache)."""
    if not root.exists() and not root.is_symlink():
        return
    _unmount_all(root, log)
    _run(["rm", "-rf", "--one-file-system", "--", str(root)], timeout=300,
         hint="Something under it may still be in use.")


# --------------------------------------------------------------------------- base rootfs


def ensure_base(log: Log = None, release: str = DEFAULT_RELEASE) -> Path:
    """Build the cached base rootfs tarball of a release once (locked across processes)."""
    SUITE = suite_of(release)
    tarball = base_tarball(release)
    stamp = tarball.with_name(tarball.name + ".version")
    if tarball.exists() and stamp.exists() and stamp.read_text().strip() == str(BASE_VERSION):
        return tarball
    cache = _cache()
    with _flock(cache / f"{SUITE}-base.lock", log, "waiting for another process that is building the base rootfs"):
        if tarball.exists() and stamp.exists() and stamp.read_text().strip() == str(BASE_VERSION):
            return tarball
        build = cache / f"build-{SUITE}-{os.getpid()}"
        _remove_tree(build, log)
        # Other processes' abandoned builds of this suite (they cannot hold the lock we
        # hold now); another suite's build may be running under its own lock.
        for old in cache.glob(f"build-{SUITE}-*"):
            _remove_tree(old, log)
        _say(log, f"building the base rootfs with debootstrap ({SUITE}, about a minute; cached afterwards)")
        start = time.monotonic()
        try:
            _debootstrap(build, log, SUITE)
            _prepare_base(build, SUITE)
            tmp = tarball.with_name(f".{tarball.name}.tmp{os.getpid()}")
            _say(log, "packing the base rootfs")
            _run(["tar", "--numeric-owner", "--xattrs", "--xattrs-include=*", "--acls",
                  "-I", "zstd -T0 -3 -q", "-C", str(build), "-cf", str(tmp), "."], timeout=600)
            os.chmod(tmp, 0o600)
            os.replace(tmp, tarball)
            _write_atomic(stamp, f"{BASE_VERSION}\n")
        finally:
            _remove_tree(build, log)
            for tmp in cache.glob(f".{tarball.name}.tmp*"):
                with contextlib.suppress(OSError):
                    tmp.unlink()
        _say(log, f"base rootfs cached at {tarball} ({time.monotonic() - start:.0f} s)")
    return tarball


def _base_tree(tarball: Path, log: Log) -> Path:
    """The tarball unpacked once, read-only lower layer for every instance's rootfs overlay.

    Named after the tarball's identity, so a rebuilt tarball gets a new tree and
    running instances keep theirs.  Unpacking a rootfs per instance costs 5-10 s
    on a busy ext4 (inode allocation after mass deletes); an overlay mount costs
    milliseconds and keeps each instance's changes in its own upper dir.
    """
    SUITE = tarball.name.split("-", 1)[0]
    st = tarball.stat()
    tree = _cache() / f"{SUITE}-base-{st.st_mtime_ns}-{st.st_size}.d"
    if tree.is_dir():
        return tree
    with _flock(_cache() / f"{SUITE}-base.lock"):
        if tree.is_dir():
            return tree
        tmp = _cache() / f".tree-tmp-{os.getpid()}"
        _remove_tree(tmp, log)
        tmp.mkdir(mode=0o755)
        _say(log, "unpacking the base rootfs (once; instances overlay it)")
        try:
            _untar(tarball, tmp)
            os.rename(tmp, tree)
        finally:
            _remove_tree(tmp, log)
        # Older trees nobody has mounted any more.
        lowers = Path("/proc/self/mountinfo").read_text()
        for old in _cache().glob(f"{SUITE}-base-*.d"):
            if old != tree and str(old) not in lowers:
                _remove_tree(old, log)
    return tree


def _untar(tarball: Path, dest: Path) -> None:
    _run(["tar", "--numeric-owner", "--xattrs", "--xattrs-include=*", "--acls", "-I", "zstd -T0",
          "-C", str(dest), "-xpf", str(tarball)], timeout=600,
         hint=f"The cached tarball may be damaged: delete {tarball} and retry.")


def _mount_rootfs(info: SandboxInfo, tarball: Path, log: Log) -> str:
    """Make info.rootfs a fresh copy of the base: overlay if possible, else untar. Returns the mode."""
    rootfs = Path(info.rootfs)
    rootfs.mkdir(mode=0o755)
    sdir = Path(info.dir)
    try:
        tree = _base_tree(tarball, log)
        upper, work = sdir / "upper", sdir / "work"
        for d in (upper, work):
            d.mkdir(mode=0o755)
        opts = f"lowerdir={tree},upperdir={upper},workdir={work}"
        if any(c in str(p) for p in (tree, upper, work) for c in ",:"):
            raise SandboxError("path contains ',' or ':'")
        os.chmod(upper, 0o755)
        _run(["mount", "-t", "overlay", "overlay", "-o", opts, str(rootfs)], timeout=30)
        return "overlay"
    except SandboxError as exc:
        _say(log, f"overlay rootfs not possible ({str(exc).splitlines()[0]}); unpacking a full copy instead")
        _unmount_all(rootfs, log)
        for d in ("upper", "work"):
            _remove_tree(sdir / d, log)
    _say(log, f"unpacking a fresh rootfs for {info.name!r}")
    _untar(tarball, rootfs)
    return "copy"


def _debootstrap(build: Path, log: Log, SUITE: str) -> None:
    cmd = ["debootstrap", "--variant=minbase", f"--include={','.join(INCLUDE)}",
           "--components=main", SUITE, str(build), MIRROR]
    tail: list[str] = []
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            text=True, errors="replace")
    assert proc.stdout is not None
    for line in proc.stdout:
        line = line.rstrip()
        tail = (tail + [line])[-30:]
        # Phase lines only, not one per package.
        per_package = re.match(r"I: (Retrieving|Validating|Extracting|Unpacking|Configuring) (?!Release|the )\S+ ",
                               line + " ")
        if line.startswith(("I: ", "E: ", "W: ")) and not per_package:
            _say(log, line)
    rc = proc.wait()
    if rc != 0:
        logfile = build / "debootstrap" / "debootstrap.log"
        extra = _tail(logfile.read_text(errors="replace"), 15) if logfile.exists() else ""
        raise SandboxError(
            f"debootstrap failed (exit {rc}). Likely cause: no access to {MIRROR} "
            f"(check DNS/proxy) or a full disk.\n" + "\n".join(tail[-15:]) + ("\n" + extra if extra else "")
        )


def _prepare_base(root: Path, SUITE: str) -> None:
    (root / "etc/apt/sources.list").write_text(
        f"deb {MIRROR} {SUITE} main\n"
        f"deb {MIRROR} {SUITE}-updates main\n"
        f"deb {SECURITY_MIRROR} {SUITE}-security main\n"
    )
    conf = root / "etc/apt/apt.conf.d"
    conf.mkdir(parents=True, exist_ok=True)
    # Downloaded debs must stay in the archive dir so down() can add them to the
    # shared cache: no docker-style auto-clean, and `apt` keeps them too.
    for name in ("docker-clean",):
        with contextlib.suppress(FileNotFoundError):
            (conf / name).unlink()
    (conf / "10stack-tui-keep-debs").write_text(
        'Binary::apt::APT::Keep-Downloaded-Packages "true";\n'
        'APT::Keep-Downloaded-Packages "true";\n'
    )
    for key in (root / "etc/ssh").glob("ssh_host_*"):
        key.unlink()
    # Each boot gets a fresh machine id.
    mid = root / "etc/machine-id"
    mid.write_text("")
    dbus_mid = root / "var/lib/dbus/machine-id"
    if dbus_mid.exists() and not dbus_mid.is_symlink():
        dbus_mid.unlink()
    for deb in (root / "var/cache/apt/archives").glob("*.deb"):
        deb.unlink()


# --------------------------------------------------------------------------- claims


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


# --------------------------------------------------------------------------- network


def _default_interface() -> str | None:
    proc = _run(["ip", "-j", "route", "show", "default"], check=False, timeout=10)
    try:
        routes = json.loads(proc.stdout or b"[]")
    except ValueError:
        return None
    for route in routes:
        if route.get("dev"):
            return route["dev"]
    return None


def _netns_exists(i: int) -> bool:
    return Path("/run/netns", _names(i)["netns"]).exists()


def _veth_exists(i: int) -> bool:
    return Path("/sys/class/net", _names(i)["veth"]).exists()


def _nft_exists(i: int) -> bool:
    return _run(["nft", "list", "table", "ip", _names(i)["table"]], check=False, timeout=10).returncode == 0


def _setup_network(i: int, log: Log) -> None:
    n = _names(i)
    hint = "Is another process using the same names? Run down() for this sandbox and retry."
    _say(log, f"network: netns {n['netns']}, {n['host_address']} <-> {n['address']}")
    _run(["ip", "netns", "add", n["netns"]], hint=hint)
    _run(["ip", "link", "add", n["veth"], "type", "veth", "peer", "name", n["peer"]], hint=hint)
    _run(["ip", "link", "set", n["peer"], "netns", n["netns"]])
    _run(["ip", "addr", "add", f"{n['host_address']}/30", "dev", n["veth"]])
    _run(["ip", "link", "set", n["veth"], "up"])
    _run(["ip", "-n", n["netns"], "link", "set", "lo", "up"])
    _run(["ip", "-n", n["netns"], "addr", "add", f"{n['address']}/30", "dev", n["peer"]])
    _run(["ip", "-n", n["netns"], "link", "set", n["peer"], "up"])
    _run(["ip", "-n", n["netns"], "route", "add", "default", "via", n["host_address"]])
    iface = _default_interface()
    if iface is None:
        _say(log, "no default route on this machine: the sandbox gets no outbound network (apt will only "
                  "work from the archive cache)")
        return
    ruleset = (
        f"table ip {n['table']} {{\n"
        f"  chain post {{\n"
        f"    type nat hook postrouting priority 100; policy accept;\n"
        f"    ip saddr {n['subnet']} oifname \"{iface}\" masquerade\n"
        f"  }}\n"
        f"}}\n"
    )
    _run(["nft", "-f", "-"], input=ruleset.encode(),
         hint="Is the nf_tables kernel module available? Fix: apt-get install -y nftables")


def _teardown_network(i: int, log: Log) -> None:
    n = _names(i)
    if _netns_exists(i):
        _run(["ip", "netns", "delete", n["netns"]], check=False, timeout=30)
    if _veth_exists(i):
        _run(["ip", "link", "delete", n["veth"]], check=False, timeout=30)
    if _nft_exists(i):
        _run(["nft", "delete", "table", "ip", n["table"]], check=False, timeout=30)
    # `ip netns delete` can leave the mount point file behind if it was busy.
    with contextlib.suppress(OSError):
        Path("/run/netns", n["netns"]).unlink()


# --------------------------------------------------------------------------- cgroups / processes


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


def _netns_pids(i: int) -> set[int]:
    if not _netns_exists(i):
        return set()
    proc = _run(["ip", "netns", "pids", _names(i)["netns"]], check=False, timeout=10)
    return {int(x) for x in proc.stdout.split() if x.isdigit()}


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


def _wait(pred: Callable[[], bool], timeout: float, interval: float = POLL) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if pred():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


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


# --------------------------------------------------------------------------- ssh


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


# --------------------------------------------------------------------------- info


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


# --------------------------------------------------------------------------- public API


def up(name: str = "sandbox", *, log: Log = None, release: str = DEFAULT_RELEASE) -> SandboxInfo:
    """Boot (or return the already running) sandbox ``name`` on Debian ``release``."""
    require_root_tools()
    _check_name(name)
    suite_of(release)
    with _flock(_lock_path(name)):
        info = _load_info(name)
        if info is not None and _healthy(info) and info.release == release:
            _say(log, f"sandbox {name!r} already running at {info.address}")
            return info
        if info is not None and _healthy(info):
            _say(log, f"sandbox {name!r} runs Debian {info.release}; replacing it with Debian {release}")
        if _sandbox_path(name).exists() or info is not None or _owned_claims(_sandbox_path(name)):
            _say(log, f"cleaning up a previous, unhealthy instance of sandbox {name!r}")
            _down_locked(name, log)
        return _create(name, log, release)


def _create(name: str, log: Log, release: str = DEFAULT_RELEASE) -> SandboxInfo:
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
        nft_table=n["table"], created=time.time(), release=release,
    )
    _save_info(info)  # early, so a crash part-way can still be cleaned up by down()
    try:
        # A reused slot may have been left half-built by a crashed process.
        _clean_index(index, log)
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


def _customize(info: SandboxInfo) -> None:
    root = Path(info.rootfs)
    for key in (root / "etc/ssh").glob("ssh_host_*"):
        key.unlink()
    _run(["ssh-keygen", "-A", "-f", str(root)], timeout=60)  # fresh host keys per instance
    (root / "etc/hostname").write_text(f"{info.hostname}\n")
    (root / "etc/hosts").write_text(
        f"127.0.0.1 localhost\n{info.address} {info.hostname}\n"
        "::1 localhost ip6-localhost ip6-loopback\n"
    )
    _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"stack-tui-sandbox-{info.name}",
          "-f", info.key_file], timeout=30)
    os.chmod(info.key_file, 0o600)
    ssh_dir = root / "root/.ssh"
    ssh_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(ssh_dir, 0o700)
    auth = ssh_dir / "authorized_keys"
    auth.write_text(Path(info.key_file + ".pub").read_text())
    os.chmod(auth, 0o600)


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
    ]
    for path in (str(apt_cache), info.dir):
        if ":" in path:
            raise SandboxError(f"Path {path!r} contains ':', which systemd-nspawn cannot take in --overlay. "
                               "Use a STACK_TUI_HOME / STACK_TUI_CACHE_DIR without ':'.")
    (Path(info.dir) / "apt-archives").mkdir(mode=0o755, exist_ok=True)
    # Move ourselves into the slot's own cgroup first, then become nspawn (same pid).
    script = ('for f in $STK_CGROUPS; do echo $$ > "$f" || '
              '{ echo "stack-tui: cannot move into cgroup $f" >&2; exit 121; }; done; exec "$@"')
    env = dict(os.environ, STK_CGROUPS=" ".join(cgroup_procs), SYSTEMD_LOG_COLOR="0")
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


def _harvest_debs(sdir: Path, log: Log, release: str = DEFAULT_RELEASE) -> int:
    """Copy .deb files this instance downloaded into its release's shared apt archive cache."""
    upper = sdir / "apt-archives"
    if not upper.is_dir():
        return 0
    shared = _apt_cache(release)
    count = 0
    for deb in upper.glob("*.deb"):
        target = shared / deb.name
        if target.exists() or not deb.is_file() or deb.is_symlink():
            continue
        tmp = shared / f".{deb.name}.tmp{os.getpid()}"
        try:
            try:
                os.link(deb, tmp)
            except OSError:
                shutil.copyfile(deb, tmp)
            os.chmod(tmp, 0o644)
            os.replace(tmp, target)
            count += 1
        except OSError:
            with contextlib.suppress(OSError):
                tmp.unlink()
    if count:
        _say(log, f"added {count} downloaded package(s) to the shared apt cache {shared}")
    return count


def harvest_debs(info: "SandboxInfo", log: Log = None) -> int:
    """Share what a running instance downloaded now (down() does it too)."""
    return _harvest_debs(Path(info.dir), log, info.release)


def _owned_claims(sdir: Path) -> list[int]:
    return [i for i, owner in _claims().items() if owner == str(sdir)]


def down(name: str = "sandbox", *, log: Log = None) -> bool:
    """Stop sandbox ``name`` and remove everything it made. False if nothing existed."""
    _check_name(name)
    if os.geteuid() != 0:
        require_root_tools()
    with _flock(_lock_path(name)):
        # The lock file itself stays (unlinking it would race with a waiting locker).
        return _down_locked(name, log)


def _down_locked(name: str, log: Log) -> bool:
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
        _stop(info, log)
    for i in sorted(indexes):
        _clean_index(i, log)
        _release_index(i, log)
    with contextlib.suppress(OSError):
        _harvest_debs(sdir, log, info.release if info is not None else DEFAULT_RELEASE)
    _remove_tree(sdir, log)
    _say(log, f"sandbox {name!r} removed")
    return True


def _stop(info: SandboxInfo, log: Log) -> None:
    pid = info.pid
    leader = _container_leader(pid)
    start = time.monotonic()
    asked = False
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
