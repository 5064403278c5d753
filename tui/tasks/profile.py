"""Profiles: versioned TOML describing one installation target.

A profile names the host, what to install and the image to upload.  Secrets
live apart (see ``secrets.py``).  Loading is strict: unknown keys, wrong
types, a missing host or a broken file are refused with file, key and reason,
and nothing is overwritten.
"""

from __future__ import annotations

import copy
import os
import re
import stat
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from . import paths, platforms
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
from .profile_schema import (  # noqa: F401  (the names other modules use as pr.*)
    COMPUTE,
    CONTROLLER,
    HOSTNAME_RE,
    MAX_PATH_CHARS,
    ROLES,
    USER_RE,
    ZONE_RE,
    HostConfig,
    ProfileError,
    read_fields,
    read_hosts,
    hosts_errors,
    is_file as _is_file,
    keep_v1_text,
    show as _show,
    text_error as _text_error,
    v1_backup_path,
    v1_text_as_v2,
    valid_host,
)

PROFILE_VERSION = 2
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
REGION_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z")
URL_RE = re.compile(r"(https?|file)://\S+\Z")


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


@dataclass(init=False)
class Profile:
    """What to install where.  ``hosts`` are every host described; ``host`` (what the engine
    and the screens use) is the controller: the one host of a single-host profile."""

    name: str
    hosts: list[HostConfig]
    openstack: OpenStackConfig
    image: ImageConfig
    path: Path | None
    inline_secrets: dict[str, str]
    version: int

    def __init__(self, name: str, host: HostConfig | None = None,
                 openstack: OpenStackConfig | None = None, image: ImageConfig | None = None,
                 path: Path | None = None, inline_secrets: dict[str, str] | None = None,
                 version: int = PROFILE_VERSION, *, hosts: list[HostConfig] | None = None):
        if host is not None and hosts is not None:
            raise TypeError("give host (one host) or hosts, not both")
        self.name = name
        self.hosts = list(hosts) if hosts is not None else [host or HostConfig()]
        self.openstack = openstack if openstack is not None else OpenStackConfig()
        self.image = image if image is not None else ImageConfig()
        self.path = path
        self.inline_secrets = dict(inline_secrets or {})
        self.version = version
        self._here: str | None = None   # on(name): the host this view's steps run on

    @property
    def controller(self) -> HostConfig | None:
        """The host with the controller role (the first one when a broken profile has two)."""
        return next((h for h in self.hosts if CONTROLLER in h.roles), None)

    @property
    def controller_here(self) -> bool:
        """Whether ``host`` (a view's own host, see ``on``) is the controller: always with
        one host; with several, false on a compute-only host."""
        return self.controller in (None, self.host)

    def on(self, name: str) -> "Profile":
        """This profile as seen by the steps that run on host ``name``: ``host`` is that
        host; the controller, the endpoints and every other choice stay the profile's.
        A view (the hosts are shared), for the engine; it is never saved."""
        if not any(h.name == name for h in self.hosts):
            raise KeyError(name)
        view = copy.copy(self)
        view._here = name
        return view

    @property
    def here(self) -> str | None:
        """The host name a view made by ``on`` is for (None: the profile itself)."""
        return self._here

    @property
    def host(self) -> HostConfig:
        """The controller (a view's own host, see ``on``); the first host while none has
        the role (a profile being edited)."""
        if self._here is not None:
            return next(h for h in self.hosts if h.name == self._here)
        found = self.controller
        if found is not None:
            return found
        if not self.hosts:
            raise ProfileError("no host described", file=self.path, key="hosts")
        return self.hosts[0]

    @host.setter
    def host(self, value: HostConfig) -> None:
        if not self.hosts:
            self.hosts.append(value)
        else:
            current = self.host
            self.hosts = [value if h is current else h for h in self.hosts]

    @property
    def computes(self) -> list[HostConfig]:
        """The hosts with the compute role, in the profile's order."""
        return [h for h in self.hosts if COMPUTE in h.roles]

    # -- derived -------------------------------------------------------
    @property
    def endpoint_host(self) -> str:
        """Where clients reach the cloud's APIs: the controller's (on every host's view)."""
        return self.openstack.endpoint_host or (self.controller or self.host).address

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
            "hosts": [h.to_dict() for h in self.hosts],
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
        when given, so their comments and key order survive.  A version 1 text's [host]
        table becomes the [[hosts]] entry in place (its comments stay)."""
        if old_text:
            old_text = v1_text_as_v2(old_text) or old_text
        return merge(old_text, self.to_dict(with_secrets=True),
                     header=f"# stack-tui profile '{self.name}'")

    def validate(self, *, list_form: bool | None = None) -> None:
        """Raise the first problem as a ProfileError.  ``list_form``: name a host's keys
        ``hosts[N]`` (True: the file lists [[hosts]]), ``host`` (False) or by count (None)."""
        errors = validation_errors(self, list_form=list_form)
        if errors:
            key, reason = errors[0]
            raise ProfileError(reason, file=self.path, key=key)


# ---------------------------------------------------------------------------
# validation

def validation_errors(p: Profile, *, list_form: bool | None = None) -> list[tuple[str, str]]:
    """Every problem as (key, reason); empty when the profile is usable."""
    errs = hosts_errors(p.hosts, list_form)
    o, i = p.openstack, p.image
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
# The top-level keys of each version: version 1 has one [host], version 2 [[hosts]].
_TOP_KEYS = {1: ("version", "host", "openstack", "image", "secrets"),
             2: ("version", "hosts", "openstack", "image", "secrets")}

def _version(data: dict, path: Path | None) -> int:
    version = data.get("version")
    writes = f"this stack-tui writes version = {PROFILE_VERSION}"
    if version is None:
        raise ProfileError(f"missing 'version' ({writes})", file=path, key="version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise ProfileError("must be a whole number", file=path, key="version")
    if version < 1:
        raise ProfileError(f"profile version {version} is not valid ({writes})",
                           file=path, key="version")
    if version > PROFILE_VERSION:
        raise ProfileError(
            f"profile version {version} is newer than this stack-tui understands ({PROFILE_VERSION}); upgrade stack-tui",
            file=path, key="version")
    return version


def _check_form(data: dict, version: int, path: Path | None) -> None:
    """The keys the version has: [host] only in version 1, [[hosts]] only in version 2."""
    if version == 1 and "hosts" in data:
        raise ProfileError("[[hosts]] entries are the version 2 form, but this file says "
                           "version = 1: set version = 2 (each entry with name and roles), "
                           "or describe the one host in a [host] table", file=path, key="hosts")
    if version >= 2 and "host" in data:
        raise ProfileError("[host] is the version 1 form; a version 2 profile lists its hosts "
                           "as [[hosts]] entries, each with name, roles and address (or set "
                           "version = 1 for a single [host])", file=path, key="host")
    known = _TOP_KEYS[version]
    for key in data:
        if key not in known:
            raise ProfileError(f"unknown key {_show(key)} (known: {', '.join(known)})",
                               file=path, key=_show(key, quote=False))


def from_dict(data: dict, *, name: str, path: Path | None = None) -> Profile:
    """A profile from parsed TOML of version 1 or 2 (in memory it is always version 2)."""
    version = _version(data, path)
    _check_form(data, version, path)
    hosts = read_hosts(data, version, path)
    built = {table: cls(**read_fields(data.get(table, {}), fields, table, path))
             for table, (cls, fields) in _SCHEMA.items()}
    secrets_raw = data.get("secrets", {})
    if not isinstance(secrets_raw, dict):
        raise ProfileError("must be a table", file=path, key="secrets")
    for key, value in secrets_raw.items():
        if key not in SECRET_NAMES:
            raise ProfileError(f"unknown secret {_show(key)} (known: {', '.join(SECRET_NAMES)})",
                               file=path, key=f"secrets.{_show(key, quote=False)}")
        if not isinstance(value, str):
            raise ProfileError("must be a string", file=path, key=f"secrets.{key}")
    profile = Profile(name=name, path=path, inline_secrets=dict(secrets_raw),
                      version=PROFILE_VERSION, hosts=hosts, **built)
    profile.validate(list_form=version >= 2)
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
    old_text = _existing_text(target)
    keep_v1_text(Path(target), old_text)
    atomic_write(target, profile.dumps(old_text).encode(), mode=0o600)
    profile.path = target
    return target


def list_profiles() -> list[str]:
    return sorted(
        p.stem for p in paths.profiles_dir().glob("*.toml") if not p.name.endswith(".secrets.toml")
    )


def deletable_files(name: str) -> list[Path]:
    """The files `delete(name)` would remove: the profile, its secrets file and the version 1
    copy saving kept (``NAME.toml.v1``), all in the profiles directory, found by name only
    (a path is refused).  A symlink there is itself removed, never what it points to; a
    directory is refused."""
    if not NAME_RE.fullmatch(name or "") or name.endswith(".secrets"):
        raise ProfileError(f"{_show(name)} is not a profile name (give the name `stack-tui "
                           "profiles list` shows, not a path)")
    base = paths.profiles_dir()
    found = []
    for p in (base / f"{name}.toml", base / f"{name}.secrets.toml",
              v1_backup_path(base / f"{name}.toml")):
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
