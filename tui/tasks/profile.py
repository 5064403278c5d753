"""Profiles: versioned TOML describing one installation target.

A profile names the host, what to install and the image to upload.  Secrets
live apart (see ``secrets.py``).  Loading is strict: unknown keys, wrong
types, a missing host or a broken file are refused with file, key and reason,
and nothing is overwritten.
"""

from __future__ import annotations

import ipaddress
import os
import re
import stat
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from . import paths, platforms
from .errors import Failure
from .fsutil import FileRefused, atomic_write, read_regular
from .services import REGISTRY
from .secrets import (
    SECRET_NAMES,
    Secrets,
    SecretError,
    env_name,
    read_secrets_file,
    validate,
)
from .tomldoc import merge, where_in

PROFILE_VERSION = 1
SERVICES = tuple(s.id for s in REGISTRY)
# What a new profile selects: the control plane; compute (Placement, Nova, Neutron) is opt-in.
DEFAULT_SERVICES = tuple(s.id for s in REGISTRY if s.default)
# What each service needs to be useful.
DEPENDS = {s.id: s.requires for s in REGISTRY}
# "auto" (detected from the host) or one of the platforms stack-tui knows, forced
PLATFORMS = ("auto", *platforms.PLATFORMS)
DISK_FORMATS = ("qcow2", "raw", "vmdk", "vdi", "iso", "vhd", "vhdx", "ami", "ari", "aki", "ploop")
MAX_PROFILE_BYTES = 256 * 1024
VISIBILITIES = ("public", "private", "shared", "community")
CONTAINER_FORMATS = ("bare", "ovf", "aki", "ari", "ami", "ova", "docker", "compressed")
# The image the upstream install guides test a new cloud with (DevStack's CirrOS 0.6.3):
# about 20 MB, boots in seconds.  Used when [image] names neither a file nor a URL.
DEFAULT_IMAGE_URL = "https://download.cirros-cloud.net/0.6.3/cirros-0.6.3-x86_64-disk.img"
SUITABLE_IMAGE = ("a bootable cloud disk image (qcow2 or raw); CirrOS (20 MB) is made for "
                  "testing, a distribution's cloud image for real use")
# Every pattern is used with fullmatch (and ends in \Z): `$` would let a final newline through.
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")
HOSTNAME_RE = re.compile(
    r"(?=[A-Za-z0-9.-]{1,253}\Z)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)"
    r"(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\Z"
)
REGION_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z")
USER_RE = re.compile(r"[a-z_][a-z0-9_.-]{0,31}\$?\Z")
ZONE_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}\Z")
URL_RE = re.compile(r"(https?|file)://\S+\Z")
MAX_PATH_CHARS = 4096


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


@dataclass
class OpenStackConfig:
    region: str = "RegionOne"
    endpoint_host: str | None = None
    services: list[str] = field(default_factory=lambda: list(DEFAULT_SERVICES))
    demo: bool = True
    platform: str = "auto"
    fix_hosts: bool = True


@dataclass
class ImageConfig:
    name: str = "cirros"
    file: str | None = None
    url: str | None = None
    disk_format: str = "qcow2"
    container_format: str = "bare"
    visibility: str = "public"
    upload: bool = True     # false: no image; Glance is installed empty

    def source(self) -> str | None:
        """What the image phase uploads: the file, the URL, else the default URL;
        None when the profile asks for no image."""
        if not self.upload:
            return None
        return self.file or self.url or DEFAULT_IMAGE_URL


@dataclass
class Profile:
    name: str
    host: HostConfig = field(default_factory=HostConfig)
    openstack: OpenStackConfig = field(default_factory=OpenStackConfig)
    image: ImageConfig = field(default_factory=ImageConfig)
    path: Path | None = None
    inline_secrets: dict[str, str] = field(default_factory=dict)
    version: int = PROFILE_VERSION

    # -- derived -------------------------------------------------------
    @property
    def endpoint_host(self) -> str:
        return self.openstack.endpoint_host or self.host.address

    @property
    def secrets_file(self) -> Path:
        base = self.path if self.path is not None else paths.profiles_dir() / f"{self.name}.toml"
        return base.with_name(base.stem + ".secrets.toml")

    def needed_secrets(self) -> list[str]:
        svc = set(self.openstack.services)
        return [sec.name for s in REGISTRY if s.id in svc for sec in s.secrets
                if self.openstack.demo or not sec.only_with_demo]

    def databases(self) -> list[tuple[str, str]]:
        """(database, its password's secret name) for each selected service that has one."""
        svc = set(self.openstack.services)
        return [(s.database, f"{s.database}_db_password") for s in REGISTRY
                if s.id in svc and s.database]

    # -- serialisation -------------------------------------------------
    def to_dict(self, *, with_secrets: bool = False) -> dict:
        data: dict = {
            "version": self.version,
            "host": {
                "address": self.host.address,
                "port": self.host.port,
                "user": self.host.user,
                "key_file": self.host.key_file,
            },
            "openstack": {
                "region": self.openstack.region,
                "endpoint_host": self.openstack.endpoint_host,
                "services": list(self.openstack.services),
                "demo": self.openstack.demo,
                "platform": self.openstack.platform,
                "fix_hosts": self.openstack.fix_hosts,
            },
            "image": {
                "name": self.image.name,
                "file": self.image.file,
                "url": self.image.url,
                "disk_format": self.image.disk_format,
                "container_format": self.image.container_format,
                "visibility": self.image.visibility,
                "upload": self.image.upload,
            },
        }
        if with_secrets and self.inline_secrets:
            data["secrets"] = dict(self.inline_secrets)
        return data

    def dumps(self, old_text: str | None = None) -> str:
        """The profile as TOML; written into ``old_text`` (the file as the user left it)
        when given, so their comments and key order survive."""
        return merge(old_text, self.to_dict(with_secrets=True),
                     header=f"# stack-tui profile '{self.name}'")

    def validate(self) -> None:
        errors = validation_errors(self)
        if errors:
            key, reason = errors[0]
            raise ProfileError(reason, file=self.path, key=key)


