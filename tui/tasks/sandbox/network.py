"""The network of a sandbox slot: its namespace, the veth pair on a private /30 and the nft
masquerade table (set up at boot, torn down by down())."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

from .base import Log, _names, _run, _say


def _default_interface() -> str | None:
    proc = _run(["ip", "-j", "route", "show", "default"], check=False, timeout=10)
    try:
        routes = json.loads(proc.stdout or b"[]")
    except ValueError:
        return None
    for route in routes:
        if route.get("dev"):
            return route["dev"]
    return None


def _netns_exists(i: int) -> bool:
    return Path("/run/netns", _names(i)["netns"]).exists()


def _veth_exists(i: int) -> bool:
    return Path("/sys/class/net", _names(i)["veth"]).exists()


def _nft_exists(i: int) -> bool:
    return _run(["nft", "list", "table", "ip", _names(i)["table"]], check=False, timeout=10).returncode == 0


def _netns_pids(i: int) -> set[int]:
    if not _netns_exists(i):
        return set()
    proc = _run(["ip", "netns", "pids", _names(i)["netns"]], check=False, timeout=10)
    return {int(x) for x in proc.stdout.split() if x.isdigit()}


def _setup_network(i: int, log: Log) -> None:
    n = _names(i)
    hint = "Is another process using the same names? Run down() for this sandbox and retry."
    _say(log, f"network: netns {n['netns']}, {n['host_address']} <-> {n['address']}")
    _run(["ip", "netns", "add", n["netns"]], hint=hint)
    _run(["ip", "link", "add", n["veth"], "type", "veth", "peer", "name", n["peer"]], hint=hint)
    _run(["ip", "link", "set", n["peer"], "netns", n["netns"]])
    _run(["ip", "addr", "add", f"{n['host_address']}/30", "dev", n["veth"]])
    _run(["ip", "link", "set", n["veth"], "up"])
    _run(["ip", "-n", n["netns"], "link", "set", "lo", "up"])
    _run(["ip", "-n", n["netns"], "addr", "add", f"{n['address']}/30", "dev", n["peer"]])
    _run(["ip", "-n", n["netns"], "link", "set", n["peer"], "up"])
    _run(["ip", "-n", n["netns"], "route", "add", "default", "via", n["host_address"]])
    iface = _default_interface()
    if iface is None:
        _say(log, "no default route on this machine: the sandbox gets no outbound network (apt will only "
                  "work from the archive cache)")
        return
    ruleset = (
        f"table ip {n['table']} {{\n"
        f"  chain post {{\n"
        f"    type nat hook postrouting priority 100; policy accept;\n"
        f"    ip saddr {n['subnet']} oifname \"{iface}\" masquerade\n"
        f"  }}\n"
        f"}}\n"
    )
    _run(["nft", "-f", "-"], input=ruleset.encode(),
         hint="Is the nf_tables kernel module available? Fix: apt-get install -y nftables")


def _teardown_network(i: int, log: Log) -> None:
    n = _names(i)
    if _netns_exists(i):
        _run(["ip", "netns", "delete", n["netns"]], check=False, timeout=30)
    if _veth_exists(i):
        _run(["ip", "link", "delete", n["veth"]], check=False, timeout=30)
    if _nft_exists(i):
        _run(["nft", "delete", "table", "ip", n["table"]], check=False, timeout=30)
    # `ip netns delete` can leave the mount point file behind if it was busy.
    with contextlib.suppress(OSError):
        Path("/run/netns", n["netns"]).unlink()
