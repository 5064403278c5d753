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


def _load(path: Path):
    import paramiko

    keys = paramiko.HostKeys()
    if path.exists():
        try:
            keys.load(str(path))
        except (OSError, paramiko.SSHException, ValueError):
            pass
    return keys


def lookup(address: str, port: int) -> dict:
    """Known keys for a host: {key_type: PKey}, ours first, then ~/.ssh."""
    entry = host_entry(address, port)
    found: dict = {}
    for path in (Path("~/.ssh/known_hosts").expanduser(), paths.known_hosts_file()):
        keys = _load(path).lookup(entry)
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
