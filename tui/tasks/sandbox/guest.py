"""A tiny bootable guest image built from Debian packages, for tests that boot a server
(no CirrOS download: these machines reach only the Debian mirror).

The image is a 32 MiB FAT "superfloppy" (no partition table) with SYSLINUX as its boot
loader, Debian's kernel and a busybox initramfs whose init loads the virtio network
modules, prints ``GUEST_BANNER`` on the serial console, asks DHCP for an address (and says
it), then idles: the kernel answers ping.  Converted to a compressed qcow2 (~12 MB).

It is built inside a running sandbox (the packages come from its mirror through its apt
cache, nothing is installed there: ``apt-get download`` + ``dpkg -x``), then cached per
release in the sandbox cache dir, like the base rootfs.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from .base import Log, SandboxError, SandboxInfo, _cache, _flock, _run, _say, suite_of
from .processes import _container_leader, _is_our_nspawn

GUEST_VERSION = 2  # 2: module dependencies from .modinfo (Debian 12 guest had no network)
GUEST_BANNER = "stack-tui-guest: booted"
BUILD_DIR = "/root/stack-tui-guest"

BUILD_SCRIPT = Path(__file__).with_name("guest_build.sh")

# newc cpio writer (the minimal Debian has no cpio binary; python3 it has).
CPIO_PY = r"""
import os, stat, sys
root = sys.argv[1]; out = sys.stdout.buffer; ino = 1
def entry(name, st, data):
    global ino
    hdr = "070701" + "".join("%08X" % v for v in (
        ino, st.st_mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(name) + 1, 0))
    ino += 1
    out.write(hdr.encode() + name.encode() + b"\0")
    out.write(b"\0" * ((4 - (110 + len(name) + 1) % 4) % 4))
    out.write(data); out.write(b"\0" * ((4 - len(data) % 4) % 4))
for d, dirs, files in os.walk(root):
    dirs.sort()
    for n in sorted(dirs) + sorted(files):
        p = os.path.join(d, n); st = os.lstat(p)
        rel = os.path.relpath(p, root)
        if stat.S_ISLNK(st.st_mode): data = os.readlink(p).encode()
        elif stat.S_ISREG(st.st_mode): data = open(p, "rb").read()
        else: data = b""
        entry(rel, st, data)
class T: st_mode = 0
entry("TRAILER!!!", T, b"")
"""


# Resolves a module's dependencies from its own .modinfo ("depends=" entries): dpkg -x runs
# no depmod, and the list differs between kernels (Debian 12's virtio_net needs more than 13's).
MODDEPS_PY = r"""
import lzma, os, sys
md, tops = sys.argv[1], sys.argv[2:]
index = {}
for d, _dirs, files in os.walk(os.path.join(md, "kernel")):
    for f in files:
        if ".ko" in f:
            index[f.split(".ko")[0].replace("-", "_")] = os.path.join(d, f)
def deps(path):
    raw = open(path, "rb").read()
    if path.endswith(".xz"):
        raw = lzma.decompress(raw)
    i = raw.find(b"\0depends=")
    if i < 0:
        return []
    end = raw.find(b"\0", i + 1)
    return [x for x in raw[i + 9:end].decode().split(",") if x]
order = []
def visit(name):
    name = name.replace("-", "_")
    if name in order or name not in index:
        return
    for dep in deps(index[name]):
        visit(dep)
    order.append(name)
for top in tops:
    visit(top)
for name in order:
    print(name, index[name])
"""


def guest_image_path(release: str) -> Path:
    return _cache() / f"{suite_of(release)}-guest-v{GUEST_VERSION}.qcow2"


def guest_image(info: SandboxInfo, log: Log = None) -> Path:
    """The cached guest image of ``info``'s release, built in ``info`` when missing."""
    target = guest_image_path(info.release)
    if target.exists():
        return target
    with _flock(_cache() / "guest.lock", log, "waiting for another guest image build"):
        if target.exists():
            return target
        leader = _container_leader(info.pid) if _is_our_nspawn(info.pid, info.machine) else None
        if leader is None:
            raise SandboxError(f"Sandbox {info.name!r} is not running; the guest image is built in it.")
        _say(log, "building the tiny guest image from Debian packages (once; cached afterwards)")
        start = time.monotonic()
        enter = ["nsenter", "-t", str(leader), "-a", "--"]
        for name, body in (("cpio.py", CPIO_PY), ("moddeps.py", MODDEPS_PY)):
            _run([*enter, "sh", "-c", f"mkdir -p {BUILD_DIR} && cat > {BUILD_DIR}/{name}"],
                 input=body.encode(), timeout=30)
        _run([*enter, "env", f"W={BUILD_DIR}", f"BANNER={GUEST_BANNER}", "bash", "-eu", "-o",
              "pipefail"], input=BUILD_SCRIPT.read_bytes(), timeout=900,
             hint="The sandbox could not download or unpack the kernel/busybox/syslinux packages.")
        raw = Path(info.rootfs) / BUILD_DIR.lstrip("/") / "guest.img"
        tmp = target.with_name(f".{target.name}.tmp{os.getpid()}")
        _run(["qemu-img", "convert", "-c", "-f", "raw", "-O", "qcow2", str(raw), str(tmp)], timeout=300)
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
        _run([*enter, "rm", "-rf", BUILD_DIR], check=False, timeout=60)
        _say(log, f"guest image cached at {target} ({time.monotonic() - start:.0f} s)")
    return target
