"""The sandbox's own host keys, trusted because this program made them.

``up()`` generates fresh SSH host keys inside the sandbox's root file system (rootfs.py,
``ssh-keygen -A``).  Their public halves are read from that file system on this machine,
not from the network, so recording them is no trust-on-first-use: a man in the middle
cannot have put them there.  The `stack-tui sandbox up` command records them, so the
installer it opens next does not ask about a key the user cannot check any better.
"""

from __future__ import annotations

import base64
import binascii
from pathlib import Path

from .. import hostkeys
from .base import SandboxError, SandboxInfo


def own_host_keys(info: SandboxInfo) -> list:
    """The public host keys in the sandbox's rootfs, as paramiko keys."""
    import paramiko

    keys = []
    for pub in sorted(Path(info.rootfs, "etc/ssh").glob("ssh_host_*_key.pub")):
        if pub.is_symlink() or not pub.is_file():
            continue
        fields = pub.read_text(errors="replace").split()
        if len(fields) < 2:
            continue
        try:
            keys.append(paramiko.PKey.from_type_string(fields[0], base64.b64decode(fields[1])))
        except (binascii.Error, ValueError, paramiko.SSHException):
            continue  # a key type paramiko does not speak: the others are enough
    return keys


def trust_own_host_keys(info: SandboxInfo) -> list[str]:
    """Record the sandbox's host keys in our known_hosts; their SHA256 fingerprints."""
    keys = own_host_keys(info)
    if not keys:
        raise SandboxError(f"no SSH host key found in {info.rootfs}/etc/ssh: is the sandbox up?")
    for key in keys:
        hostkeys.remember(info.address, info.port, key)
    return [hostkeys.fingerprint(k) for k in keys]
