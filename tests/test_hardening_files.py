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
from tui.tasks.secrets import write_secrets_file

GOOD = 'version = 1\n[host]\naddress = "10.0.0.1"\n[openstack]\nservices = ["mariadb"]\n'


@pytest.fixture(autouse=True)
def home(isolated_home):
    return isolated_home


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


# --------------------------------------------------------------------------- secrets file


def _profile_with_secrets(tmp_path, mode=0o600) -> Profile:
    path = tmp_path / "site.toml"
    path.write_text(GOOD)
    prof = pr.load(path)
    write_secrets_file(prof.secrets_file, {"admin_password": "Abcdef123456"})
    os.chmod(prof.secrets_file, mode)
    return prof


def test_secrets_file_of_another_user_refused(tmp_path, monkeypatch):
    prof = _profile_with_secrets(tmp_path)
    owner = prof.secrets_file.stat().st_uid
    monkeypatch.setattr(os, "getuid", lambda: owner + 4242)
    with pytest.raises(ProfileError) as ei:
        pr.load_secrets(prof, env={})
    assert "another user" in str(ei.value) and str(prof.secrets_file) in str(ei.value)
    assert "Abcdef123456" not in str(ei.value)


def test_loose_secrets_behind_a_symlink_refused_and_never_chmodded(tmp_path):
    target = tmp_path / "elsewhere" / "real.toml"
    target.parent.mkdir()
    target.write_text('admin_password = "Abcdef123456"\n')
    os.chmod(target, 0o644)
    path = tmp_path / "site.toml"
    path.write_text(GOOD)
    prof = pr.load(path)
    prof.secrets_file.symlink_to(target)
    with pytest.raises(ProfileError) as ei:
        pr.load_secrets(prof, env={})
    assert "chmod 600" in str(ei.value) and str(prof.secrets_file) in str(ei.value)
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    os.chmod(target, 0o600)                      # a private target behind a link is fine
    assert pr.load_secrets(prof, env={}).get("admin_password") == "Abcdef123456"


# --------------------------------------------------------------------------- odd files


def _fifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


def _release(fifo: Path) -> None:
    """Give a reader blocked on the FIFO (old code) its EOF, so no thread is left hanging."""
    try:
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
    except OSError:
        pass


def within_a_second(fn):
    """fn() must end within a second; returns what it raised (None when it returned)."""
    box: dict = {}

    def target():
        try:
            fn()
            box["exc"] = None
        except BaseException as exc:  # noqa: BLE001
            box["exc"] = exc

    t = threading.Thread(target=target, daemon=True)
    t0 = time.monotonic()
    t.start()
    t.join(1.0)
    assert not t.is_alive(), "still reading after a second (blocked on a FIFO or /dev/zero?)"
    assert time.monotonic() - t0 < 1.0
    return box["exc"]


def _odd(kind: str, path: Path) -> Path:
    if kind == "directory":
        path.mkdir()
    elif kind == "fifo":
        _fifo(path)
    elif kind == "dev-zero":
        path.symlink_to("/dev/zero")
    elif kind == "huge":
        with open(path, "wb") as fh:
            fh.truncate(50 * 1024 * 1024)   # sparse: 50 MB to stat, nothing on disk
    return path


KINDS = ["directory", "fifo", "dev-zero", "huge"]
WORDS = {"directory": "directory", "fifo": "FIFO", "dev-zero": "device", "huge": "bytes"}


@pytest.mark.parametrize("kind", KINDS)
def test_profile_path_of_an_odd_kind_is_a_clear_error_at_once(tmp_path, kind):
    path = _odd(kind, tmp_path / "site.toml")
    try:
        exc = within_a_second(lambda: pr.load(path))
    finally:
        if kind == "fifo":
            _release(path)
    assert isinstance(exc, ProfileError), repr(exc)
    assert str(path) in str(exc) and WORDS[kind] in str(exc)


@pytest.mark.parametrize("kind", KINDS)
def test_secrets_path_of_an_odd_kind_is_a_clear_error_at_once(tmp_path, kind):
    path = tmp_path / "site.toml"
    path.write_text(GOOD)
    prof = pr.load(path)
    _odd(kind, prof.secrets_file)
    try:
        exc = within_a_second(lambda: pr.load_secrets(prof, env={}))
    finally:
        if kind == "fifo":
            _release(prof.secrets_file)
    assert isinstance(exc, ProfileError), repr(exc)
    assert str(prof.secrets_file) in str(exc) and WORDS[kind] in str(exc)


@pytest.mark.parametrize("kind", KINDS)
def test_state_path_of_an_odd_kind_is_a_clear_error_at_once(tmp_path, kind):
    from tui.tasks.engine import RunState, StateError

    path = _odd(kind, tmp_path / "state.json")
    try:
        exc = within_a_second(lambda: RunState.load(path))
    finally:
        if kind == "fifo":
            _release(path)
    assert isinstance(exc, StateError), repr(exc)
    assert str(path) in str(exc) and WORDS[kind] in str(exc)


def test_cli_profile_path_of_dev_zero_and_a_directory(capsys, tmp_path):
    for arg in ("/dev/zero", str(tmp_path)):
        t0 = time.monotonic()
        rc, out, err = main(capsys, "plan", arg)
        assert rc == 2 and "cannot use profile" in err and time.monotonic() - t0 < 1.0


# --------------------------------------------------------------------------- directories


