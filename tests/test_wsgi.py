"""Keystone under mod_wsgi: one thread per process, processes sized from the host."""

from __future__ import annotations

import re

import pytest

from tui.tasks.services import keystone


@pytest.mark.parametrize("cpus,mem_gib,want", [
    (1, 1, 2),     # floor of two processes
    (1, 4, 2),
    (2, 24, 4),    # two per CPU
    (4, 2, 4),     # memory caps: one per 512 MiB
    (4, 1, 2),
    (16, 64, 8),   # ceiling of eight
])
def test_process_count_from_cpus_and_memory(cpus, mem_gib, want):
    assert keystone.wsgi_processes(cpus, mem_gib * 1024 * 1024) == want


class _Ctx:
    def __init__(self, nproc: int, mem_kib: int):
        self.cache = {"host_size": (nproc, mem_kib)}
        self.facts = {"platform": "debian-12"}

        class P:
            endpoint_host = "10.0.0.5"

            class openstack:
                platform = "auto"

        self.profile = P()


def test_vhost_has_one_thread_per_process():
    text = keystone._vhost(_Ctx(2, 24 * 1024 * 1024))
    m = re.search(r"WSGIDaemonProcess keystone-public processes=(\d+) threads=(\d+) ", text)
    assert m, text
    assert m.groups() == ("4", "1")


def test_vhost_loads_the_application_when_each_process_starts():
    """process-group and application-group on WSGIScriptAlias: mod_wsgi preloads the script
    in every daemon process at start, so no request (a re-run's first token) waits for a
    cold Keystone to import."""
    text = keystone._vhost(_Ctx(2, 24 * 1024 * 1024))
    alias = [ln.split() for ln in text.splitlines() if ln.strip().startswith("WSGIScriptAlias")]
    assert len(alias) == 1 and alias[0][1] == "/", alias
    assert {"process-group=keystone-public", "application-group=%{GLOBAL}"} <= set(alias[0][3:])
    # Apache refuses an alias naming a group defined below it: "WSGI process group not yet
    # configured" (found on a real host)
    assert text.index("WSGIDaemonProcess keystone-public") < text.index("WSGIScriptAlias")
