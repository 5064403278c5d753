"""A profile's schema: ProfileError, the hosts it describes (each one's SSH settings and
roles) with their checks, and reading the tables of a parsed file.  ``profile.py`` builds the
Profile from these and re-exports what callers use (``pr.HostConfig``, ``pr.ProfileError``).

A version 2 profile lists its hosts as ``[[hosts]]`` entries, each with a name and roles
(``controller``, ``compute``); exactly one host is the controller.  A version 1 profile had
one ``[host]`` table: it reads as one host, named ``controller``, that is the controller and
computes for itself (what a single-host install has always done).  Saving writes version 2;
``v1_text_as_v2`` turns the user's ``[host]`` header into ``[[hosts]]`` so their comments stay.

Messages name the key: ``host.address`` for a profile of one host, ``hosts[N].address`` (N
counts the ``[[hosts]]`` entries from 1) when the profile is read from, or has, a list.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from .errors import Failure
from .fsutil import atomic_write

CONTROLLER, COMPUTE = "controller", "compute"
ROLES = (CONTROLLER, COMPUTE)
# The name a version 1 profile's one host gets (and a new profile's first host).
SINGLE_HOST_NAME = "controller"
# A host's name is a DNS label (letters, digits, inner -), so it can later name the host in
# /etc/hosts and in Nova; used with fullmatch and ends in \Z like every pattern here.
HOST_NAME_RE = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\Z")
HOSTNAME_RE = re.compile(
    r"(?=[A-Za-z0-9.-]{1,253}\Z)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)"
    r"(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\Z"
)
USER_RE = re.compile(r"[a-z_][a-z0-9_.-]{0,31}\$?\Z")
ZONE_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}\Z")
MAX_PATH_CHARS = 4096
# The keys of one host: a version 1 [host] table has the SSH ones, a [[hosts]] entry all.
SSH_FIELDS = {"address": str, "port": int, "user": str, "key_file": (str, type(None))}
# ``mgmt_address`` only in a [[hosts]] entry: a version 1 [host] reads as it always did.
HOST_FIELDS = {"name": str, "roles": list, **SSH_FIELDS, "mgmt_address": (str, type(None))}


class ProfileError(Failure, ValueError):
    """A profile that cannot be used; the message names file, key and reason."""

    def __init__(self, message: str, *, file: Path | str | None = None, key: str | None = None):
        self.file = str(file) if file else None
        self.key = key
        self.reason = message
        where = ""
        if file:
            where += f"{file}: "
        if key:
            where += f"[{key}] "
        super().__init__(where + message)


@dataclass
class HostConfig:
    address: str = ""
    port: int = 22
    user: str = "root"
    key_file: str | None = None
    name: str = SINGLE_HOST_NAME
    roles: list[str] = field(default_factory=lambda: list(ROLES))
    # The host's IPv4 address on the management network, where the services talk (the
    # address above is how stack-tui reaches it over SSH); None: detected from its name.
    mgmt_address: str | None = None

    def to_dict(self) -> dict:
        return {"name": self.name, "roles": list(self.roles), "address": self.address,
                "port": self.port, "user": self.user, "key_file": self.key_file,
                "mgmt_address": self.mgmt_address}


# ---------------------------------------------------------------------------
# checks shared by every profile value

def valid_host(value: str) -> bool:
    """A host name or an IP address; an IPv6 zone (``fe80::1%eth0``) only of the characters
    an interface name has: the value lands in Apache and oslo.config files and shell lines."""
    if not isinstance(value, str) or not value or len(value) > 253:
        return False
    if "%" in value:
        addr, _, zone = value.partition("%")
        if not ZONE_RE.fullmatch(zone) or ":" not in addr:
            return False
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 or c in "\"'`$;\\" for c in value):
        return False
    try:
        ipaddress.ip_address(value)
        return True
    except ValueError:
        return bool(HOSTNAME_RE.fullmatch(value)) and not value.replace(".", "").isdigit()


def show(value: str, quote: bool = True) -> str:
    """A value for a message: as is when printable and short, else escaped (repr), so a
    newline or an escape sequence in it cannot break the message or the terminal."""
    if value.isprintable() and len(value) <= 80:
        return f"'{value}'" if quote else value
    return repr(value[:80])


def is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except (OSError, ValueError):  # a name too long for the file system
        return False


def text_error(value: str | None, max_chars: int) -> str | None:
    """Why a free-text field (a path, a URL, an image name) cannot be used, or None."""
    if value is None:
        return None
    if len(value) > max_chars:
        return f"is {len(value)} characters long; at most {max_chars}"
    if any(ord(c) < 32 or 127 <= ord(c) < 160 for c in value):
        return "contains a control character (newline, tab, escape or similar)"
    return None


# ---------------------------------------------------------------------------
# validation of the hosts

def host_key(index: int, list_form: bool) -> str:
    """``host`` (one host, the version 1 form) or ``hosts[N]``, N counted from 1."""
    return f"hosts[{index + 1}]" if list_form else "host"


def hosts_errors(hosts: list[HostConfig], list_form: bool | None = None) -> list[tuple[str, str]]:
    """Every problem with the hosts as (key, reason).  ``list_form`` None: keys say
    ``hosts[N]`` when there is more than one host, else ``host``."""
    if not hosts:
        return [("hosts", "no host described; give at least one [[hosts]] entry")]
    if list_form is None:
        list_form = len(hosts) > 1
    errs: list[tuple[str, str]] = []
    for i, h in enumerate(hosts):
        errs += _one_host_errors(h, host_key(i, list_form))
    errs += _set_errors(hosts, list_form)
    return errs


def _one_host_errors(h: HostConfig, key: str) -> list[tuple[str, str]]:
    errs: list[tuple[str, str]] = []
    if not isinstance(h.name, str) or not HOST_NAME_RE.fullmatch(h.name):
        errs.append((f"{key}.name", f"{show(str(h.name))} is not a host name (1-63 letters, "
                                    "digits and -, not starting or ending with -)"))
    errs += _roles_errors(h.roles, f"{key}.roles")
    if not h.address:
        errs.append((f"{key}.address", "no host address given"))
    elif not valid_host(h.address):
        errs.append((f"{key}.address", f"{show(h.address)} is not a hostname or IP address "
                                       "(no spaces, quotes, $, `, ; or control characters; an "
                                       "IPv6 zone is letters, digits, _ . -)"))
    if not 1 <= h.port <= 65535:
        errs.append((f"{key}.port", f"port {h.port} is outside 1-65535"))
    if not h.user or not USER_RE.fullmatch(h.user):
        errs.append((f"{key}.user", f"{show(h.user)} is not a valid user name"))
    why = mgmt_address_error(h.mgmt_address)
    if why:
        errs.append((f"{key}.mgmt_address", why))
    why = text_error(h.key_file, MAX_PATH_CHARS)
    if why:
        errs.append((f"{key}.key_file", f"the key file name {why}"))
    elif h.key_file:
        kf = Path(h.key_file).expanduser()
        if not is_file(kf):
            errs.append((f"{key}.key_file", f"key file {kf} " + ("is not a regular file"
                         if os.path.lexists(kf) else "does not exist")))
        elif not os.access(kf, os.R_OK):
            errs.append((f"{key}.key_file", f"key file {kf} is not readable"))
    return errs


def mgmt_address_error(value: str | None) -> str | None:
    """Why ``value`` cannot be a host's management address, or None (None: not given).  An
    IPv4 address written plainly: the host name is mapped to it in /etc/hosts and checked
    with IPv4 lookups, and it lands in the services' configuration files."""
    if value is None:
        return None
    shown = show(value) if isinstance(value, str) else repr(value)
    try:
        addr = ipaddress.IPv4Address(value) if isinstance(value, str) else None
    except ValueError:
        addr = None
    if addr is None or str(addr) != value:
        return (f"{shown} is not an IPv4 address (the host's address on the management "
                "network, such as 10.0.0.11; leave it out to use the address the host's name "
                "resolves to)")
    if addr.is_loopback or addr.is_unspecified or addr.is_multicast:
        return f"{shown} is a loopback, unspecified or multicast address, not a host's address"
    return None