def test_loose_directories_of_an_earlier_run_are_tightened(home):
    for kind in ("config", "data", "state", "log"):
        d = home / kind
        d.mkdir(parents=True)
        os.chmod(d, 0o755)
    (home / "config" / "profiles").mkdir()
    os.chmod(home / "config" / "profiles", 0o775)
    assert paths.profiles_dir().is_dir()
    paths.data_dir(), paths.state_dir(), paths.log_dir()
    for d in ("config", "config/profiles", "data", "state", "log"):
        assert stat.S_IMODE((home / d).stat().st_mode) == 0o700, d


def test_a_loose_directory_of_another_user_is_reported_not_chmodded(home, monkeypatch):
    d = home / "config"
    d.mkdir(parents=True)
    os.chmod(d, 0o777)
    monkeypatch.setattr(paths.os, "getuid", lambda: os.stat(d).st_uid + 1)  # someone else's
    with pytest.raises(paths.UnsafeDirectory) as ei:
        paths.config_dir()
    assert str(d) in ei.value.what and "another user" in ei.value.what and "0777" in ei.value.what
    assert "chmod 700" in ei.value.hint and isinstance(ei.value, PermissionError)
    assert stat.S_IMODE(d.stat().st_mode) == 0o777
    os.chmod(d, 0o700)      # private, though not ours: nothing to report
    assert paths.config_dir() == d


def test_the_cli_explains_a_refused_directory_without_a_traceback(home, monkeypatch, capsys):
    from tui import cli

    d = home / "config"
    d.mkdir(parents=True)
    os.chmod(d, 0o757)
    monkeypatch.setattr(paths.os, "getuid", lambda: os.stat(d).st_uid + 1)
    assert cli.main(["profiles", "list"]) == cli.EXIT_FAILED
    err = capsys.readouterr().err
    assert "belongs to another user" in err and "Try: use a directory of your own" in err
    assert "Traceback" not in err


def test_a_symlinked_directory_is_not_chmodded_through(home, tmp_path):
    real = tmp_path / "shared"
    real.mkdir()
    os.chmod(real, 0o755)
    home.mkdir()
    (home / "log").symlink_to(real)
    assert paths.log_dir() == home / "log"
    assert stat.S_IMODE(real.stat().st_mode) == 0o755


# --------------------------------------------------------------------------- bundle output


def _bundle_profile() -> Profile:
    p = Profile(name="bnd", host=pr.HostConfig(address="10.0.0.5"))
    p.openstack.services = ["mariadb"]
    pr.save(p)
    return p


def _stray(d: Path) -> list[str]:
    return [n for n in os.listdir(d) if n.endswith(".tmp")]


def test_bundle_output_may_be_a_directory(capsys, tmp_path):
    from tui.tasks.bundle import make_bundle

    out_dir = tmp_path / "out"
    out_dir.mkdir()
    path = make_bundle(_bundle_profile(), out_dir, connect=False)
    assert path.parent == out_dir and path.name.startswith("stack-tui-bundle-bnd-")
    assert path.name.endswith(".tar.gz") and stat.S_IMODE(path.stat().st_mode) == 0o600
    import tarfile

    with tarfile.open(path) as tar:
        assert any(m.name.endswith("/MANIFEST.txt") for m in tar.getmembers())
    assert _stray(out_dir) == []
    rc, out, err = main(capsys, "bundle", "bnd", "-o", str(out_dir))   # the CLI path too
    assert rc == 0 and "Traceback" not in err and len(list(out_dir.glob("*.tar.gz"))) >= 1


def test_bundle_temp_file_is_private_and_never_follows_a_symlink(tmp_path, monkeypatch):
    from tui.tasks import bundle

    out_dir = tmp_path / "out"
    out_dir.mkdir()
    victim = tmp_path / "victim"
    victim.write_text("keep me")
    # the old predictable temp name, planted as a symlink to a file of the user's
    (out_dir / ".b.tar.gz.tmp").symlink_to(victim)
    (out_dir / "b.tar.gz").symlink_to(victim)      # the target itself a link: replaced, not followed
    path = bundle.make_bundle(_bundle_profile(), out_dir / "b.tar.gz", connect=False)
    assert victim.read_text() == "keep me"
    assert not path.is_symlink() and path.stat().st_size > 0


def test_a_failed_bundle_leaves_no_temp_file(tmp_path, monkeypatch):
    from tui.tasks import bundle

    out_dir = tmp_path / "out"
    out_dir.mkdir()

    def boom(text, redact):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(bundle, "clean", boom)
    with pytest.raises(OSError):
        bundle.make_bundle(_bundle_profile(), out_dir / "b.tar.gz", connect=False)
    assert os.listdir(out_dir) == []


def test_bundle_skips_a_fifo_planted_as_the_state_file(tmp_path):
    from tui.tasks import bundle
    from tui.tasks.engine import state_path

    p = _bundle_profile()
    sp = state_path(p.name, p.host.address)
    _fifo(sp)
    try:
        exc = within_a_second(lambda: bundle.make_bundle(p, tmp_path / "b.tar.gz", connect=False))
    finally:
        _release(sp)
    assert exc is None and (tmp_path / "b.tar.gz").exists()


def test_key_file_that_is_a_fifo_or_directory_is_refused_without_opening_it(tmp_path):
    for kind, path in (("fifo", _fifo(tmp_path / "key")), ("dir", tmp_path / "keydir")):
        if kind == "dir":
            path.mkdir()
        p = Profile(name="k", host=pr.HostConfig(address="10.0.0.1", key_file=str(path)))
        p.openstack.services = ["mariadb"]
        exc = within_a_second(p.validate)
        assert isinstance(exc, ProfileError) and exc.key == "host.key_file"
        assert "not a regular file" in str(exc)
