"""The profiles `stack-tui sandbox up` writes: one per sandbox host, and for a group one
more, named after the group, that describes every host of it.

A host's profile points at the host (its SSH address, key file, port, user) and keeps every
other choice of a profile already there.  A group's profile names ``NAME-1`` the controller
(it computes too) and the other hosts compute hosts, each with its SSH settings and its
management address (``mgmt_address``), where the services talk.  ``down`` removes the group's
profile only while it still describes exactly the group's hosts (names, SSH addresses and
the key files `up` made): a profile by that name the person pointed elsewhere is theirs.
"""

from __future__ import annotations

from pathlib import Path

from .. import profile as pr
from .base import SandboxInfo


def _load_or_new(name: str) -> pr.Profile:
    try:
        return pr.load(name)
    except pr.ProfileError:
        return pr.Profile(name=name)


def write_host_profile(info: SandboxInfo, name: str | None = None,
                       mgmt_address: str | None = None) -> Path:
    """Create or update the profile pointing at one sandbox (keeps the user's other choices)."""
    prof = _load_or_new(name or info.name)
    prof.host.address = info.address
    prof.host.port = info.port
    prof.host.user = info.user
    prof.host.key_file = info.key_file
    prof.host.mgmt_address = mgmt_address
    prof.openstack.endpoint_host = None
    if not prof.image.url:
        prof.image.file = info.image_file
    return pr.save(prof)


def group_hosts(infos: list[SandboxInfo], mgmt: dict[str, str]) -> list[pr.HostConfig]:
    """The group's hosts as a profile describes them: the first is the controller."""
    return [pr.HostConfig(name=info.name, address=info.address, port=info.port, user=info.user,
                          key_file=info.key_file, mgmt_address=mgmt.get(info.name),
                          roles=[pr.CONTROLLER, pr.COMPUTE] if k == 0 else [pr.COMPUTE])
            for k, info in enumerate(infos)]


def write_group_profile(name: str, infos: list[SandboxInfo], mgmt: dict[str, str]) -> Path:
    """Create or update the profile ``name`` describing every host of the group (keeps the
    user's other choices: services, image, region)."""
    prof = _load_or_new(name)
    prof.hosts = group_hosts(infos, mgmt)
    prof.openstack.endpoint_host = None
    if not prof.image.url and infos:
        prof.image.file = infos[0].image_file
    return pr.save(prof)


def _identity(hosts) -> list[tuple]:
    return [(h.name, h.address, h.key_file) for h in hosts]


def is_group_profile(name: str, infos: list[SandboxInfo]) -> bool:
    """True when the profile ``name`` is the one `sandbox up` wrote for the group whose hosts
    are ``infos``: it loads and describes exactly those hosts, in order, by name, SSH address
    and the key file `up` made for each."""
    if not infos:
        return False
    try:  # the saved profile, never a same-named file in the current directory
        prof = pr.load(pr.paths.profiles_dir() / f"{name}.toml")
    except pr.ProfileError:
        return False
    return _identity(prof.hosts) == [(i.name, i.address, i.key_file) for i in infos]


def remove_group_profile(name: str) -> bool:
    """Remove the group's profile and its secrets file (the caller has found, with
    ``is_group_profile`` before the hosts went, that it is the one `up` wrote: once they are
    gone it no longer loads, its key files being theirs)."""
    return pr.delete(name)
