"""Secrets: where they come from, how they are generated, how they are hidden.

Sources, first match wins: the environment (``STACK_TUI_<NAME>``), the
profile's own ``[secrets]`` table (only when the user put them there), the
0600 secrets file beside the profile.  Missing secrets the run needs are
generated and saved to that file.  Every string that leaves the engine for a
log, a screen, an exception or the state file goes through ``Redactor``.
"""

from __future__ import annotations

import os
import secrets as _random
import stat
import string
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from .errors import Failure
from .fsutil import FileRefused, atomic_write, open_regular, read_regular
from .redact import Redactor
from .tomldoc import merge, where_in
from .services import REGISTRY

# The services' secrets (from the registry, in install order), then the user's own.
SERVICE_SECRETS = tuple(sec for svc in REGISTRY for sec in svc.secrets)
USER_SECRETS = {
    "ssh_password": "SSH login password",
    "sudo_password": "sudo password on the host",
}
SECRET_NAMES: tuple[str, ...] = tuple(s.name for s in SERVICE_SECRETS) + tuple(USER_SECRETS)
# Secrets stack-tui may invent; the SSH and sudo passwords belong to the user.
GENERATABLE: tuple[str, ...] = tuple(s.name for s in SERVICE_SECRETS)
DESCRIPTIONS = {**{s.name: s.description for s in SERVICE_SECRETS}, **USER_SECRETS}
# Which service a secret belongs to.
OWNER = {sec.name: svc.id for svc in REGISTRY for sec in svc.secrets}

# Passwords of Keystone users (bcrypt: at most 72 bytes count), of database users.
KEYSTONE_PASSWORDS = tuple(s.name for s in SERVICE_SECRETS if s.kind == "keystone")
DB_PASSWORDS = tuple(s.name for s in SERVICE_SECRETS if s.kind == "database")


class SecretError(Failure, ValueError):
    """A secret that cannot be used; the message names it and why."""


def env_name(name: str) -> str:
    return "STACK_TUI_" + name.upper()


def generate(length: int = 24) -> str:
    """A strong random password of letters and digits (easy to copy)."""
    alphabet = string.ascii_letters + string.digits
    while True:
        value = "".join(_random.choice(alphabet) for _ in range(length))
        if any(c.isdigit() for c in value) and any(c.isupper() for c in value):
            return value


def validate(name: str, value: str) -> str | None:
    """Why a value cannot be used, or None.  Any printable text works;
    control characters (newline, tab, NUL...) cannot survive config files."""
    if value == "":
        return f"{name} is empty"
    if len(value) > 256 or len(value.encode()) > 256:
        return f"{name} is longer than 256 bytes"
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        return f"{name} contains a control character (newline, tab or similar), which config files cannot hold"
    if name in KEYSTONE_PASSWORDS and len(value.encode()) > 72:
        return (f"{name} is longer than 72 bytes; Keystone hashes passwords with bcrypt, "
                "which reads only 72 bytes (Epoxy refuses longer ones)")
    if name in DB_PASSWORDS:
        if "%" in value or "@" in value:
            c = "%" if "%" in value else "@"
            return (f"{name} contains '{c}'; Keystone's and Glance's schema migrations read the "
                    "database URL through Python's configparser, where '%' breaks them"
                    + ("" if c == "%" else ", and an '@' must be written %40 in the URL"))
        try:
            value.encode("latin-1")
        except UnicodeEncodeError:
            return (f"{name} contains characters outside Latin-1; PyMySQL, which Keystone and "
                    "Glance use to reach MariaDB, sends database passwords as Latin-1")
    return None


def strength(value: str) -> str:
    """A rough hint for the UI: weak / fair / strong."""
    if not value:
        return "empty"
    classes = sum(
        any(f(c) for c in value)
        for f in (str.islower, str.isupper, str.isdigit, lambda c: not c.isalnum())
    )
    if len(value) >= 16 and classes >= 2 or len(value) >= 12 and classes >= 3:
        return "strong"
    if len(value) >= 10 and classes >= 2:
        return "fair"
    return "weak"


@dataclass
class Secrets:
    """The run's secrets and where each came from."""

    values: dict[str, str] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)
    file: Path | None = None

    def get(self, name: str) -> str | None:
        return self.values.get(name)

    def __getitem__(self, name: str) -> str:
        try:
            return self.values[name]
        except KeyError:
            raise SecretError(f"secret {name} is not set") from None

    def redactor(self) -> Redactor:
        return Redactor(self.values.values())

    def ensure(self, names, *, save: bool = True) -> list[str]:
        """Generate the missing generatable secrets among ``names``; save them."""
        made = []
        for name in names:
            if name in self.values or name not in GENERATABLE:
                continue
            self.values[name] = generate()
            self.sources[name] = "generated"
            made.append(name)
        if made and save and self.file is not None:
            self.save()
        return made

    def save(self) -> None:
        """Write the file-backed and generated secrets to the 0600 file."""
        if self.file is None:
            return
        keep = {
            k: v
            for k, v in self.values.items()
            if self.sources.get(k) in ("file", "generated", "user")
        }
        write_secrets_file(self.file, keep)


MAX_SECRETS_BYTES = 64 * 1024


def _check_private(path: Path, st) -> None:
    """Refuse a secrets file others may read or own, as OpenSSH refuses a loose private key."""
    if st.st_uid != os.getuid():
        raise SecretError(
            f"{path}: owned by another user (uid {st.st_uid}, you are {os.getuid()}); a secrets "
            f"file must be your own. Refused. Copy it to a file of yours, or remove it to have "
            f"stack-tui write a new one.")
    if st.st_mode & 0o077:
        raise SecretError(
            f"{path}: permissions {stat.S_IMODE(st.st_mode):04o} are too open: other users may "
            f"read the passwords in it. Refused (as OpenSSH refuses such a private key). "
            f"Fix it with: chmod 600 {path}")


def read_secrets_file(path: Path) -> dict[str, str]:
    """The secrets in ``path`` ({} when absent).  Refused with a sentence naming the file:
    not a regular file, too big, not private (mode 0600, owned by you), broken TOML."""
    try:
        fd, st = open_regular(path, MAX_SECRETS_BYTES)
    except FileNotFoundError:
        return {}
    except FileRefused as exc:
        raise SecretError(f"{path}: {exc}; a secrets file is a small TOML file") from None
    except OSError as exc:
        raise SecretError(f"{path}: cannot read: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as fh:
        _check_private(path, st)
        raw = fh.read(MAX_SECRETS_BYTES + 1)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SecretError(f"{path}: not a valid secrets file: not UTF-8 text "
                          f"{where_in(raw, exc.start)}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SecretError(f"{path}: not a valid secrets file ({exc})") from None
    out = {}
    for key, value in data.items():
        if key == "version":
            continue
        if key not in SECRET_NAMES:
            raise SecretError(f"{path}: unknown secret {key[:64]!r} (known: {', '.join(SECRET_NAMES)})")
        if not isinstance(value, str):
            raise SecretError(f"{path}: secret '{key}' must be a string")
        out[key] = value
    return out


def write_secrets_file(path: Path, values: dict[str, str]) -> None:
    try:
        old = read_regular(path, MAX_SECRETS_BYTES, follow=False).decode("utf-8")
    except (OSError, ValueError):  # absent, a symlink, not a file, too big, not UTF-8
        old = None
    text = merge(old, {"version": 1, **{k: values[k] for k in SECRET_NAMES if k in values}},
                 header="# stack-tui secrets: keep this file private (mode 0600)")
    atomic_write(path, text.encode(), mode=0o600)
