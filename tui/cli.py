"""Command line: `stack-tui` opens the TUI; sub-commands run headless.

Imports are deferred so `stack-tui --help` stays fast.
"""

from __future__ import annotations

import argparse
import sys

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_CONNECT = 0, 1, 2, 3
# Every command that reads the run state takes it: a corrupted state file's message says so.
RESET_HELP = "forget the saved run state (steps still check the host first)"


def _parser() -> argparse.ArgumentParser:
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

    sp = sub.add_parser("plan", help="print the phases and steps (no changes to any host)")
    sp.add_argument("profile", metavar="PROFILE")

    sp = sub.add_parser("apply", help="install headless; resumes where a previous run stopped")
    sp.add_argument("profile", metavar="PROFILE")
    sp.add_argument("--yes", action="store_true", help="never ask; abort on the first failure")
    sp.add_argument("--accept-new-host-key", action="store_true",
                    help="trust the host's SSH key if it is not known yet (never a changed one)")
    sp.add_argument("--from", dest="from_step", metavar="STEP_ID", help="start at this step")
    sp.add_argument("--only", metavar="PHASE", help="run only this phase")
    sp.add_argument("--reset-state", action="store_true", help=RESET_HELP)
    sp.add_argument("--quiet", action="store_true", help="print only failures and the summary")
    sp.add_argument("--fix", action="store_true",
                    help="let the preflight fix what it can (e.g. /etc/hosts, time sync)")

    sp = sub.add_parser("check", help="preflight only: can the host take the install? "
                                      "(changes nothing unless --fix)")
    sp.add_argument("profile", metavar="PROFILE")
    sp.add_argument("--fix", action="store_true", help="apply the fixes the checks offer")
    sp.add_argument("--reset-state", action="store_true", help=RESET_HELP)
    sp.add_argument("--accept-new-host-key", action="store_true",
                    help="trust the host's SSH key if it is not known yet (never a changed one)")

    sp = sub.add_parser("verify", help="check the installed cloud again; --tempest adds "
                                       "OpenStack's own integration suite")
    sp.add_argument("profile", metavar="PROFILE")
    sp.add_argument("--tempest", action="store_true",
                    help="also run Tempest's identity and image API tests from this machine")
    sp.add_argument("--regex", help="Tempest tests to run (default: identity and image API)")
    sp.add_argument("--reset-state", action="store_true", help=RESET_HELP)
    sp.add_argument("--accept-new-host-key", action="store_true",
                    help="trust the host's SSH key if it is not known yet (never a changed one)")

    sp = sub.add_parser("bundle", help="write a support bundle (logs, state, plan, host "
                                       "configs and logs; secrets redacted)")
    sp.add_argument("profile", metavar="PROFILE")
    sp.add_argument("-o", "--output", metavar="FILE_OR_DIR",
                    help="where to write the .tar.gz (a directory: a new file in it)")

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

    sp = sub.add_parser("sandbox", help="a throwaway local Debian test host (needs root)")
    ssub = sp.add_subparsers(dest="action", metavar="ACTION", required=True)
    x = ssub.add_parser("up", help="boot it (idempotent) and write the profile 'sandbox'")
    x.add_argument("--name", default="sandbox")
    x.add_argument("--release", choices=["13", "12"], default="13",
                   help="Debian release of the host: 13 (trixie, OpenStack 2025.1 Epoxy; "
                        "the default) or 12 (bookworm, Zed)")
    x = ssub.add_parser("down", help="remove everything it made")
    x.add_argument("--name", default="sandbox")
    x = ssub.add_parser("status", help="show what exists")
    x.add_argument("--name", default="sandbox")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command is None:
            return _tui(args.profile)
        if args.command == "plan":
            return cmd_plan(args)
        if args.command == "apply":
            return cmd_apply(args)
        if args.command in ("check", "bundle"):
            return cmd_check(args) if args.command == "check" else cmd_bundle(args)
        if args.command == "verify":
            return cmd_verify(args)
        if args.command == "profiles":
            return cmd_profiles(args)
        if args.command == "sandbox":
            return cmd_sandbox(args)
    except KeyboardInterrupt:
        print("\nInterrupted. The run state is saved; `stack-tui apply` resumes.", file=sys.stderr)
        return 130
    return EXIT_USAGE


def _err(text: str) -> None:
    from .tasks.redact import strip_controls

    print(strip_controls(text), file=sys.stderr)


def _load(name: str):
    from .tasks.profile import ProfileError, load

    try:
        return load(name)
    except ProfileError as exc:
        _err(f"stack-tui: cannot use profile: {exc}")
        return None


def _tui(profile: str | None) -> int:
    from .app import run_app

    return run_app(profile)


