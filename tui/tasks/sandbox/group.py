"""Several sandbox hosts on shared networks: a group.

``group_up(NAME, count)`` boots ``count`` ordinary sandboxes named ``NAME-1`` .. ``NAME-count``
(each still reachable from this machine over SSH on its own /30, with its own NAT), then gives
every one two more interfaces, both ends of veth pairs whose other end is a port of a bridge:

* ``mgmt0``: the management network, ``10.198.G.0/24``, host k at ``10.198.G.(10+k)``
* ``prov0``: the provider network (no address; Neutron's flat network later)

The bridges (``br-mgmt``, ``br-prov``) and the bridge ports (``m<k>``, ``p<k>``) live in a
network namespace the group owns, ``stkg-G``: nothing is made in this machine's root
namespace and none of its interfaces is touched.  ``G`` (1..MAX_GROUPS) is a group slot claimed
like a host's slot (``CLAIM_ROOT/grp-G``, owner file = the group's directory), so two groups
never share a namespace or a subnet; deleting the namespace removes bridges and ports at once.
Every host's /etc/hosts maps each host's name (its hostname too) to its management address.

The group's record lives in ``paths.sandbox_dir()/.groups/NAME/group.json``.  Needs root.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from .. import paths
from . import claims
from .base import (DEFAULT_RELEASE, Log, SandboxError, SandboxInfo, _flock, _run, _sandbox_path,
                   _say, _write_atomic, require_root_tools, suite_of)
from .lifecycle import _healthy, _load_info, down, status, up

MAX_HOSTS = 5
MAX_GROUPS = 50
MGMT_PREFIX = "10.198."
MGMT_IF = "mgmt0"
PROVIDER_IF = "prov0"
MGMT_BRIDGE = "br-mgmt"
PROVIDER_BRIDGE = "br-prov"
# A group name is a host name prefix too (hosts are NAME-1 ..): lower-case letters, digits, '-'.
_GROUP_RE = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,28}[a-z0-9])?")


@dataclass
class GroupInfo:
    name: str
    index: int
    release: str = DEFAULT_RELEASE
    hosts: list[str] = field(default_factory=list)
    netns: str = ""
    mgmt_subnet: str = ""
    dir: str = ""
    created: float = 0.0

    @classmethod
    def from_dict(cls, data: dict) -> "GroupInfo":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


# ---------------------------------------------------------------- names and addresses (pure)

def check_group(name: str, count: int) -> None:
    if not _GROUP_RE.fullmatch(name or ""):
        raise SandboxError(
            f"Invalid group name {name!r}: its hosts are named NAME-1, NAME-2, .. and those are host "
            "names, so use lower-case letters, digits and '-' (not first or last, max 30 characters).")
    if not isinstance(count, int) or not 1 <= count <= MAX_HOSTS:
        raise SandboxError(f"A group has 1 to {MAX_HOSTS} hosts, not {count!r}.")


def host_names(name: str, count: int) -> list[str]:
    return [f"{name}-{k}" for k in range(1, count + 1)]


def group_names(g: int) -> dict:
    return {"netns": f"stkg-{g}", "mgmt_bridge": MGMT_BRIDGE, "provider_bridge": PROVIDER_BRIDGE,
            "mgmt_subnet": f"{MGMT_PREFIX}{g}.0/24"}


def mgmt_address(g: int, k: int) -> str:
    """Host number ``k`` (1-based) of group slot ``g`` on the management network."""
    return f"{MGMT_PREFIX}{g}.{10 + k}"


def port_names(k: int) -> dict:
    """The bridge-side ends of host ``k``'s veth pairs (inside the group namespace)."""
    return {"mgmt": f"m{k}", "provider": f"p{k}"}


def hosts_file(g: int, hosts: list[str]) -> str:
    lines = ["127.0.0.1 localhost"]
    lines += [f"{mgmt_address(g, k)} {host}" for k, host in enumerate(hosts, 1)]
    lines.append("::1 localhost ip6-localhost ip6-loopback")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- record, lock and slot claims

def _groups_root() -> Path:
    return paths.sandbox_dir() / ".groups"


def _group_path(name: str) -> Path:
    return _groups_root() / name


def _group_lock(name: str) -> Path:
    return paths.sandbox_dir() / f".group-{name}.lock"


def load_group(name: str) -> GroupInfo | None:
    try:
        return GroupInfo.from_dict(json.loads((_group_path(name) / "group.json").read_text()))
    except (OSError, ValueError, TypeError):
        return None


def _save_group(info: GroupInfo) -> None:
    _write_atomic(Path(info.dir) / "group.json", json.dumps(asdict(info), indent=2) + "\n", 0o600)


def group_exists(name: str) -> bool:
    return _GROUP_RE.fullmatch(name or "") is not None and _group_path(name).exists()


def group_of(host: str) -> str | None:
    """The group whose host ``host`` is (NAME-k of group NAME), or None."""
    prefix, _, k = (host or "").rpartition("-")
    info = load_group(prefix) if k.isdigit() and _GROUP_RE.fullmatch(prefix) else None
    return prefix if info is not None and host in info.hosts else None


