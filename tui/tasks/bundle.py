"""Support bundle: one tar.gz with what a helper needs to see, and no secret.

Local: the newest run logs of the profile, the run state (step states, timings,
errors), the rendered plan (the text of `stack-tui plan`).  From every host of the
profile that is reachable (bundle_hosts.py: the controller's under ``host/``, each other
host's under ``hosts/<name>/``): the OpenStack config files, /etc/hosts, service
statuses, journal and log tails, the listening sockets.

Every file passes through the session's Redactor (every known secret in all its
quoted/encoded forms) AND ``scrub``, which masks by shape what the redactor may
not know: ``password = ...`` style settings, passwords in URLs, OS_PASSWORD,
``IDENTIFIED BY '...'``.  UI-free: ``make_bundle(session_or_profile, out_path)``.
"""

from __future__ import annotations

import io
import os
import re
import tarfile
import time
from pathlib import Path
from typing import Callable

from . import paths
from .bundle_hosts import _safe, collect_hosts, host_items, hosts_lines
from .redact import MASK, Redactor

__all__ = ["clean", "host_items", "make_bundle", "newest_logs", "plan_text", "scrub"]

# settings whose value is a secret, whatever the file format (ini, shell, yaml, json, toml)
# (names holding these words anywhere; names ending in _key or _keys, hmac_keys among them;
# the X-Auth-Token and X-Subject-Token headers)
_KEY = (r"(?:[A-Za-z0-9_.-]*(?:password|passwd|passphrase|secret|_token|api_key|private_key"
        r"|x-auth-token|x-subject-token)[A-Za-z0-9_.-]*|[A-Za-z0-9_.-]*_keys?(?![A-Za-z0-9_.-]))")
# a whole line `key = value` (ini values may hold spaces): mask the rest of the line
_LINE = re.compile(r"""^(?P<head>[ \t]*(?:[#;][ \t]*)?(?:export[ \t]+)?["']?""" + _KEY
                   + r"""["']?[ \t]*[=:][ \t]*)(?P<val>\S.*?)[ \t]*$""", re.I | re.M)
# `key=value` / `key: value` inside a longer line (journal, logs): mask one token
_INLINE = re.compile(r"""(?P<head>(?<![\w.-])""" + _KEY + r"""["']?[ \t]*[=:][ \t]*)"""
                     r"""(?P<val>"(?:[^"\\]|\\.)*"|'[^']*'|[^\s,;"']+)""", re.I)
# passwords inside URLs: scheme://user:PASSWORD@host ('@' in passwords is %40-quoted)
_URL = re.compile(r"(?P<head>\b[a-z][a-z0-9+.-]*://[^\s:/@]*:)(?P<val>[^\s@]+)(?=@)", re.I)
# `key = scheme://user:PASSWORD@host` as a whole config line: the password may hold spaces
_LINE_URL = re.compile(r"^(?P<head>[ \t]*[\w.-]+[ \t]*=[ \t]*[\"']?[a-z][a-z0-9+.-]*://[^\s:/@]*:)"
                       r"(?P<val>.+)(?=@[^@]*$)", re.I | re.M)
_JSON = re.compile(r'(?P<head>"' + _KEY + r'"\s*:\s*")(?P<val>(?:[^"\\]|\\.)*)(?=")', re.I)
_SQL = re.compile(r"(?P<head>IDENTIFIED\s+(?:BY|VIA\s+\w+\s+USING)\s+(?:PASSWORD\s+)?)"
                  r"(?P<val>'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\")", re.I)
_CLI = re.compile(r"(?P<head>--(?:os-)?password[= ])(?P<val>\S+)", re.I)


def scrub(text: str) -> str:
    """Mask secrets by their shape (config settings, URLs, env exports, JSON, SQL)."""
    def mask(m: re.Match) -> str:
        val = m.group("val")
        if val.strip("'\"") in ("", MASK) or MASK in val:
            return m.group(0)
        return m.group("head") + MASK

    for pattern in (_JSON, _LINE_URL, _URL, _SQL, _CLI, _LINE, _INLINE):
        text = pattern.sub(mask, text)
    return text


def clean(text: str | bytes, redact: Callable[[str], str]) -> str:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return scrub(redact(text))


def newest_logs(profile_name: str, n: int = 3) -> list[Path]:
    logs = sorted(paths.log_dir().glob(f"{_safe(profile_name)}-*.log"),
                  key=lambda p: (p.stat().st_mtime, p.name))
    return logs[-n:]


def plan_text(profile) -> str:
    """Exactly what `stack-tui plan PROFILE` prints."""
    from .deploy import describe_plan

    try:
        return describe_plan(profile)
    except Exception as exc:  # noqa: BLE001 - the bundle still gets written
        return f"(could not render the plan: {type(exc).__name__}: {exc})\n"