def _roles_errors(roles: list[str], key: str) -> list[tuple[str, str]]:
    if not roles:
        return [(key, f"no role given; give one or both of {', '.join(ROLES)}")]
    unknown = [show(r, quote=False) for r in roles if r not in ROLES]
    if unknown:
        return [(key, f"unknown role(s) {', '.join(unknown)}; known: {', '.join(ROLES)}")]
    if len(set(roles)) != len(roles):
        return [(key, "a role is listed twice")]
    return []


def _address_key(address: str, port: int) -> tuple[str, int]:
    """The same host however it is written: an IP address normalised, a name lower-case."""
    try:
        return str(ipaddress.ip_address(address)), port
    except ValueError:
        return address.lower().rstrip("."), port


def _set_errors(hosts: list[HostConfig], list_form: bool) -> list[tuple[str, str]]:
    """Across the hosts: exactly one controller, names, address:port and management
    addresses each used once."""
    errs: list[tuple[str, str]] = []
    controllers = [i for i, h in enumerate(hosts) if CONTROLLER in h.roles]
    if not controllers:
        errs.append(("hosts" if list_form else "host.roles",
                     "no host has the controller role; exactly one host must (roles = "
                     "[\"controller\"] or [\"controller\", \"compute\"])"))
    for i in controllers[1:]:
        first = controllers[0]
        errs.append((f"{host_key(i, list_form)}.roles",
                     f"a second controller ({host_key(first, list_form)} "
                     f"{show(str(hosts[first].name))} is one); exactly one host is the controller"))
    names: dict[str, int] = {}
    seen: dict[tuple[str, int], int] = {}
    mgmts: dict[str, int] = {}
    for i, h in enumerate(hosts):
        key = host_key(i, list_form)
        if isinstance(h.name, str) and h.name.lower() in names:
            errs.append((f"{key}.name", f"the name {show(h.name)} is already used by "
                                        f"{host_key(names[h.name.lower()], list_form)}"))
        elif isinstance(h.name, str):
            names[h.name.lower()] = i
        if isinstance(h.mgmt_address, str) and mgmt_address_error(h.mgmt_address) is None:
            if h.mgmt_address in mgmts:
                errs.append((f"{key}.mgmt_address", f"{show(h.mgmt_address)} is already the "
                             f"management address of {host_key(mgmts[h.mgmt_address], list_form)}"
                             "; each host has its own"))
            else:
                mgmts[h.mgmt_address] = i
        if not (isinstance(h.address, str) and h.address and isinstance(h.port, int)):
            continue
        where = _address_key(h.address, h.port)
        if where in seen:
            errs.append((f"{key}.address", f"{show(h.address)} port {h.port} is already "
                                           f"{host_key(seen[where], list_form)}; each host "
                                           "is described once"))
        else:
            seen[where] = i
    return errs


