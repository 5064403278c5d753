"""A disposable Debian test host (13 trixie by default, or 12 bookworm): systemd-nspawn in a
network namespace.

``up()`` boots a fresh Debian rootfs with real systemd as PID 1 in a
network namespace of its own, reachable over real SSH on a private /30.  The
base rootfs is built once with debootstrap and cached as a zstd tarball, which
(one per release) is unpacked once into a read-only base tree; every instance's rootfs is an
overlay mount over it with an upper dir of its own (a full untar is the
fallback when overlayfs is not available).  An apt archive cache (one per release) shared
by all instances is mounted into the container so repeated installs do
not download again: it is the read-only lower layer of an overlay at
/var/cache/apt/archives, each instance writes its downloads to its own upper
dir, and ``down()`` adds those to the shared cache.

Resources per instance, all derived from a claimed index ``i`` (1..60):

* claim directory ``/run/stack-tui-sandbox/idx-<i>`` (owner file = sandbox dir)
* network namespace ``stk-<i>``, veth pair ``stk<i>h``/``stk<i>c``
* 10.199.0.(4i)/30: host side .4i+1, container .4i+2
* nft table ``ip stktui_<i>`` (masquerade out of the default-route interface)
* cgroup ``stk-<i>`` in the name=systemd and unified hierarchies (nspawn runs inside it, so
  nspawn's own ``payload``/``supervisor`` dirs never collide between instances)
* machine name ``stk-<i>``

The package is split by concern: ``base`` (constants, SandboxInfo, helpers, cache
paths, mounts), ``rootfs`` (base rootfs cache and instance rootfs), ``network`` (netns,
veth, nft), ``processes`` (nspawn children, cgroups, SSH probes), ``claims`` (slot
claims and slot cleanup), ``lifecycle`` (up/down/status/add_user), ``group`` (several hosts
on shared management and provider bridges: group_up/group_down/group_status) and ``profiles``
(the profiles `stack-tui sandbox up` writes; imported on its own, not from here).

Files live under ``paths.sandbox_dir()/<name>/``.  Needs root.  No Textual.
"""

from __future__ import annotations

import os  # noqa: F401 - tests patch sandbox.os.geteuid
import shutil  # noqa: F401 - tests patch sandbox.shutil.which

from . import base, claims, group, lifecycle, network, processes, rootfs  # noqa: F401
from .base import (APT_COMMAND, BASE_VERSION, BOOT_TIMEOUT, DEFAULT_RELEASE, HOSTNAME, INCLUDE,
                   MAX_INDEX, MIRROR, NET_PREFIX, POLL, RELEASES, SECURITY_MIRROR, TOOLS, Log,
                   SandboxError, SandboxInfo, _apt_cache, _cache, _check_name, _mounts_under,
                   _names, _remove_tree, _run, _sandbox_path, _unmount_all, _wait, base_tarball,
                   require_root_tools, suite_of)
from .claims import (CLAIM_ROOT, _claim_dir, _claim_index, _claim_owner, _claims, _clean_index,
                     _owned_claims, _release_index)
from .group import (MAX_GROUPS, MAX_HOSTS, GroupInfo, group_down, group_exists,
                    group_host_infos, group_of, group_status, group_up, list_groups)
from .lifecycle import _healthy, _load_info, add_user, down, list_sandboxes, status, up
from .network import _netns_exists, _nft_exists, _setup_network, _teardown_network, _veth_exists
from .processes import (_cgroup_dirs, _container_leader, _is_our_nspawn, _kill, _pid_alive,
                        _ssh_argv, _ssh_banner)
from .rootfs import ensure_base, harvest_debs
from .trust import own_host_keys, trust_own_host_keys

__all__ = ["own_host_keys", "trust_own_host_keys", "APT_COMMAND", "DEFAULT_RELEASE", "RELEASES", "SandboxError", "SandboxInfo",
           "add_user", "base_tarball", "down", "ensure_base", "harvest_debs", "list_sandboxes",
           "require_root_tools", "status", "suite_of", "up",
           "GroupInfo", "MAX_GROUPS", "MAX_HOSTS", "group_down", "group_exists", "group_host_infos",
           "group_of",
           "group_status", "group_up", "list_groups"]
