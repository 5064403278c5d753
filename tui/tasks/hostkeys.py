"""SSH host key bookkeeping: our own known_hosts plus the user's, read-only.

Unknown keys are never trusted silently: the transport raises
``UnknownHostKey`` with the SHA256 fingerprint and the caller (TUI modal or
``--accept-new-host-key``) decides.  A key that differs from the recorded one
raises ``HostKeyChanged`` and nothing is executed.
"""

from __future__ import annotations

import base64
import hashlib
import os
import threading
from pathlib import Path

from . import paths


def host_entry(address: str, port: int) -> str:
    return address if port == 22 else f"[{address}]:{port}"


def fingerprint(key) -> str:
    """OpenSSH-style ``SHA256:...`` fingerprint of a paramiko PKey."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def _load(path: Path, bad: list | None = None):
    """The keys of a known_hosts file; a malformed line is skipped, not fatal.

    paramiko's own loader gave up on the whole file at the first bad base64 (a
    traceback of a raw tuple, or every good key after it ignored).  Like OpenSSH,
    skip the line, note ``file:line``, and keep reading."""
    import paramiko
    from paramiko.hostkeys import HostKeyEntry

    keys = paramiko.HostKeys()
    try:
        if not path.is_file():
            return keys
        with path.open("rb") as fh:
            data = fh.read(MAX_BYTES)
    except OSError as exc:
        if bad is not None:
            bad.append(f"{path}: cannot be read ({exc.strerror or exc})")
        return keys
    for lineno, raw in enumerate(data.split(b"\n"), 1):
        line = raw.strip()
        if not line or line.startswith(b"#"):
            continue
        try:
            text = line.decode("utf-8")
            entry = HostKeyEntry.from_line(text, lineno) if len(text.split()) >= 3 else False
        except Exception:  # noqa: BLE001 - bad base64, bad key bytes, not UTF-8
            entry = False
        if entry is False:
            if bad is not None:
                bad.append(f"{path}:{lineno}: invalid line, ignored")
            continue
        if entry is not None:  # None: a key type paramiko does not know, as OpenSSH skips
            for name in entry.hostnames:
                keys.add(name, entry.key.get_name(), entry.key)
    return keys


# A known_hosts file larger than this is read only up to here (a runaway file, or
# /dev/zero behind a symlink, must not eat the memory).
MAX_BYTES = 16 * 1024 * 1024


def lookup(address: str, port: int, bad: list | None = None) -> dict:
    """Known keys for a host: {key_type: PKey}, ours first, then ~/.ssh.

    Lines that cannot be read are appended to ``bad`` as ``file:line: reason``."""
    entry = host_entry(address, port)
    found: dict = {}
    for path in (Path("~/.ssh/known_hosts").expanduser(), paths.known_hosts_file()):
        keys = _load(path, bad).lookup(entry)
        if keys:
            found.update({k: keys[k] for k in keys.keys()})
    return found


def remember(address: str, port: int, key) -> None:
    """Trust ``key`` for the host in our own known_hosts (atomic write)."""
    path = paths.known_hosts_file()
    keys = _load(path)
    entry = host_entry(address, port)
    keys.add(entry, key.get_name(), key)
    _save(keys, path)


def forget(address: str, port: int = 22) -> bool:
    """Drop our recorded keys for a host (used when a sandbox is rebuilt)."""
    path = paths.known_hosts_file()
    if not path.exists():
        return False
    entry = host_entry(address, port)
    keys = _load(path)
    if entry not in keys:
        return False
    del keys[entry]
    _save(keys, path)
    return True


def _save(keys, path: Path) -> None:
    tmp = path.with_name(path.name + f".tmp{os.getpid()}.{threading.get_ident()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.close(fd)
    keys.save(str(tmp))
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