# ---------------------------------------------------------------------------
# version 1 text, saved as version 2

_V1_HEADER = re.compile(r"^([ \t]*)\[[ \t]*host[ \t]*\]", re.M)


def v1_text_as_v2(old_text: str) -> str | None:
    """A version 1 profile's text with its ``[host]`` header turned into ``[[hosts]]`` in
    place, so the comments in and around the table stay where the person wrote them.  None
    when that cannot be done safely (no such header, a header-like line in a string, a
    ``host`` written another way): the caller then writes the hosts anew."""
    try:
        old = tomllib.loads(old_text)
    except tomllib.TOMLDecodeError:
        return None
    if not isinstance(old.get("host"), dict) or "hosts" in old:
        return None
    if len(_V1_HEADER.findall(old_text)) != 1:
        return None
    new_text = _V1_HEADER.sub(r"\1[[hosts]]", old_text)
    try:
        new = tomllib.loads(new_text)
    except tomllib.TOMLDecodeError:
        return None
    host = old.pop("host")
    if "host" in new or new.pop("hosts", None) != [host] or new != old:
        return None
    return new_text


def v1_backup_path(path: Path) -> Path:
    """Where the version 1 text of the profile at ``path`` is kept: ``NAME.toml.v1``."""
    return path.with_name(path.name + ".v1")