def group_host_infos(name: str) -> list[SandboxInfo]:
    """The records of group ``name``'s hosts, in order (a host whose record is gone is left
    out); empty when there is no such group."""
    info = load_group(name) if _GROUP_RE.fullmatch(name or "") else None
    found = [_load_info(h) for h in info.hosts] if info is not None else []
    return [i for i in found if i is not None]


def list_groups() -> list[str]:
    root = _groups_root()
    return sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []


def _group_claim_dir(g: int) -> Path:
    return claims.CLAIM_ROOT / f"grp-{g}"


def _group_claim_owner(g: int) -> str | None:
    try:
        return (_group_claim_dir(g) / "owner").read_text().strip() or None
    except OSError:
        return None


def _owned_group_claims(owner: Path) -> list[int]:
    root = claims.CLAIM_ROOT
    if not root.is_dir():
        return []
    found = []
    for entry in root.iterdir():
        m = re.fullmatch(r"grp-(\d+)", entry.name)
        if m and _group_claim_owner(int(m.group(1))) == str(owner):
            found.append(int(m.group(1)))
    return sorted(found)


def _claim_group(owner: Path, log: Log) -> int:
    claims.CLAIM_ROOT.mkdir(mode=0o755, parents=True, exist_ok=True)
    with _flock(claims.CLAIM_ROOT / ".lock"):
        for g in range(1, MAX_GROUPS + 1):
            d = _group_claim_dir(g)
            try:
                os.mkdir(d, 0o755)
            except FileExistsError:
                current = _group_claim_owner(g)
                if current and Path(current).exists():
                    continue
                _say(log, f"reclaiming stale group slot {g} (owner {current or 'unknown'} is gone)")
                _teardown_group_net(g)
                shutil.rmtree(d, ignore_errors=True)
                os.mkdir(d, 0o755)
            _write_atomic(d / "owner", f"{owner}\n", 0o644)
            return g
    raise SandboxError(f"All {MAX_GROUPS} group slots under {claims.CLAIM_ROOT} are in use. "
                       "Remove unused groups (stack-tui sandbox down --name NAME).")


def _release_group(g: int) -> None:
    with _flock(claims.CLAIM_ROOT / ".lock"):
        shutil.rmtree(_group_claim_dir(g), ignore_errors=True)


# ---------------------------------------------------------------- the group's network

def _group_netns_exists(g: int) -> bool:
    return Path("/run/netns", group_names(g)["netns"]).exists()


def _setup_group_net(g: int, log: Log) -> None:
    n = group_names(g)
    ns = n["netns"]
    _say(log, f"group network: netns {ns}, bridges {MGMT_BRIDGE} ({n['mgmt_subnet']}) and {PROVIDER_BRIDGE}")
    _run(["ip", "netns", "add", ns], hint="Is a stale group namespace left? Run `stack-tui sandbox down`.")
    _run(["ip", "-n", ns, "link", "set", "lo", "up"])
    for bridge in (MGMT_BRIDGE, PROVIDER_BRIDGE):
        _run(["ip", "-n", ns, "link", "add", bridge, "type", "bridge"])
        _run(["ip", "-n", ns, "link", "set", bridge, "up"])


def _wire_host(g: int, k: int, host_netns: str) -> None:
    """Give host ``k`` its mgmt0 (addressed) and prov0 (unaddressed), one port on each bridge."""
    ns = group_names(g)["netns"]
    ports = port_names(k)
    for port, bridge, inner in ((ports["mgmt"], MGMT_BRIDGE, MGMT_IF),
                                (ports["provider"], PROVIDER_BRIDGE, PROVIDER_IF)):
        _run(["ip", "-n", ns, "link", "add", port, "type", "veth", "peer", "name", inner,
              "netns", host_netns])
        _run(["ip", "-n", ns, "link", "set", port, "master", bridge, "up"])
        _run(["ip", "-n", host_netns, "link", "set", inner, "up"])
    _run(["ip", "-n", host_netns, "addr", "add", f"{mgmt_address(g, k)}/24", "dev", MGMT_IF])


def _teardown_group_net(g: int) -> None:
    ns = group_names(g)["netns"]
    if _group_netns_exists(g):
        _run(["ip", "netns", "delete", ns], check=False, timeout=30)
    with contextlib.suppress(OSError):
        Path("/run/netns", ns).unlink()


# ---------------------------------------------------------------- up / down / status

def group_up(name: str = "sandbox", count: int = 3, *, log: Log = None,
             release: str = DEFAULT_RELEASE) -> list[SandboxInfo]:
    """Boot (or return the already running) group ``name`` of ``count`` hosts on Debian ``release``."""
    check_group(name, count)
    suite_of(release)
    require_root_tools()
    with _flock(_group_lock(name)):
        info = load_group(name)
        if info is not None and _group_healthy(info, count, release):
            _say(log, f"group {name!r} already running ({', '.join(info.hosts)})")
            return [_load_info(h) for h in info.hosts]  # type: ignore[misc]
        if info is not None or _group_path(name).exists() or _owned_group_claims(_group_path(name)):
            _say(log, f"replacing the previous instance of group {name!r}")
            _down_locked(name, log)
        _refuse_foreign(name, count)
        return _create(name, count, release, log)


