"""Memcached: listens on the management address."""

from __future__ import annotations

from dataclasses import dataclass

from ..engine import Phase, Step
from ..platforms import Platform
from .base import PerPlatform, Service, Port
from .common import LOOK, one_line, ensure_service, mgmt, platform_of, put_file, read_remote, service_ok


PORT = 11211


@dataclass(frozen=True)
class Layout:
    conf: str                    # the file holding its listen address
    style: str                   # "debian" (-l line) | "sysconfig" (OPTIONS=)


LAYOUT: PerPlatform[Layout] = PerPlatform(
    deb=Layout("/etc/memcached.conf", "debian"),
    rpm=Layout("/etc/sysconfig/memcached", "sysconfig"))
PACKAGES = PerPlatform(deb=("memcached", "python3-memcache"),
                       rpm=("memcached", "python3-memcached"))


def layout(plat: Platform) -> Layout:
    return LAYOUT(plat)


def _memcached_target(ctx) -> tuple[str | None, str]:
    lay = layout(platform_of(ctx))
    old = read_remote(ctx, lay.conf)
    lines = (old or "").splitlines()
    addr = one_line(f"the listen address in {lay.conf}", mgmt(ctx),
                    "fix host.address in the profile")
    if lay.style == "debian":
        out, done = [], False
        for line in lines:
            if line.strip().startswith("-l "):
                if not done:
                    out.append(f"-l {addr}")
                    done = True
                continue
            out.append(line)
        if not done:
            out.append(f"-l {addr}")
    else:
        out, done = [], False
        for line in lines:
            if line.startswith("OPTIONS="):
                out.append(f'OPTIONS="-l 127.0.0.1,::1,{addr}"')
                done = True
            else:
                out.append(line)
        if not done:
            out.append(f'OPTIONS="-l 127.0.0.1,::1,{addr}"')
    return old, "\n".join(out) + "\n"


def _memcached_check(ctx) -> bool:
    old, new = _memcached_target(ctx)
    return old == new and service_ok(ctx, "memcached")


def _memcached_run(ctx) -> None:
    old, new = _memcached_target(ctx)
    changed = put_file(ctx, layout(platform_of(ctx)).conf, new, old=old)
    active = ctx.sh("systemctl is-active -q memcached", check=False, quiet=True, timeout=LOOK).ok
    # memcached that cannot bind its address starts, then dies: this step must see it.
    ensure_service(ctx, "memcached", restart=changed and active, port=PORT, host=mgmt(ctx))


def phases(profile, plat: Platform) -> list[Phase]:
    """The memcached phase as the plan shows and runs it."""
    return [Phase("memcached", "Memcached", [
        Step("memcached.config", "Listen on the management address; start and enable",
             run=_memcached_run, check=_memcached_check, files=[layout(plat).conf],
             detail="-l <management address>; systemctl enable --now memcached"),
    ])]


SERVICE = Service(
    "memcached", "Memcached", "token cache", phases,
    ports=(Port(PORT, frozenset({"memcached"}), "Memcached"),),
    configs=lambda plat: (layout(plat).conf,),
    units=lambda plat: ("memcached",),
    packages=PACKAGES,
)