# -- plan ----------------------------------------------------------------------
def cmd_plan(args) -> int:
    prof = _load(args.profile)
    if prof is None:
        return EXIT_USAGE
    from .tasks.deploy import describe_plan

    print(describe_plan(prof), end="")
    return EXIT_OK


# -- apply -----------------------------------------------------------------------
class HeadlessView:
    """Prints one line per step; failures in full; asks on a TTY unless --yes."""

    def __init__(self, yes: bool, quiet: bool, out=sys.stdout):
        self.yes, self.quiet, self.out = yes, quiet, out
        self.titles: dict[str, str] = {}

    def __call__(self, ev) -> None:
        from .tasks import engine as e

        if isinstance(ev, e.StepStarted):
            self.titles[ev.step_id] = ev.title
            self.index = f"[{ev.index:2d}/{ev.total}]"
        elif isinstance(ev, e.StepFinished):
            if self.quiet and ev.status != e.Status.FAILED:
                return
            mark = {"done": "done", "already done": "already done", "skipped": "SKIPPED",
                    "failed": "FAILED"}[ev.status.value]
            print(f"{self.index} {ev.step_id:28s} {mark:13s} {ev.duration:6.1f}s", file=self.out,
                  flush=True)
            if ev.error is not None and ev.status == e.Status.FAILED:
                print(_indent(ev.error.text()), file=self.out)
                if ev.error.tail:
                    print("    last output:", file=self.out)
                    for line in ev.error.tail[-15:]:
                        print(f"    | {line}", file=self.out)
        elif isinstance(ev, e.Notice) and not self.quiet:
            print(f"        note: {ev.text}", file=self.out, flush=True)

    def decide(self, step, error):
        from .tasks.engine import Decision

        if self.yes or not sys.stdin.isatty():
            return Decision.ABORT
        while True:
            try:
                ans = input(f"{step.id} failed: [r]etry, [s]kip, [a]bort? ").strip().lower()
            except EOFError:
                return Decision.ABORT
            if ans in ("r", "retry"):
                return Decision.RETRY
            if ans in ("s", "skip"):
                return Decision.SKIP
            if ans in ("a", "abort", ""):
                return Decision.ABORT


def _indent(text: str) -> str:
    return "\n".join("    " + line for line in text.splitlines())


def cmd_apply(args) -> int:
    prof = _load(args.profile)
    if prof is None:
        return EXIT_USAGE
    from .tasks import runner
    from .tasks.engine import StateError
    from .tasks.profile import ProfileError
    from .tasks.transport import TransportError, UnknownHostKey

    try:
        session = runner.open_session(prof, accept_new_host_key=args.accept_new_host_key,
                                      reset_state=args.reset_state)
    except (ProfileError, StateError) as exc:
        _err(f"stack-tui: {exc}")
        return EXIT_USAGE
    view = HeadlessView(args.yes, args.quiet)
    if session.generated:
        print(f"Generated secrets {', '.join(session.generated)} -> {prof.secrets_file} (0600)")
    try:
        if not args.accept_new_host_key and not args.yes and sys.stdin.isatty():
            session.transport.confirm_host_key = _ask_host_key
        try:
            plan = runner.connect_and_plan(session)
        except UnknownHostKey as exc:
            _err(f"stack-tui: {exc.what}\n  {exc.why}\n  Refused. If this is the right server, "
                 f"re-run with --accept-new-host-key.")
            return EXIT_CONNECT
        except TransportError as exc:
            _err(f"stack-tui: {exc.message()}")
            return EXIT_CONNECT
        try:
            eng = runner.make_engine(session, listeners=[view], decide=view.decide,
                                     from_step=args.from_step, only_phase=args.only,
                                     fix=args.fix)
        except ValueError as exc:
            _err(f"stack-tui: {exc}; see `stack-tui plan {args.profile}` for the ids")
            return EXIT_USAGE
        resumed = session.state.unfinished()
        print(f"Installing on {prof.host.user}@{prof.host.address} ({plan.platform}); "
              f"log: {session.log_path}" + (" - resuming the previous run" if resumed else ""),
              flush=True)
        result = eng.run()
        c = result.counts
        summary = (f"{c['done']} done, {c['already done']} already done, {c['skipped']} skipped, "
                   f"{c['failed']} failed in {result.duration:.1f}s")
        if result.ok:
            print(f"OK: {summary}")
            files = session.state.facts.get("local_files")
            if files:
                print(f"admin-openrc.sh, demo-openrc.sh and clouds.yaml saved in {files}")
            return EXIT_OK
        print(f"NOT COMPLETE: {summary}. Full log: {session.log_path}\n"
              f"Fix the cause and run `stack-tui apply {args.profile}` again: it resumes.")
        return EXIT_FAILED
    finally:
        session.close()