def _group_healthy(info: GroupInfo, count: int, release: str) -> bool:
    if len(info.hosts) != count or info.release != release or not _group_netns_exists(info.index):
        return False
    if _group_claim_owner(info.index) != info.dir:
        return False
    hosts = [_load_info(h) for h in info.hosts]
    return all(h is not None and _healthy(h) and h.release == release for h in hosts)


def _refuse_foreign(name: str, count: int) -> None:
    taken = [n for n in [name, *host_names(name, count)] if _sandbox_path(n).exists()]
    if taken:
        raise SandboxError(
            f"Sandbox {', '.join(taken)} already exists and is not part of group {name!r}. "
            f"Remove it (stack-tui sandbox down --name {taken[0]}) or choose another --name.")


def _create(name: str, count: int, release: str, log: Log) -> list[SandboxInfo]:
    start = time.monotonic()
    gdir = _group_path(name)
    gdir.mkdir(mode=0o700, parents=True, exist_ok=False)
    g = _claim_group(gdir, log)
    n = group_names(g)
    info = GroupInfo(name=name, index=g, release=release, hosts=host_names(name, count),
                     netns=n["netns"], mgmt_subnet=n["mgmt_subnet"], dir=str(gdir), created=time.time())
    _save_group(info)  # before anything is made, so down() finds every part of a half-made group
    try:
        _teardown_group_net(g)  # a reused slot may hold a crashed run's namespace
        _setup_group_net(g, log)
        hosts = _boot_hosts(info, log)
        text = hosts_file(g, info.hosts)
        for k, host in enumerate(hosts, 1):
            _wire_host(g, k, host.netns)
            _write_atomic(Path(host.rootfs) / "etc/hosts", text, 0o644)
    except BaseException:
        _say(log, f"group {name!r} failed to start; removing what was made")
        with contextlib.suppress(Exception):
            _down_locked(name, log)
        raise
    _say(log, f"group {name!r} is up: {count} hosts on {n['mgmt_subnet']} "
              f"({time.monotonic() - start:.1f} s)")
    return hosts


def _each_host(hosts: list[str], action, log: Log) -> tuple[list, list[str]]:
    """Run ``action(host, log)`` for every host at once; results in order and the errors."""
    def one(host: str):
        return action(host, lambda s: _say(log, f"[{host}] {s}"))

    with ThreadPoolExecutor(max_workers=max(1, len(hosts))) as pool:
        futures = [pool.submit(one, h) for h in hosts]
    results, errors = [], []
    for host, fut in zip(hosts, futures):
        exc = fut.exception()
        results.append(None if exc else fut.result())
        if exc is not None:
            errors.append(f"{host}: {exc}")
    return results, errors


def _boot_hosts(info: GroupInfo, log: Log) -> list[SandboxInfo]:
    results, errors = _each_host(
        info.hosts, lambda h, say: up(h, log=say, release=info.release, hostname=h), log)
    if errors:
        raise SandboxError(f"Group {info.name!r}: {len(errors)} host(s) did not start:\n" + "\n".join(errors))
    return results


def group_down(name: str = "sandbox", *, log: Log = None) -> bool:
    """Remove every host of group ``name``, its namespace and bridges. False if nothing existed."""
    if not _GROUP_RE.fullmatch(name or ""):
        raise SandboxError(f"Invalid group name {name!r}.")
    require_root_tools()
    with _flock(_group_lock(name)):
        return _down_locked(name, log)


def _down_locked(name: str, log: Log) -> bool:
    gdir = _group_path(name)
    info = load_group(name)
    slots = set(_owned_group_claims(gdir))
    if info is not None and _group_claim_owner(info.index) in (None, str(gdir)):
        slots.add(info.index)
    if not gdir.exists() and not slots:
        return False
    _say(log, f"removing group {name!r}")
    _results, errors = _each_host(info.hosts if info else [], lambda h, say: down(h, log=say), log)
    for g in sorted(slots):
        _teardown_group_net(g)
        _release_group(g)
    shutil.rmtree(gdir, ignore_errors=True)
    if errors:
        raise SandboxError(f"Group {name!r}: some hosts could not be removed:\n" + "\n".join(errors))
    _say(log, f"group {name!r} removed")
    return True


def group_status(name: str) -> dict | None:
    """The group's record, whether its namespace exists, and each host's state (None: no group)."""
    info = load_group(name) if _GROUP_RE.fullmatch(name or "") else None
    if info is None:
        return None
    hosts = []
    for k, host in enumerate(info.hosts, 1):
        st = status(host) or {}
        hosts.append({"name": host, "mgmt_address": mgmt_address(info.index, k),
                      "address": st.get("address"), "alive": bool(st.get("alive"))})
    return {"group": name, "index": info.index, "release": info.release, "netns": info.netns,
            "netns_exists": _group_netns_exists(info.index), "mgmt_subnet": info.mgmt_subnet,
            "mgmt_bridge": MGMT_BRIDGE, "provider_bridge": PROVIDER_BRIDGE, "hosts": hosts}
