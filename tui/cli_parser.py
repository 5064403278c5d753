"""The command line's arguments: one small function per command group.

Only argparse here (no stack-tui imports beyond the version), so `stack-tui --help` stays fast."""

from __future__ import annotations

import argparse

# Every command that reads the run state takes it: a corrupted state file's message says so.
RESET_HELP = "forget the saved run state (steps still check the host first)"
HOST_KEY_HELP = "trust the host's SSH key if it is not known yet (never a changed one)"


def parser() -> argparse.ArgumentParser:
    from . import __version__

    p = argparse.ArgumentParser(
        prog="stack-tui",
        description="Keyboard-driven installer for the OpenStack control plane "
                    "(MariaDB, RabbitMQ, Memcached, Keystone, Glance) over SSH.",
        epilog="Run without a command to open the installer's screens.",
    )
    p.add_argument("--version", action="version", version=f"stack-tui {__version__}")
    p.add_argument("--profile", metavar="NAME_OR_PATH", help="open the TUI with this profile")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    _run_commands(sub)
    _bundle(sub)
    _profiles(sub)
    _sandbox(sub)
    _export(sub)
    return p


def _on_host(sub, name: str, help: str):
    """A command that works on a profile: its PROFILE argument."""
    sp = sub.add_parser(name, help=help)
    sp.add_argument("profile", metavar="PROFILE")
    return sp


def _run_commands(sub) -> None:
    sp = sub.add_parser("plan", help="print the phases and steps (no changes to any host)")
    sp.add_argument("profile", metavar="PROFILE")

    sp = _on_host(sub, "apply", "install headless; resumes where a previous run stopped")
    sp.add_argument("--yes", action="store_true", help="never ask; abort on the first failure")
    sp.add_argument("--accept-new-host-key", action="store_true", help=HOST_KEY_HELP)
    sp.add_argument("--from", dest="from_step", metavar="STEP_ID", help="start at this step")
    sp.add_argument("--only", metavar="PHASE", help="run only this phase")
    sp.add_argument("--reset-state", action="store_true", help=RESET_HELP)
    sp.add_argument("--quiet", action="store_true", help="print only failures and the summary")
    sp.add_argument("--fix", action="store_true",
                    help="let the preflight fix what it can (e.g. /etc/hosts, time sync)")

    sp = _on_host(sub, "check", "preflight only: can the host take the install? "
                                "(changes nothing unless --fix)")
    sp.add_argument("--fix", action="store_true", help="apply the fixes the checks offer")
    sp.add_argument("--reset-state", action="store_true", help=RESET_HELP)
    sp.add_argument("--accept-new-host-key", action="store_true", help=HOST_KEY_HELP)

    sp = _on_host(sub, "verify", "check the installed cloud again; --tempest adds "
                                 "OpenStack's own integration suite")
    sp.add_argument("--tempest", action="store_true",
                    help="also run Tempest's identity and image API tests from this machine")
    sp.add_argument("--regex", help="Tempest tests to run (default: identity and image API)")
    sp.add_argument("--reset-state", action="store_true", help=RESET_HELP)
    sp.add_argument("--accept-new-host-key", action="store_true", help=HOST_KEY_HELP)


def _bundle(sub) -> None:
    sp = _on_host(sub, "bundle", "write a support bundle (logs, state, plan, host "
                                 "configs and logs; secrets redacted)")
    sp.add_argument("-o", "--output", metavar="FILE_OR_DIR",
                    help="where to write the .tar.gz (a directory: a new file in it)")


def _profiles(sub) -> None:
    sp = sub.add_parser("profiles", help="list, show or delete saved profiles")
    psub = sp.add_subparsers(dest="action", metavar="ACTION", required=True)
    psub.add_parser("list", help="list saved profiles")
    x = psub.add_parser("new", help="create a profile for a server (other settings default)")
    x.add_argument("name")
    x.add_argument("--host", required=True, help="address or host name of the server")
    x.add_argument("--user", default="root", help="SSH user (sudo is used when not root)")
    x.add_argument("--port", type=int, default=22)
    x.add_argument("--key-file", help="SSH private key (default: ssh-agent / ~/.ssh keys)")
    x.add_argument("--image-file", help="image to upload to Glance")
    x.add_argument("--force", action="store_true", help="overwrite an existing profile")
    x = psub.add_parser("show", help="print a profile (secrets masked)")
    x.add_argument("name")
    x = psub.add_parser("delete", help="delete a profile (its secrets file too); asks first")
    x.add_argument("name", help="a profile name, as `profiles list` shows it (not a path)")
    x.add_argument("--yes", action="store_true",
                   help="do not ask (needed when stdin is not a terminal)")


def _sandbox(sub) -> None:
    sp = sub.add_parser("sandbox", help="a throwaway local Debian test host (needs root)")
    ssub = sp.add_subparsers(dest="action", metavar="ACTION", required=True)
    x = ssub.add_parser("up", help="boot it (idempotent) and write the profile 'sandbox'")
    x.add_argument("--name", default="sandbox")
    x.add_argument("--release", choices=["13", "12"], default="13",
                   help="Debian release of the host: 13 (trixie, OpenStack 2025.1 Epoxy; "
                        "the default) or 12 (bookworm, Zed)")
    x.add_argument("--hosts", type=_host_count, default=1, metavar="N",
                   help="boot N hosts (1-5) named NAME-1 .. NAME-N on a shared management "
                        "and provider network, one profile each (default 1: one host named NAME)")
    x = ssub.add_parser("down", help="remove everything it made (a group: every host)")
    x.add_argument("--name", default="sandbox")
    x = ssub.add_parser("status", help="show what exists (a group: its hosts)")
    x.add_argument("--name", default="sandbox")


def _host_count(text: str) -> int:
    if not (text.isdigit() and 1 <= int(text) <= 5):
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of hosts from 1 to 5")
    return int(text)


def _export(sub) -> None:
    sp = sub.add_parser("export", help="write the profile's plan for another tool "
                                       "(ansible: inventory and playbook)")
    esub = sp.add_subparsers(dest="format", metavar="{ansible}", required=True)
    x = esub.add_parser("ansible", help="an inventory and a playbook (a role per service); "
                                        "see docs/ansible.md")
    x.add_argument("profile", metavar="PROFILE")
    x.add_argument("dir", metavar="DIR", help="a new or empty directory to write into")
    x.add_argument("--force", action="store_true", help="write into a non-empty DIR")
    x.add_argument("--vault-password-file", metavar="FILE",
                   help="encrypt the secrets into group_vars/all/vault.yml with the password "
                        "in FILE (without it: no secret is written; the playbook reads each "
                        "from STACK_TUI_<NAME> at run time)")