# -- verify ---------------------------------------------------------------------------
def cmd_verify(args) -> int:
    """The built-in checks (the install's last phase, re-run), then Tempest if asked."""
    import argparse

    rc = cmd_apply(argparse.Namespace(
        profile=args.profile, yes=True, accept_new_host_key=args.accept_new_host_key,
        from_step=None, only="finish", reset_state=args.reset_state, quiet=False, fix=False))
    if rc != EXIT_OK or not args.tempest:
        return rc
    prof = _load(args.profile)
    if prof is None:
        return EXIT_USAGE
    from .tasks import tempest

    def progress(tid: str, status: str, n: int) -> None:
        mark = {"ok": "ok  ", "failed": "FAIL", "skipped": "skip"}[status]
        print(f"  [{n:4d}] {mark} {tid}", flush=True)

    try:
        res = tempest.run_for_profile(prof, regex=args.regex or tempest.DEFAULT_REGEX,
                                      on_result=progress, log=lambda s: print(s, flush=True))
    except tempest.TempestError as exc:
        _err(f"stack-tui verify: {exc}")
        return EXIT_FAILED
    print(res.summary())
    for tid in res.failures:
        print(f"  failed: {tid}")
    print(f"Report: {res.report or res.output}" + (f" and {res.html}" if res.html else "")
          + f" (console output {res.output})")
    return EXIT_OK if res.ok else EXIT_FAILED


# -- check / bundle ------------------------------------------------------------------
def cmd_check(args) -> int:
    prof = _load(args.profile)
    if prof is None:
        return EXIT_USAGE
    from .tasks import preflight, runner
    from .tasks.engine import StepOutput
    from .tasks.redact import strip_controls
    from .tasks.transport import TransportError

    try:
        session = runner.open_session(prof, accept_new_host_key=args.accept_new_host_key,
                                      reset_state=args.reset_state)
        plan = runner.connect_and_plan(session)
    except TransportError as exc:
        _err(f"stack-tui: {exc.message()}")
        return EXIT_CONNECT
    except Exception as exc:  # ProfileError, StateError
        _err(f"stack-tui: {exc}")
        return EXIT_USAGE
    try:
        show = lambda ev: isinstance(ev, StepOutput) and print(f"    {ev.line}", flush=True)  # noqa: E731
        ctx = runner.make_engine(session, listeners=[show], only_phase="preflight").ctx
        print(f"Preflight for {prof.host.user}@{prof.host.address} ({plan.platform}):", flush=True)
        results = preflight.run_checks(ctx)
        for res in results:
            print(strip_controls("\n".join("  " + ln for ln in res.lines())))
        if args.fix and preflight.apply_fixes(ctx, results):
            print("Checking again after the fixes:")
            results = preflight.run_checks(ctx)
            for res in results:
                print(strip_controls("\n".join("  " + ln for ln in res.lines())))
        bad = [r for r in results if r.blocking]
        warn = [r for r in results if r.level == preflight.WARNING]
        print(f"{len(bad)} blocking, {len(warn)} warning(s), "
              f"{len(results) - len(bad) - len(warn)} ok.")
        if any(r.fix for r in bad) and not args.fix:
            print(f"Some of this stack-tui can fix: stack-tui check {args.profile} --fix")
        return EXIT_FAILED if bad else EXIT_OK
    finally:
        session.close()


def cmd_bundle(args) -> int:
    prof = _load(args.profile)
    if prof is None:
        return EXIT_USAGE
    from .tasks.bundle import make_bundle

    try:
        path = make_bundle(prof, args.output or f"stack-tui-bundle-{prof.name}.tar.gz",
                           log=lambda s: print(s, flush=True))
    except (OSError, ValueError) as exc:  # ValueError: ProfileError, a refused file
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        _err(f"stack-tui: could not write the support bundle to {args.output or '.'}: {why}")
        return EXIT_FAILED
    print(f"Support bundle: {path} (secrets redacted; check it before you share it)")
    return EXIT_OK


def _ask_host_key(host: str, key_type: str, fp: str) -> bool:
    print(f"The SSH host key of {host} is not known yet.\n  {key_type} {fp}")
    return _yes("Trust this key? [y/N] ")


def _yes(prompt: str) -> bool:
    try:
        return input(prompt).strip().lower() in ("y", "yes")
    except EOFError:
        return False