# ---------------------------------------------------------------------------
# validation

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


def _show(value: str, quote: bool = True) -> str:
    """A value for a message: as is when printable and short, else escaped (repr), so a
    newline or an escape sequence in it cannot break the message or the terminal."""
    if value.isprintable() and len(value) <= 80:
        return f"'{value}'" if quote else value
    return repr(value[:80])


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except (OSError, ValueError):  # a name too long for the file system
        return False


def _text_error(value: str | None, max_chars: int) -> str | None:
    """Why a free-text field (a path, a URL, an image name) cannot be used, or None."""
    if value is None:
        return None
    if len(value) > max_chars:
        return f"is {len(value)} characters long; at most {max_chars}"
    if any(ord(c) < 32 or 127 <= ord(c) < 160 for c in value):
        return "contains a control character (newline, tab, escape or similar)"
    return None


def validation_errors(p: Profile) -> list[tuple[str, str]]:
    """Every problem as (key, reason); empty when the profile is usable."""
    errs: list[tuple[str, str]] = []
    h, o, i = p.host, p.openstack, p.image
    if not h.address:
        errs.append(("host.address", "no host address given"))
    elif not valid_host(h.address):
        errs.append(("host.address", f"{_show(h.address)} is not a hostname or IP address "
                                     "(no spaces, quotes, $, `, ; or control characters; an "
                                     "IPv6 zone is letters, digits, _ . -)"))
    if not 1 <= h.port <= 65535:
        errs.append(("host.port", f"port {h.port} is outside 1-65535"))
    if not h.user or not USER_RE.fullmatch(h.user):
        errs.append(("host.user", f"{_show(h.user)} is not a valid user name"))
    why = _text_error(h.key_file, MAX_PATH_CHARS)
    if why:
        errs.append(("host.key_file", f"the key file name {why}"))
    elif h.key_file:
        kf = Path(h.key_file).expanduser()
        if not _is_file(kf):
            errs.append(("host.key_file", f"key file {kf} " + ("is not a regular file"
                         if os.path.lexists(kf) else "does not exist")))
        elif not os.access(kf, os.R_OK):
            errs.append(("host.key_file", f"key file {kf} is not readable"))
    if not REGION_RE.fullmatch(o.region or ""):
        errs.append(("openstack.region", f"{_show(o.region)} is not a valid region name "
                                         "(letters, digits, _ . -)"))
    if o.endpoint_host and not valid_host(o.endpoint_host):
        errs.append(("openstack.endpoint_host", f"{_show(o.endpoint_host)} is not a hostname or "
                                                "IP address (no spaces, quotes, $, `, ; or "
                                                "control characters)"))
    unknown = [_show(s, quote=False) for s in o.services if s not in SERVICES]
    if unknown:
        errs.append(("openstack.services", f"unknown service(s) {', '.join(unknown)}; known: {', '.join(SERVICES)}"))
    for svc in o.services:
        for dep in DEPENDS.get(svc, ()):
            if dep not in o.services:
                errs.append(("openstack.services", f"{svc} needs {dep}"))
    if o.platform not in PLATFORMS:
        errs.append(("openstack.platform", f"{_show(o.platform)} is not one of {', '.join(PLATFORMS)}"))
    errs += _image_errors(i, "glance" in o.services and i.upload)
    for name, value in p.inline_secrets.items():
        why = validate(name, value)
        if why:
            errs.append((f"secrets.{name}", why))
    return errs


