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


def test_horizon_compress_runs_the_render_pool_with_one_thread(tmp_path):
    """pyScss is not thread-safe; django-compressor's offline compress asks for 4 render
    threads.  The script the static step runs makes any pool one thread, with manage.py's own
    argv: run here against a stand-in manage.py that builds the pool as compress does."""
    import subprocess
    import sys

    from tui.tasks.services import horizon

    manage = tmp_path / "manage.py"
    manage.write_text("import concurrent.futures, sys\n"
                      "pool = concurrent.futures.ThreadPoolExecutor(max_workers=4)\n"
                      "print(pool._max_workers, sys.argv[1:])\n")
    r = subprocess.run([sys.executable, "-c", horizon.compress_script(str(manage))],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split(None, 1) == ["1", "['compress', '--force', '-v0']\n"]

