"""Where stack-tui keeps its files.

Everything follows platformdirs.  ``STACK_TUI_HOME`` roots config, data, state
and logs in one directory (tests and throwaway runs use it);
``STACK_TUI_CACHE_DIR`` moves the cache (base rootfs tarball, apt archives),
which tests deliberately keep shared so a second run is fast.
"""

from __future__ import annotations

import os
from pathlib import Path

APP = "stack-tui"


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
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


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
    path = config_dir() / "profiles"
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


def known_hosts_file() -> Path:
    """Our own known_hosts (the user's ~/.ssh/known_hosts is only read)."""
    return config_dir() / "known_hosts"


def sandbox_dir() -> Path:
    path = data_dir() / "sandbox"
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path
