"""Where stack-tui keeps its files.

Everything follows platformdirs.  ``STACK_TUI_HOME`` roots config, data, state
and logs in one directory (tests and throwaway runs use it);
``STACK_TUI_CACHE_DIR`` moves the cache (base rootfs tarball, apt archives),
which tests deliberately keep shared so a second run is fast.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from .errors import Failure

APP = "stack-tui"


class UnsafeDirectory(Failure, PermissionError):
    """A directory stack-tui keeps private files in belongs to another user and others may
    enter it: refused, as OpenSSH refuses a loose ~/.ssh of someone else."""


def private_dir(path: Path) -> Path:
    """``path`` as a directory only this user can enter (0700): created so, and tightened
    when an earlier stack-tui (or a umask) left it open to others.  A symlink is left alone
    (never chmod through a link); a loose directory of another user is refused
    (UnsafeDirectory names it and the fix), never chmodded."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        st = os.lstat(path)
    except OSError:
        return path
    loose = stat.S_IMODE(st.st_mode) & 0o077
    if not stat.S_ISDIR(st.st_mode) or not loose:
        return path
    if st.st_uid != os.getuid():
        raise UnsafeDirectory(
            f"{path} belongs to another user (uid {st.st_uid}) and others may enter it "
            f"(mode {stat.S_IMODE(st.st_mode):04o}).",
            "stack-tui keeps profiles, secrets and run state there; another user could read "
            "or replace them",
            f"use a directory of your own (STACK_TUI_HOME), or have its owner run "
            f"chmod 700 {path}")
    try:
        os.chmod(path, 0o700)
    except OSError:
        pass
    return path


def _home() -> Path | None:
    home = os.environ.get("STACK_TUI_HOME")
    return Path(home).expanduser() if home else None


def _dir(kind: str) -> Path:
    home = _home()
    if home is not None:
        path = home / kind
    else:
        import platformdirs

        path = Path(
            {
                "config": platformdirs.user_config_dir,
                "data": platformdirs.user_data_dir,
                "state": platformdirs.user_state_dir,
                "log": platformdirs.user_log_dir,
            }[kind](APP, appauthor=False)
        )
    return private_dir(path)


def config_dir() -> Path:
    return _dir("config")


def data_dir() -> Path:
    return _dir("data")


def state_dir() -> Path:
    return _dir("state")


def log_dir() -> Path:
    return _dir("log")


def cache_dir() -> Path:
    env = os.environ.get("STACK_TUI_CACHE_DIR")
    if env:
        path = Path(env).expanduser()
    else:
        import platformdirs

        path = Path(platformdirs.user_cache_dir(APP, appauthor=False))
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


def profiles_dir() -> Path:
    return private_dir(config_dir() / "profiles")


def known_hosts_file() -> Path:
    """Our own known_hosts (the user's ~/.ssh/known_hosts is only read)."""
    return config_dir() / "known_hosts"


def sandbox_dir() -> Path:
    return private_dir(data_dir() / "sandbox")