def _image_errors(i: ImageConfig, used: bool) -> list[tuple[str, str]]:
    errs: list[tuple[str, str]] = []
    for key, value, limit in (("name", i.name, 255), ("file", i.file, MAX_PATH_CHARS),
                              ("url", i.url, MAX_PATH_CHARS)):
        why = _text_error(value, limit)
        if why:
            errs.append((f"image.{key}", f"the image {key} {why}"))
    if errs or not used:
        return errs
    if not i.name:
        errs.append(("image.name", "image name must be 1-255 characters"))
    if i.file and i.url:
        errs.append(("image", "give either image.file or image.url, not both"))
    if i.file and not _is_file(Path(i.file).expanduser()):
        errs.append(("image.file", f"image file {i.file} does not exist"))
    if i.url and not URL_RE.fullmatch(i.url):
        errs.append(("image.url", f"{_show(i.url)} is not an http(s) URL (spaces are "
                                  "written %20)"))
    for key, value, allowed in (("disk_format", i.disk_format, DISK_FORMATS),
                                ("visibility", i.visibility, VISIBILITIES),
                                ("container_format", i.container_format, CONTAINER_FORMATS)):
        if value not in allowed:
            errs.append((f"image.{key}", f"{_show(value)} is not one of {', '.join(allowed)}"))
    return errs


_SCHEMA = {
    "host": (HostConfig, {"address": str, "port": int, "user": str, "key_file": (str, type(None))}),
    "openstack": (
        OpenStackConfig,
        {"region": str, "endpoint_host": (str, type(None)), "services": list, "demo": bool,
         "platform": str, "fix_hosts": bool},
    ),
    "image": (
        ImageConfig,
        {"name": str, "file": (str, type(None)), "url": (str, type(None)), "disk_format": str,
         "container_format": str, "visibility": str, "upload": bool},
    ),
}

_TYPE_NAMES = {str: "a string", int: "a whole number", bool: "true or false", list: "a list"}


def _typename(t) -> str:
    if isinstance(t, tuple):
        t = t[0]
    return _TYPE_NAMES.get(t, t.__name__)