# -- profiles ----------------------------------------------------------------------
def cmd_profiles(args) -> int:
    from .tasks import profile as pr
    from .tasks.redact import MASK

    if args.action == "list":
        names = pr.list_profiles()
        if not names:
            print(f"No profiles yet in {pr.paths.profiles_dir()}")
        for n in names:
            try:
                p = pr.load(n)
                print(f"{n:20s} {p.host.user}@{p.host.address}:{p.host.port}  "
                      f"{','.join(p.openstack.services)}")
            except pr.ProfileError as exc:
                print(f"{n:20s} BROKEN: {exc}")
        return EXIT_OK
    if args.action == "new":
        return _profiles_new(args)
    if args.action == "show":
        p = _load(args.name)
        if p is None:
            return EXIT_USAGE
        # Mask before serialising: the TOML text holds escaped forms of the values.
        p.inline_secrets = {k: MASK for k in p.inline_secrets}
        text = p.dumps()
        print(f"# {p.path}")
        print(text, end="")
        return EXIT_OK
    if args.action == "delete":
        return _profiles_delete(args)
    return EXIT_USAGE


def _profiles_new(args) -> int:
    from .tasks import profile as pr

    if not pr.NAME_RE.fullmatch(args.name):
        _err(f"stack-tui: {args.name!r} is not a valid profile name: a letter or digit, then "
             "letters, digits, '.', '_' or '-' (at most 64)")
        return EXIT_USAGE
    path = pr.paths.profiles_dir() / f"{args.name}.toml"
    if (path.exists() or path.is_symlink()) and not args.force:
        _err(f"stack-tui: profile {args.name} exists ({path}); use --force to overwrite it")
        return EXIT_USAGE
    prof = pr.Profile(name=args.name)
    prof.host.address, prof.host.user, prof.host.port = args.host, args.user, args.port
    prof.host.key_file, prof.image.file = args.key_file, args.image_file
    try:
        print(f"Profile written: {pr.save(prof)}")  # validated first
    except pr.ProfileError as exc:
        _err(f"stack-tui: {exc}")
        return EXIT_USAGE
    return EXIT_OK


def _profiles_delete(args) -> int:
    from .tasks import profile as pr

    try:
        files = pr.deletable_files(args.name)
    except pr.ProfileError as exc:
        _err(f"stack-tui: {exc}")
        return EXIT_USAGE
    if not files:
        _err(f"stack-tui: no profile named {args.name} (see `stack-tui profiles list`)")
        return EXIT_USAGE
    if not args.yes:
        if not sys.stdin or not sys.stdin.isatty():
            _err(f"stack-tui: not deleting profile {args.name} without a confirmation; "
                 "stdin is not a terminal, so add --yes to delete it from a script")
            return EXIT_USAGE
        print("This deletes:\n" + "".join(f"  {f}\n" for f in files), end="")
        if not _yes(f"Delete profile {args.name}? [y/N] "):
            print("Nothing deleted.")
            return EXIT_FAILED
    try:
        pr.delete(args.name)
    except (pr.ProfileError, OSError) as exc:
        _err(f"stack-tui: could not delete profile {args.name}: {exc}")
        return EXIT_FAILED
    print(f"Deleted profile {args.name}")
    return EXIT_OK


# -- sandbox -------------------------------------------------------------------------
def cmd_sandbox(args) -> int:
    from .tasks import sandbox

    log = lambda s: print(s, flush=True)  # noqa: E731
    try:
        if args.action == "up":
            info = sandbox.up(args.name, log=log, release=args.release)
            path = write_sandbox_profile(info)
            print(f"Sandbox {args.name} is up: ssh -i {info.key_file} root@{info.address}\n"
                  f"Profile written: {path}\n"
                  f"Install with: stack-tui apply {args.name} --accept-new-host-key "
                  f"(or open the TUI: stack-tui --profile {args.name})")
            return EXIT_OK
        if args.action == "down":
            if sandbox.down(args.name, log=log):
                print(f"Sandbox {args.name} removed.")
            else:
                print(f"No sandbox named {args.name}.")
            return EXIT_OK
        if args.action == "status":
            st = sandbox.status(args.name)
            if not st:
                print(f"No sandbox named {args.name}.")
                return EXIT_FAILED
            for k, v in st.items():
                print(f"{k:14s} {v}")
            return EXIT_OK
    except sandbox.SandboxError as exc:
        _err(f"stack-tui sandbox: {exc}")
        return EXIT_FAILED
    return EXIT_USAGE


def write_sandbox_profile(info, name: str | None = None):
    """Create or update the profile pointing at a sandbox (keeps the user's other choices)."""
    from .tasks import profile as pr

    name = name or info.name
    try:
        prof = pr.load(name)
    except pr.ProfileError:
        prof = pr.Profile(name=name)
    prof.host.address = info.address
    prof.host.port = info.port
    prof.host.user = info.user
    prof.host.key_file = info.key_file
    prof.openstack.endpoint_host = None
    if not prof.image.url:
        prof.image.file = info.image_file
    return pr.save(prof)


if __name__ == "__main__":
    sys.exit(main())
