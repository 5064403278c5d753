"""Hardening: files and paths.  Profiles are deleted and created by name inside the profiles
directory only; a secrets, profile or state path that is a directory, FIFO, device or huge
file gets a clear error at once; directories are private; the bundle is written safely."""

from __future__ import annotations

import os
import stat
import threading
import time
from pathlib import Path

import pytest

from tui import cli
from tui.tasks import paths
from tui.tasks import profile as pr
from tui.tasks.profile import Profile, ProfileError
from tui.tasks.secrets import SECRET_NAMES, env_name, write_secrets_file

GOOD = 'version = 1\n[host]\naddress = "10.0.0.1"\n[openstack]\nservices = ["mariadb"]\n'


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    h = tmp_path / "home"
    monkeypatch.setenv("STACK_TUI_HOME", str(h))
    for name in SECRET_NAMES:
        monkeypatch.delenv(env_name(name), raising=False)
    return h


def main(capsys, *argv: str):
    """Run the CLI in-process; returns (exit code, stdout, stderr)."""
    rc = cli.main(list(argv))
    out = capsys.readouterr()
    return rc, out.out, out.err


def saved(name: str, text: str = GOOD) -> Path:
    path = paths.profiles_dir() / f"{name}.toml"
    path.write_text(text)
    return path


class FakeStdin:
    def __init__(self, tty: bool):
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty

    def readline(self):
        return ""


# --------------------------------------------------------------------------- profiles delete


def test_delete_asks_and_keeps_the_profile_on_no(capsys, monkeypatch):
    path = saved("site")
    monkeypatch.setattr("sys.stdin", FakeStdin(True))
    monkeypatch.setattr("builtins.input", lambda prompt="": "n")
    rc, out, err = main(capsys, "profiles", "delete", "site")
    assert rc != 0 and path.exists() and "Nothing deleted" in out and str(path) in out
    monkeypatch.setattr("builtins.input", lambda prompt="": "y")
    rc, out, err = main(capsys, "profiles", "delete", "site")
    assert rc == 0 and not path.exists() and "Deleted profile site" in out


def test_delete_without_a_terminal_needs_yes(capsys, monkeypatch):
    path = saved("site")
    monkeypatch.setattr("sys.stdin", FakeStdin(False))
    rc, out, err = main(capsys, "profiles", "delete", "site")
    assert rc == 2 and path.exists() and "--yes" in err
    rc, out, err = main(capsys, "profiles", "delete", "site", "--yes")
    assert rc == 0 and not path.exists()


@pytest.mark.parametrize("arg", ["{victim}", "../victim", "../../victim", "/abs/victim",
                                 "victim.toml", "x/../../victim"])
def test_delete_takes_a_name_never_a_path(capsys, monkeypatch, tmp_path, arg):
    victim = tmp_path / "victim.toml"
    victim.write_text(GOOD)
    (tmp_path / "victim.secrets.toml").write_text("x")
    arg = arg.replace("{victim}", str(victim))
    monkeypatch.setattr("sys.stdin", FakeStdin(False))
    rc, out, err = main(capsys, "profiles", "delete", arg, "--yes")
    assert rc == 2 and ("not a profile name" in err or "no profile named" in err)
    assert victim.exists() and (tmp_path / "victim.secrets.toml").exists()


def test_delete_never_follows_a_symlink_out_of_the_directory(capsys, monkeypatch, tmp_path):
    outside = tmp_path / "outside.toml"
    outside.write_text(GOOD)
    outside_secrets = tmp_path / "outside.secrets.toml"
    outside_secrets.write_text("admin_password = 'x'\n")
    d = paths.profiles_dir()
    (d / "link.toml").symlink_to(outside)
    (d / "link.secrets.toml").symlink_to(outside_secrets)
    monkeypatch.setattr("sys.stdin", FakeStdin(False))
    rc, out, err = main(capsys, "profiles", "delete", "link", "--yes")
    assert rc == 0
    assert not os.path.lexists(d / "link.toml") and not os.path.lexists(d / "link.secrets.toml")
    assert outside.read_text() == GOOD and outside_secrets.exists()


def test_delete_refuses_a_directory_named_like_a_profile(capsys, monkeypatch):
    (paths.profiles_dir() / "site.toml").mkdir()
    monkeypatch.setattr("sys.stdin", FakeStdin(False))
    rc, out, err = main(capsys, "profiles", "delete", "site", "--yes")
    assert rc == 2 and "not a file" in err and (paths.profiles_dir() / "site.toml").is_dir()


# --------------------------------------------------------------------------- profiles new


@pytest.mark.parametrize("name", ["../escape", "a/b", ".hidden", "-x", "a b", "x\n", "",
                                  "é", "a" * 65])
def test_new_refuses_names_outside_the_pattern(capsys, tmp_path, name):
    rc, out, err = main(capsys, "profiles", "new", "--host", "10.0.0.1", "--", name)
    assert rc == 2 and "not a valid profile name" in err
    assert not (paths.profiles_dir().parent / "escape.toml").exists()
    assert pr.list_profiles() == []


def test_new_never_overwrites_without_force(capsys):
    path = saved("site", GOOD + "# mine\n")
    before = path.read_bytes()
    rc, out, err = main(capsys, "profiles", "new", "site", "--host", "10.0.0.2")
    assert rc == 2 and "--force" in err and path.read_bytes() == before
    rc, out, err = main(capsys, "profiles", "new", "site", "--host", "10.0.0.2", "--force")
    assert rc == 0 and pr.load("site").host.address == "10.0.0.2"


def test_new_refuses_over_a_dangling_symlink(capsys, tmp_path):
    (paths.profiles_dir() / "site.toml").symlink_to(tmp_path / "target.toml")
    rc, out, err = main(capsys, "profiles", "new", "site", "--host", "10.0.0.2")
    assert rc == 2 and "--force" in err and not (tmp_path / "target.toml").exists()
