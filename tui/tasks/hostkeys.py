"""SSH host key bookkeeping: our own known_hosts plus the user's, read-only.

Unknown keys are never trusted silently: the transport raises
``UnknownHostKey`` with the SHA256 fingerprint and the caller (TUI modal or
``--accept-new-host-key``) decides.  A key that differs from the recorded one
raises ``HostKeyChanged`` and nothing is executed.
"""

from __future__ import annotations

import base64
import hashlib
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
    """Trust ``key`` for the host in our own known_hosts (atomic write).

    Every other line stays as it was, malformed ones included (as OpenSSH keeps them):
    only the host's earlier key of the same type is replaced."""
    entry = host_entry(address, port)
    path = paths.known_hosts_file()
    kept = [ln for ln in _lines(path) if not _is_for(ln, entry, key.get_name())]
    _save(path, kept + [f"{entry} {key.get_name()} {key.get_base64()}".encode()])


def forget(address: str, port: int = 22) -> bool:
    """Drop our recorded keys for a host (used when a sandbox is rebuilt); every other
    line stays as it was."""
    path = paths.known_hosts_file()
    entry = host_entry(address, port)
    lines = _lines(path)
    kept = [ln for ln in lines if not _is_for(ln, entry)]
    if len(kept) == len(lines):
        return False
    _save(path, kept)
    return True


def _lines(path: Path) -> list[bytes]:
    try:
        if not path.is_file():
            return []
        with path.open("rb") as fh:
            data = fh.read(MAX_BYTES)
    except OSError:
        return []
    return [ln for ln in data.split(b"\n") if ln.strip()]


def _is_for(line: bytes, entry: str, key_type: str | None = None) -> bool:
    """Whether a known_hosts line is the host's (of ``key_type``, when given): one host
    name (or its hashed form) and a key.  Anything else, malformed lines included, is not."""
    import paramiko

    fields = line.split()
    if len(fields) < 3 or line.lstrip().startswith((b"#", b"@")):
        return False
    try:
        names, kind = fields[0].decode("utf-8").split(","), fields[1].decode("utf-8")
    except UnicodeDecodeError:
        return False
    if key_type is not None and kind != key_type:
        return False
    for name in names:
        if name == entry:
            return True
        if name.startswith("|1|"):
            try:
                if paramiko.HostKeys.hash_host(entry, name) == name:
                    return True
            except Exception:  # noqa: BLE001 - a malformed hash: not this host
                continue
    return False


def _save(path: Path, lines: list[bytes]) -> None:
    from .fsutil import atomic_write

    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    atomic_write(path, b"".join(ln + b"\n" for ln in lines), mode=0o600)