def keep_v1_text(path: Path, old_text: str | None) -> Path | None:
    """Before a version 1 file is first saved as version 2, its text is kept beside it (for
    an older stack-tui, which cannot read version 2), 0600 like the profile since it may
    hold inline secrets.  An existing copy is never overwritten.  The copy's path, or None."""
    if not old_text:
        return None
    try:
        version = tomllib.loads(old_text).get("version")
    except tomllib.TOMLDecodeError:
        return None
    backup = v1_backup_path(Path(path))
    if version != 1 or os.path.lexists(backup):
        return None
    atomic_write(backup, old_text.encode(), mode=0o600)
    return backup


# ---------------------------------------------------------------------------
# reading a parsed file

_TYPE_NAMES = {str: "a string", int: "a whole number", bool: "true or false", list: "a list"}


def typename(t) -> str:
    if isinstance(t, tuple):
        t = t[0]
    return _TYPE_NAMES.get(t, t.__name__)


def read_fields(raw, fields: dict, where: str, path: Path | None) -> dict:
    """The keyword arguments of one table, each key known and of the right type."""
    if not isinstance(raw, dict):
        raise ProfileError("must be a table", file=path, key=where)
    kwargs = {}
    for key, value in raw.items():
        if key not in fields:
            raise ProfileError(f"unknown key {show(key)} (known: {', '.join(fields)})", file=path,
                               key=f"{where}.{show(key, quote=False)}")
        want = fields[key]
        ok = isinstance(value, want) and not (isinstance(value, bool) and want is int)
        if not ok:
            raise ProfileError(f"must be {typename(want)}, not {type(value).__name__}",
                               file=path, key=f"{where}.{key}")
        if want is list and not all(isinstance(v, str) for v in value):
            raise ProfileError("must be a list of strings", file=path, key=f"{where}.{key}")
        kwargs[key] = value
    return kwargs


def read_hosts(data: dict, version: int, path: Path | None) -> list[HostConfig]:
    """Version 1: the [host] table, one host that is controller and compute.  Version 2:
    the [[hosts]] entries, each naming itself and its roles."""
    if version == 1:
        if "host" not in data:
            raise ProfileError("missing [host] table with at least address = \"...\"",
                               file=path, key="host")
        return [HostConfig(**read_fields(data["host"], SSH_FIELDS, "host", path))]
    raw = data.get("hosts")
    if raw is None:
        raise ProfileError("missing [[hosts]] entries (each with name, roles and address)",
                           file=path, key="hosts")
    if not isinstance(raw, list):
        raise ProfileError(f"must be [[hosts]] entries (tables), not {type(raw).__name__}",
                           file=path, key="hosts")
    hosts = []
    for n, entry in enumerate(raw, 1):
        kwargs = read_fields(entry, HOST_FIELDS, f"hosts[{n}]", path)
        for key in ("name", "roles"):
            if key not in kwargs:
                raise ProfileError(f"missing {key} (each [[hosts]] entry has name, roles and "
                                   "address)", file=path, key=f"hosts[{n}].{key}")
        hosts.append(HostConfig(**kwargs))
    return hosts