def _redactor_for(profile, session) -> Redactor:
    from .secrets import read_secrets_file

    red = Redactor()
    if session is not None:
        red = session.redact
    else:
        try:
            from .profile import load_secrets

            red = load_secrets(profile).redactor()
        except Exception:  # noqa: BLE001 - a broken secrets file: scrub still applies
            pass
    # also every value stored anywhere for the profile (env may override the file)
    try:
        for v in read_secrets_file(profile.secrets_file).values():
            red.add(v)
    except Exception:  # noqa: BLE001
        pass
    for v in getattr(profile, "inline_secrets", {}).values():
        red.add(v)
    return red


def _add_local(items: dict, manifest: list, name: str, path: Path) -> None:
    """A local file into the bundle, if it is a regular file of a sane size (a FIFO or a
    device planted there must not hang or flood the bundle)."""
    from .fsutil import read_regular

    try:
        items[name] = read_regular(path, 64 * 1024 * 1024).decode("utf-8", "replace")
    except (OSError, ValueError) as exc:
        manifest.append(f"{name}: not included, {path} {getattr(exc, 'strerror', None) or exc}")


def _write_tar(out_path: Path, root: str, items: dict, redact) -> None:
    """The tar.gz written whole or not at all (fsutil.atomic_file: a private temp file
    beside the target, renamed over it; removed on any failure)."""
    from .fsutil import atomic_file

    with atomic_file(out_path, 0o600) as fh, tarfile.open(fileobj=fh, mode="w:gz") as tar:
        for name in sorted(items):
            data = clean(items[name], redact).encode("utf-8")
            info = tarfile.TarInfo(f"{root}/{name}")
            info.size = len(data)
            info.mtime = int(time.time())
            info.mode = 0o600
            tar.addfile(info, io.BytesIO(data))


def _load(session_or_profile):
    """(session or None, profile) from a runner.Session, a Profile or a profile name/path."""
    if hasattr(session_or_profile, "transport") and hasattr(session_or_profile, "profile"):
        return session_or_profile, session_or_profile.profile
    if isinstance(session_or_profile, (str, Path)):
        from .profile import load

        return None, load(session_or_profile)
    return None, session_or_profile


def _out_path(out_path, root: str) -> Path:
    if out_path is None:
        out_dir = paths.data_dir() / "bundles"
        out_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        return out_dir / f"{root}.tar.gz"
    out_path = Path(out_path)
    if out_path.is_dir():  # `-o /tmp`: the bundle goes inside, under its own name
        return out_path / f"{root}.tar.gz"
    return out_path


def _local_items(profile, items: dict, manifest: list) -> None:
    from .engine import state_path

    for p in newest_logs(profile.name):
        _add_local(items, manifest, f"local/logs/{p.name}", p)
    if not any(k.startswith("local/logs/") for k in items):
        manifest.append("no run log for this profile yet")
    sp = state_path(profile.name, profile.host.address)
    if os.path.lexists(sp):
        _add_local(items, manifest, "local/state.json", sp)
    else:
        manifest.append(f"no run state yet ({sp})")
    items["local/plan.txt"] = plan_text(profile)
    items["local/profile.toml"] = profile.dumps()


def make_bundle(session_or_profile, out_path: str | Path | None = None, *,
                connect: bool = True, log: Callable[[str], None] | None = None) -> Path:
    """Write the support bundle; returns its path.

    ``session_or_profile``: a runner.Session (its connections are reused), a Profile or a
    profile name/path (a connection is opened to each host whose key is already known)."""
    say = log or (lambda s: None)
    session, profile = _load(session_or_profile)
    redact = _redactor_for(profile, session)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    root = f"stack-tui-bundle-{_safe(profile.name)}-{stamp}"
    out_path = _out_path(out_path, root)
    items: dict[str, str] = {}
    manifest: list[str] = [f"stack-tui support bundle for profile {profile.name}",
                           f"written {time.strftime('%Y-%m-%d %H:%M:%S %z')}",
                           "every file is redacted (known secrets and secret-shaped values "
                           f"are replaced by {MASK})", "", *hosts_lines(profile), ""]
    _local_items(profile, items, manifest)
    if connect:
        manifest += ["", *collect_hosts(session, profile, redact, items, say)]
    manifest += ["", "files:"] + [f"  {k}" for k in sorted(items)]
    items["MANIFEST.txt"] = "\n".join(manifest) + "\n"
    _write_tar(out_path, root, items, redact)
    say(f"bundle written: {out_path}")
    return out_path
