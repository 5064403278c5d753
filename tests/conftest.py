"""Shared fixtures: an isolated STACK_TUI_HOME and disposable sandbox hosts.

``e2e`` tests boot a real Debian host (13 by default; the ``release`` fixture runs a
test module on each of Debian 13 and 12) with systemd-nspawn (see
tui/tasks/sandbox/).  They need root and the tools from
``sandbox.APT_COMMAND``; without them they are skipped with the reason.
The cache (base rootfs tarball, apt archives) is shared between runs in
``/var/cache/stack-tui-test`` unless STACK_TUI_CACHE_DIR says otherwise.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SHARED_CACHE = "/var/cache/stack-tui-test"


def _terminate_as_interrupt(signum, frame):
    # SIGTERM (a CI timeout, `kill`) would end pytest without running fixture teardown and
    # leave sandboxes, namespaces, nft tables and mounts behind; as KeyboardInterrupt pytest
    # unwinds and sandbox_factory removes every host it made.
    raise KeyboardInterrupt(f"signal {signum}")


def pytest_configure(config):
    import signal

    signal.signal(signal.SIGTERM, _terminate_as_interrupt)
    config.addinivalue_line(
        "markers",
        "e2e: end-to-end test on a real sandbox host (needs root, systemd-nspawn, debootstrap, nftables)",
    )
    config.addinivalue_line(
        "markers",
        "one_release: what it tests does not depend on the Debian release (SSH, the engine, the "
        "screens) or another release's test covers it: it runs for the first configured release "
        "only (13 unless STACK_TUI_RELEASES / STACK_TUI_FAULT_RELEASES say otherwise)",
    )
    config.addinivalue_line(
        "markers",
        "only_way(way): a compute e2e test about one way in (\"apply\" or \"tui\", see "
        "tests/e2e/test_compute_e2e.py): deselected for the other",
    )


_RELEASE_PARAMS = ("release", "fault_release")


def pytest_collection_modifyitems(config, items):
    """Drop the other releases' copies of `one_release` tests from the run: deselected (as
    `-k` would), so they are neither run nor counted as skipped."""
    first = {"release": _env_releases("STACK_TUI_RELEASES", "13,12")[0],
             "fault_release": _env_releases("STACK_TUI_FAULT_RELEASES",
                                            os.environ.get("STACK_TUI_RELEASES", "13,12"))[0]}
    keep, drop = [], []
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        other = [k for k in _RELEASE_PARAMS if k in params and params[k] != first[k]]
        way = item.get_closest_marker("only_way")
        if (other and item.get_closest_marker("one_release")) or (
                way and params.get("compute_cloud", ("", ""))[1] != way.args[0]):
            drop.append(item)
        else:
            keep.append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


@pytest.fixture(scope="session")
def stack_home(tmp_path_factory):
    """STACK_TUI_HOME -> a fresh temp dir for the session; the cache stays shared."""
    saved = {k: os.environ.get(k) for k in ("STACK_TUI_HOME", "STACK_TUI_CACHE_DIR")}
    home = tmp_path_factory.mktemp("stack-home")
    os.environ["STACK_TUI_HOME"] = str(home)
    if not os.environ.get("STACK_TUI_CACHE_DIR"):
        os.environ["STACK_TUI_CACHE_DIR"] = SHARED_CACHE
    try:
        yield home
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture
def isolated_home(tmp_path, monkeypatch):
    """STACK_TUI_HOME -> a fresh directory for one test, no secret from the environment."""
    from tui.tasks.secrets import SECRET_NAMES, env_name

    h = tmp_path / "home"
    monkeypatch.setenv("STACK_TUI_HOME", str(h))
    for name in SECRET_NAMES:
        monkeypatch.delenv(env_name(name), raising=False)
    return h


def _skip_reason() -> str | None:
    from tui.tasks import sandbox

    try:
        sandbox.require_root_tools()
    except sandbox.SandboxError as exc:
        return f"sandbox e2e tests unavailable: {exc}"
    try:
        os.makedirs("/run/netns", exist_ok=True)
    except OSError as exc:
        return f"sandbox e2e tests unavailable: cannot create /run/netns ({exc})"
    return None


@pytest.fixture(scope="session")
def sandbox_factory(stack_home):
    """``make(name, release) -> SandboxInfo``: boots a sandbox; ``make.remove(name)`` removes one
    early; every one still there is removed at session end."""
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    from tui.tasks import sandbox

    made: list[str] = []
    lines: list[str] = []

    def make(name: str, release: str = sandbox.DEFAULT_RELEASE) -> "sandbox.SandboxInfo":
        if name not in made:
            made.append(name)  # registered before up(): a half-made sandbox is removed too
        return sandbox.up(name, log=lines.append, release=release)

    def remove(name: str) -> None:
        """Remove a sandbox as soon as its tests are done (idle OpenStack hosts cost CPU)."""
        # thrown away: no shutdown, and its files are deleted while the next test runs
        sandbox.down(name, log=lines.append, graceful=False, wait=False)
        if name in made:
            made.remove(name)

    make.remove = remove  # type: ignore[attr-defined]
    make.names = made  # type: ignore[attr-defined]
    make.log = lines  # type: ignore[attr-defined]
    try:
        yield make
    finally:
        errors = []
        # STACK_TUI_HOME is still ours here: stack_home tears down after this fixture.
        for name in reversed(made):
            try:
                sandbox.down(name, log=lines.append, graceful=False, wait=False)
            except Exception as exc:  # keep removing the others
                errors.append(f"{name}: {exc}")
        if errors:
            pytest.fail("sandbox cleanup failed:\n" + "\n".join(errors), pytrace=False)


def _env_releases(var: str, default: str) -> list[str]:
    return [r.strip() for r in os.environ.get(var, default).split(",") if r.strip()]


@pytest.fixture(scope="module", params=_env_releases("STACK_TUI_RELEASES", "13,12"),
                ids=lambda r: f"debian{r}")
def release(request):
    """Each verified Debian release in turn (STACK_TUI_RELEASES narrows it, e.g. "13")."""
    return request.param


# The fault suite (and the preflight tests that share its installed host) runs on every
# verified release too; STACK_TUI_FAULT_RELEASES narrows it alone (e.g. "13").
@pytest.fixture(scope="module",
                params=_env_releases("STACK_TUI_FAULT_RELEASES",
                                     os.environ.get("STACK_TUI_RELEASES", "13,12")),
                ids=lambda r: f"debian{r}")
def fault_release(request):
    return request.param


@pytest.fixture(scope="session")
def sandbox_host(sandbox_factory):
    """A running sandbox host shared by the session (``SandboxInfo``)."""
    return sandbox_factory(f"e2e-{os.getpid()}")
