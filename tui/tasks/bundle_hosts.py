"""The support bundle's host part: the same files and command outputs from every host.

The controller's go under ``host/`` (the one host of a single-host profile: the layout of
every bundle so far), each other host's under ``hosts/<name>/``.  A host is reached through
the run's connection when there is a run (``Session.transport`` / ``Session.others``), else
through one opened here, only to a host whose key is already known (never added on the way).
A host that cannot be reached, or runs a system stack-tui does not support, is named in the
manifest with what it lacks; the other hosts are still collected.  Redaction happens when the
tar is written (bundle.make_bundle), for every host alike.
"""

from __future__ import annotations

from typing import Callable


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def host_items(plat) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(files to read, commands to run) on the host of platform ``plat``, each (name in
    bundle, path/command).

    Every service declares its config files, units and logs (services/base.py)."""
    from .services import REGISTRY

    configs = [c for s in REGISTRY for c in s.configs(plat)] + ["/etc/hosts", "/etc/os-release"]
    files = [("etc/" + c.split("/etc/", 1)[-1], c) for c in configs]
    units = [u for s in REGISTRY for u in s.units(plat)]
    cmds = [("systemctl-status.txt",
             "systemctl status --no-pager -n 0 " + " ".join(units) + " 2>&1")]
    for u in units:
        cmds.append((f"journal/{u}.txt", f"journalctl -u {u} -n 200 --no-pager -o short-iso 2>&1"))
    for s in REGISTRY:
        for log in s.logs(plat):
            cmds.append((f"logs/{log.rsplit('/', 1)[-1]}", f"tail -n 300 {log} 2>&1"))
    names = "|".join([s.id for s in REGISTRY] + ["apache2", "httpd", "wsgi", "openstack"])
    cmds += [
        ("ss-ltnp.txt", "ss -ltnp 2>&1"),
        ("df.txt", "df -h 2>&1; free -m 2>&1"),
        ("packages.txt", f"{plat.pm.list_all} | grep -E '{names}'"),
    ]
    return files, cmds


def prefix(profile, host) -> str:
    """Where a host's files go in the bundle: ``host`` for the controller, else
    ``hosts/<name>``."""
    return "host" if host is profile.host else f"hosts/{_safe(host.name)}"


def describe(host) -> str:
    return f"{host.name}: {host.user}@{host.address}:{host.port}, roles {', '.join(host.roles)}"


def hosts_lines(profile) -> list[str]:
    """The manifest's list of hosts: name, user@address:port, roles, where their files are."""
    return ["hosts:"] + [f"  {describe(h)}; files under {prefix(profile, h)}/"
                         for h in profile.hosts]


def _open_transport(profile, host, redact):
    """A new connection to ``host`` (not yet connected): its host key must be known."""
    from .profile import load_secrets
    from .transport import Transport

    sec = load_secrets(profile)
    return Transport(host.address, host.port, host.user,
                     key_file=host.key_file, password=sec.get("ssh_password"),
                     sudo_password=sec.get("sudo_password"), redactor=redact)


def _known_platform(session):
    """The platform the run already resolved (its plan, else its facts), or None."""
    from .platforms import PLATFORMS

    if session is None:
        return None
    pid = session.plan.platform if session.plan is not None else session.state.facts.get("platform")
    return PLATFORMS.get(pid or "")


def _host_platform(session, profile, transport):
    """The host's platform: the run's (one system for every host), else resolved from the
    profile and this host.  An unknown system raises platforms.UnknownPlatform naming it
    (no guessed default)."""
    from .platforms import resolve

    plat = _known_platform(session)
    if plat is not None:
        return plat
    forced = profile.openstack.platform
    text = None if forced != "auto" else transport.read_file("/etc/os-release") or ""
    return resolve(forced, text)


def _collect(transport, plat, where: str, items: dict, notes: list) -> None:
    files, cmds = host_items(plat)
    for name, path in files:
        try:
            data = transport.read_bytes(path)
        except Exception as exc:  # noqa: BLE001
            notes.append(f"{where}/{name}: could not read {path}: {exc}")
            continue
        if data is None:
            notes.append(f"{where}/{name}: {path} does not exist")
            continue
        items[f"{where}/{name}"] = data
    for name, cmd in cmds:
        try:
            r = transport.run(cmd, check=False, timeout=60)
            items[f"{where}/{name}"] = r.raw or r.stdout
        except Exception as exc:  # noqa: BLE001
            notes.append(f"{where}/{name}: `{cmd}` failed: {exc}")


def _session_transport(session, profile, host):
    if session is None:
        return None
    if host is profile.host:
        return session.transport
    return getattr(session, "others", {}).get(host.name)


def _one_host(session, profile, host, redact, items: dict, notes: list, say) -> None:
    """Collect one host into ``items`` under its prefix; what failed goes to ``notes``."""
    from .platforms import UnknownPlatform

    transport = _session_transport(session, profile, host)
    opened = None
    try:
        if transport is None:
            opened = transport = _open_transport(profile, host, redact)
        say(f"collecting from {host.name} ({host.address})")
        transport.connect()
        try:
            plat = _host_platform(session, profile, transport)
        except UnknownPlatform as exc:
            notes.append(f"nothing collected from host {host.name}: {exc.what} {exc.why}")
            return
        _collect(transport, plat, prefix(profile, host), items, notes)
    except Exception as exc:  # noqa: BLE001 - the other hosts and local parts still count
        what = getattr(exc, "what", None) or str(exc)
        notes.append(f"host {host.name} ({host.user}@{host.address}:{host.port}) was not "
                     f"reachable, nothing collected from it: {what}")
    finally:
        if opened is not None:
            opened.close()


def collect_hosts(session, profile, redact, items: dict,
                  say: Callable[[str], None]) -> list[str]:
    """Every host of the profile into ``items``, one after the other (an unreachable one
    does not stop the others); returns the manifest's lines: per host, what is missing."""
    lines: list[str] = []
    for host in profile.hosts:
        notes: list[str] = []
        _one_host(session, profile, host, redact, items, notes, say)
        state = "everything collected" if not notes else "not collected:"
        lines.append(f"host {host.name} ({prefix(profile, host)}/): {state}")
        lines += [f"  {n}" for n in notes]
    return lines
