"""Command line: `stack-tui` opens the TUI; sub-commands run headless.

Imports are deferred so `stack-tui --help` stays fast.
"""

from __future__ import annotations

import sys

from .cli_common import EXIT_CONNECT, EXIT_FAILED, EXIT_OK, EXIT_USAGE, _err
from .cli_parser import parser as _parser
from .cli_sandbox import cmd_sandbox, write_sandbox_profile  # noqa: F401 - tests, bench
from .tasks.errors import Failure


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
        if args.command == "export":
            return cmd_export(args)
    except KeyboardInterrupt:
        print("\nInterrupted. The run state is saved; `stack-tui apply` resumes.", file=sys.stderr)
        return 130
    except Failure as exc:  # explained for people (e.g. a refused directory): no traceback
        _err(f"stack-tui: {exc.text()}")
        return EXIT_FAILED
    return EXIT_USAGE


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
        self.numbers: dict[str, str] = {}   # each step's "[ n/total]" (hosts run at once)

    def __call__(self, ev) -> None:
        from .tasks import engine as e

        if isinstance(ev, e.StepStarted):
            self.titles[ev.step_id] = ev.title
            self.numbers[ev.step_id] = f"[{ev.index:2d}/{ev.total}]"
        elif isinstance(ev, e.StepFinished):
            if self.quiet and ev.status != e.Status.FAILED:
                return
            mark = {"done": "done", "already done": "already done", "skipped": "SKIPPED",
                    "failed": "FAILED"}[ev.status.value]
            print(f"{self.numbers.get(ev.step_id, '')} {ev.step_id:28s} {mark:13s} {ev.duration:6.1f}s", file=self.out,
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


def _connect(session, args):
    """Connect to every host (asking about unknown keys on a terminal) and plan; the plan, or
    the exit code after saying why not."""
    from .tasks import runner
    from .tasks.errors import Failure
    from .tasks.transport import TransportError, UnknownHostKey

    if not args.accept_new_host_key and not args.yes and sys.stdin.isatty():
        for t in session.transports().values():
            t.confirm_host_key = _ask_host_key
    try:
        return runner.connect_and_plan(session)
    except UnknownHostKey as exc:
        _err(f"stack-tui: {exc.what}\n  {exc.why}\n  Refused. If this is the right server, "
             f"re-run with --accept-new-host-key.")
    except TransportError as exc:
        _err(f"stack-tui: {exc.message()}")
    except Failure as exc:   # hosts that cannot be installed together
        _err(f"stack-tui: {exc.what}\n  {exc.why}\n  {exc.hint}")
    return EXIT_CONNECT


def cmd_apply(args) -> int:
    prof = _load(args.profile)
    if prof is None:
        return EXIT_USAGE
    from .tasks import runner
    from .tasks.engine import StateError
    from .tasks.profile import ProfileError

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
        plan = _connect(session, args)
        if isinstance(plan, int):
            return plan
        try:
            eng = runner.make_engine(session, listeners=[view], decide=view.decide,
                                     from_step=args.from_step, only_phase=args.only,
                                     fix=args.fix)
        except ValueError as exc:
            _err(f"stack-tui: {exc}; see `stack-tui plan {args.profile}` for the ids")
            return EXIT_USAGE
        resumed = session.state.unfinished()
        print(f"Installing on {', '.join(f'{h.user}@{h.address}' for h in prof.hosts)} "
              f"({plan.platform}); "
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
            from .tasks.services import summary_lines

            for line in summary_lines(prof, session.state.facts):
                print(line.line())
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
        every: list = []
        for ctx in runner.make_engine(session, listeners=[show], only_phase="preflight").contexts.values():
            h = ctx.profile.host
            print(f"Preflight for {h.user}@{h.address} ({plan.platform}):", flush=True)
            results = preflight.run_checks(ctx)
            for res in results:
                print(strip_controls("\n".join("  " + ln for ln in res.lines())))
            if args.fix and preflight.apply_fixes(ctx, results):
                print("Checking again after the fixes:")
                results = preflight.run_checks(ctx)
                for res in results:
                    print(strip_controls("\n".join("  " + ln for ln in res.lines())))
            every += results
        results = every
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


# -- export ----------------------------------------------------------------------
def cmd_export(args) -> int:
    """`export ansible PROFILE DIR`: the inventory and playbook, then how to run them."""
    from pathlib import Path

    from .tasks.export import ansible as exp

    prof = _load(args.profile)
    if prof is None:
        return EXIT_USAGE
    password = secrets = None
    if args.vault_password_file:
        try:
            password = Path(args.vault_password_file).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            _err(f"stack-tui: cannot read the vault password file {args.vault_password_file}: "
                 f"{getattr(exc, 'strerror', None) or exc}")
            return EXIT_USAGE
        if not password:
            _err(f"stack-tui: the vault password file {args.vault_password_file} is empty")
            return EXIT_USAGE
        from .tasks.profile import ProfileError, load_secrets

        try:
            found = load_secrets(prof)
        except ProfileError as exc:
            _err(f"stack-tui: cannot read the secrets: {exc}")
            return EXIT_USAGE
        found.ensure(prof.needed_secrets())  # generated ones saved beside the profile (0600)
        secrets = found.values
    written = exp.export(prof, Path(args.dir), force=args.force, secrets=secrets,
                         vault_password=password)
    dest = Path(args.dir).resolve()
    print(f"Wrote {len(written)} files to {dest}:")
    for path in written:
        print(f"  {path.relative_to(dest)}")
    if password is None:
        names = " ".join(f"STACK_TUI_{n.upper()}" for n in prof.needed_secrets())
        print(f"No secret is in these files: set {names} in the environment, then run:")
    else:
        print("The secrets are in group_vars/all/vault.yml (encrypted, 0600). Run:")
    print("  " + exp.run_command(dest, password is not None).replace(
        "VAULT_PASSWORD_FILE", str(Path(args.vault_password_file or "").resolve())))
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
