"""The base rootfs (debootstrap once per release, cached as a zstd tarball, unpacked once into a
read-only tree), each instance's rootfs (an overlay over that tree, or a full copy), its per-instance
customisation (host keys, hostname, root's authorized key) and the shared apt archive cache."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

from .base import (BASE_VERSION, DEFAULT_RELEASE, INCLUDE, MIRROR, SECURITY_MIRROR, Log,
                   SandboxError, SandboxInfo, _apt_cache, _cache, _flock, _remove_tree, _run,
                   _say, _tail, _unmount_all, _write_atomic, base_tarball, suite_of)


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