def from_dict(data: dict, *, name: str, path: Path | None = None) -> Profile:
    version = data.get("version")
    if version is None:
        raise ProfileError("missing 'version' (this stack-tui writes version = 1)", file=path, key="version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise ProfileError("must be a whole number", file=path, key="version")
    if version < 1:
        raise ProfileError(f"profile version {version} is not valid (this stack-tui writes version = 1)",
                           file=path, key="version")
    if version > PROFILE_VERSION:
        raise ProfileError(
            f"profile version {version} is newer than this stack-tui understands ({PROFILE_VERSION}); upgrade stack-tui",
            file=path, key="version")
    for key in data:
        if key not in ("version", "host", "openstack", "image", "secrets"):
            raise ProfileError(f"unknown key {_show(key)} (known: version, host, openstack, image, secrets)",
                               file=path, key=_show(key, quote=False))
    if "host" not in data:
        raise ProfileError("missing [host] table with at least address = \"...\"", file=path, key="host")
    built = {}
    for table, (cls, fields) in _SCHEMA.items():
        raw = data.get(table, {})
        if not isinstance(raw, dict):
            raise ProfileError("must be a table", file=path, key=table)
        kwargs = {}
        for key, value in raw.items():
            if key not in fields:
                raise ProfileError(f"unknown key {_show(key)} (known: {', '.join(fields)})", file=path,
                                   key=f"{table}.{_show(key, quote=False)}")
            want = fields[key]
            ok = isinstance(value, want) and not (isinstance(value, bool) and want is int)
            if not ok:
                raise ProfileError(f"must be {_typename(want)}, not {type(value).__name__}", file=path, key=f"{table}.{key}")
            if want is list and not all(isinstance(v, str) for v in value):
                raise ProfileError("must be a list of strings", file=path, key=f"{table}.{key}")
            kwargs[key] = value
        built[table] = cls(**kwargs)
    secrets_raw = data.get("secrets", {})
    if not isinstance(secrets_raw, dict):
        raise ProfileError("must be a table", file=path, key="secrets")
    for key, value in secrets_raw.items():
        if key not in SECRET_NAMES:
            raise ProfileError(f"unknown secret {_show(key)} (known: {', '.join(SECRET_NAMES)})",
                               file=path, key=f"secrets.{_show(key, quote=False)}")
        if not isinstance(value, str):
            raise ProfileError("must be a string", file=path, key=f"secrets.{key}")
    profile = Profile(name=name, path=path, inline_secrets=dict(secrets_raw), version=PROFILE_VERSION, **built)
    profile.validate()
    return profile


# ---------------------------------------------------------------------------
# files

def profile_path(name_or_path: str | os.PathLike) -> Path:
    text = str(name_or_path)
    # A saved profile's name wins over a same-named file or directory in the cwd.
    if os.sep in text or text.endswith(".toml") or (
        _is_file(Path(text))
        and not (paths.profiles_dir() / f"{text}.toml").exists()
    ):
        if "\0" in text or len(text) > MAX_PATH_CHARS:
            raise ProfileError(f"{_show(text)} is not a usable file name")
        return Path(text).expanduser()
    if not NAME_RE.fullmatch(text):
        raise ProfileError(f"{_show(text)} is not a valid profile name (letters, digits, . _ -)")
    return paths.profiles_dir() / f"{text}.toml"


def read_profile_text(path: Path) -> str:
    """The profile file's text; a directory, FIFO, device, huge or binary file is refused at
    once (stat before open, no blocking open) with a ProfileError naming the file."""
    try:
        raw = read_regular(path, MAX_PROFILE_BYTES)
    except FileNotFoundError:
        raise ProfileError("no such profile (see `stack-tui profiles list`)", file=path) from None
    except FileRefused as exc:
        if exc.size is not None:
            raise ProfileError(f"file is {exc.size} bytes; a profile is at most "
                               f"{MAX_PROFILE_BYTES}", file=path) from None
        raise ProfileError(f"this {exc}; a profile is a TOML file", file=path) from None
    except OSError as exc:
        raise ProfileError(f"cannot read: {exc.strerror}", file=path) from None
    if b"\0" in raw:
        raise ProfileError("this is a binary file, not a TOML profile", file=path)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ProfileError("not UTF-8 text " + where_in(raw, exc.start), file=path) from None


def load(name_or_path: str | os.PathLike) -> Profile:
    path = profile_path(name_or_path)
    text = read_profile_text(path)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ProfileError(f"not valid TOML: {exc}", file=path) from None
    return from_dict(data, name=path.stem, path=path)


def _existing_text(path: Path) -> str | None:
    """The profile file as it is now (to edit in place), or None when absent or unusable."""
    try:
        return read_regular(path, MAX_PROFILE_BYTES, follow=False).decode("utf-8")
    except (OSError, ValueError):
        return None


def save(profile: Profile, *, path: Path | None = None) -> Path:
    profile.validate()
    target = path or profile.path
    if target is None:
        if not NAME_RE.fullmatch(profile.name):
            raise ProfileError(f"{_show(profile.name)} is not a valid profile name "
                               "(a letter or digit, then letters, digits, . _ -)")
        target = paths.profiles_dir() / f"{profile.name}.toml"
    if Path(target).is_dir():
        raise ProfileError("is a directory; cannot save the profile there", file=target)
    atomic_write(target, profile.dumps(_existing_text(target)).encode(), mode=0o600)
    profile.path = target
    return target


def list_profiles() -> list[str]:
    return sorted(
        p.stem for p in paths.profiles_dir().glob("*.toml") if not p.name.endswith(".secrets.toml")
    )


def deletable_files(name: str) -> list[Path]:
    """The files `delete(name)` would remove: the profile and its secrets file, both in the
    profiles directory, found by name only (a path is refused).  A symlink there is itself
    removed, never what it points to; a directory is refused."""
    if not NAME_RE.fullmatch(name or "") or name.endswith(".secrets"):
        raise ProfileError(f"{_show(name)} is not a profile name (give the name `stack-tui "
                           "profiles list` shows, not a path)")
    base = paths.profiles_dir()
    found = []
    for p in (base / f"{name}.toml", base / f"{name}.secrets.toml"):
        try:
            st = os.lstat(p)
        except FileNotFoundError:
            continue
        if not (stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode)):
            raise ProfileError("is not a file; not deleting it", file=p)
        found.append(p)
    return found


def delete(name: str) -> bool:
    """Remove the profile ``name`` (and its secrets file) from the profiles directory."""
    found = deletable_files(name)
    for p in found:
        os.unlink(p)  # unlink never follows a symlink
    return bool(found)


def load_secrets(profile: Profile, env: dict | None = None) -> Secrets:
    """Collect secrets: environment, then the profile's [secrets], then the file."""
    env = os.environ if env is None else env
    file = profile.secrets_file
    try:
        stored = read_secrets_file(file)  # a loose or foreign file is refused, never chmodded
    except SecretError as exc:
        raise ProfileError(str(exc)) from None
    out = Secrets(file=file)
    for name in SECRET_NAMES:
        if env.get(env_name(name)):
            out.values[name], out.sources[name] = env[env_name(name)], "env"
        elif name in profile.inline_secrets:
            out.values[name], out.sources[name] = profile.inline_secrets[name], "profile"
        elif name in stored:
            out.values[name], out.sources[name] = stored[name], "file"
        else:
            continue
        why = validate(name, out.values[name])
        if why:
            raise ProfileError(why + f" (from {out.sources[name]})", key=f"secrets.{name}")
    return out
