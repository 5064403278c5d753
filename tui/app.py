"""The Textual application: one App, one typed wizard state, screens in tui/screens.

The engine (tui/tasks) is UI-free; the progress screen drives it in a thread
worker through a *runner* (``LiveRunner`` here, a fake in tests), the same
``runner.open_session`` / ``connect_and_plan`` / ``make_engine`` the headless
``apply`` uses.  Heavy imports (paramiko, keystoneauth1, glanceclient) happen
only when a connection or a run starts, so the first paint stays fast.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any, Callable, Iterable

from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.screen import Screen

from .tasks import profile as pr
from .wizard import WIZARD, WizardState

if TYPE_CHECKING:
    from .tasks.engine import Engine, Plan, RunState
    from .tasks.secrets import Secrets


def _stopped_at(st) -> str:
    """Where a run stopped: the steps cut off mid-way (with several hosts, one per host that
    was at work; the controller's first), else the first step not done."""
    from .tasks.engine import Status

    cut = sorted((s for s in st.steps if st.status(s) == Status.RUNNING), key=lambda s: ":" in s)
    if cut:
        return cut[0] if len(cut) == 1 else ", ".join(cut[:-1]) + " and " + cut[-1]
    return next((s for s in st.steps
                 if not st.status(s).finished_ok and st.status(s) != Status.SKIPPED), "")


class LiveRunner:
    """The real engine behind the progress screen (tests inject a fake with this shape)."""

    def __init__(self, profile: pr.Profile, secrets: "Secrets"):
        self.profile, self.secrets = profile, secrets
        self.session = None

    def connect(self, confirm_host_key: Callable[[str, str, str], bool]) -> "Plan":
        from .tasks import runner

        self.close()
        self.session = runner.open_session(self.profile, confirm_host_key=confirm_host_key,
                                           secrets=self.secrets)
        return runner.connect_and_plan(self.session)

    def make_engine(self, listeners: list, decide: Callable) -> "Engine":
        from .tasks import runner

        return runner.make_engine(self.session, listeners=listeners, decide=decide)

    @property
    def state(self) -> "RunState | None":
        return self.session.state if self.session is not None else None

    @property
    def log_path(self):
        return self.session.log_path if self.session is not None else None

    def close(self) -> None:
        if self.session is not None:
            try:
                self.session.close()
            except Exception:
                pass
            # keep state and log_path readable for the summary
            self.session.transcript = None


def default_transport_factory(*args, **kwargs):
    from .tasks.transport import Transport

    return Transport(*args, **kwargs)


class StackApp(App):
    """stack-tui: install the OpenStack control plane over SSH."""

    TITLE = "stack-tui"
    CSS_PATH = "assets/app.tcss"
    ENABLE_COMMAND_PALETTE = True
    VERTICAL_BREAKPOINTS = [(0, "-short"), (28, "-tall")]
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (90, "-wide")]
    BINDINGS = [
        Binding("ctrl+s", "save_profile", "Save", tooltip="Save the session as a profile",
                priority=True),
        Binding("ctrl+q", "quit", "Quit", priority=True),
    ]

    def __init__(
        self,
        profile: str | pr.Profile | None = None,
        *,
        runner_factory: Callable[[pr.Profile, "Secrets"], Any] | None = None,
        transport_factory: Callable[..., Any] | None = None,
        clock: Callable[[], float] | None = None,
        blink: bool = True,
        animations: bool = True,
    ):
        super().__init__()
        self.initial_profile = profile
        self.runner_factory = runner_factory or LiveRunner
        self.transport_factory = transport_factory or default_transport_factory
        self.clock = clock or time.monotonic
        self.blink = blink
        if not animations:
            self.animation_level = "none"
        self.state: WizardState | None = None
        self.closing = threading.Event()
        self._generation = 0            # wizard screens of the current session
        self._stale: list[str] = []     # installed screens of earlier sessions

    # -- start -----------------------------------------------------------------
    async def on_mount(self) -> None:
        from .screens.start import StartScreen

        # Wait until Start is mounted: switching it away while it is still composing leaves
        # the next screen half-built (seen on a loaded 2-core CI machine).
        await self.push_screen(StartScreen())
        if self.initial_profile is not None:
            self.open_profile(self.initial_profile)

    def on_unmount(self) -> None:
        self.closing.set()

    # -- wizard navigation -----------------------------------------------------
    def _key(self, name: str) -> str:
        return f"{name}-{self._generation}"

    def wizard_screen(self, name: str) -> Screen:
        """The session's screen ``name`` (host, credentials, services, review), made once
        and kept, so going back and forth keeps what was typed."""
        from .screens.credentials import CredentialsScreen
        from .screens.host import HostScreen
        from .screens.review import ReviewScreen
        from .screens.services import ServicesScreen

        key = self._key(name)
        if not self.is_screen_installed(key):
            cls = {"host": HostScreen, "credentials": CredentialsScreen,
                   "services": ServicesScreen, "review": ReviewScreen}[name]
            self.install_screen(cls(), key)
        return self.get_screen(key)

    def resume_profile(self, prof: pr.Profile) -> bool:
        """Load ``prof`` as the session and resume its unfinished run."""
        try:
            self.state = WizardState.for_profile(prof)
        except pr.ProfileError as exc:
            self.notify(str(exc), severity="error")
            return False
        self._reset_wizard()
        self.start_run(resume=True)
        return True

    def _reset_wizard(self) -> None:
        """A new session (new or loaded profile): fresh screens from the new state."""
        self._stale += [self._key(n) for n in WIZARD if self.is_screen_installed(self._key(n))]
        self._generation += 1
        self._prune_stale()

    def _prune_stale(self) -> None:
        keep = []
        for key in self._stale:
            if not self.is_screen_installed(key):
                continue
            if self.get_screen(key) in self.screen_stack:
                keep.append(key)  # still shown: removed once it is switched away
            else:
                self.uninstall_screen(key)
        self._stale = keep

    def store_all(self) -> list[str]:
        """Copy what every wizard screen shows into the state; the problems found."""
        errors: list[str] = []
        for name in WIZARD:
            if self.is_screen_installed(self._key(name)):
                scr = self.get_screen(self._key(name))
                store = getattr(scr, "store", None)
                if store is not None and scr.is_mounted:
                    errors += store()
        return errors

    def go(self, name: str) -> None:
        """Switch to a wizard screen (values typed anywhere are kept)."""
        if self.state is None:
            return
        self.store_all()
        self.switch_screen(self.wizard_screen(name))
        if self._stale:
            self.set_timer(0.5, self._prune_stale)

    def new_session(self) -> None:
        existing = set(pr.list_profiles())
        n = 1
        while f"stack-{n}" in existing:
            n += 1
        prof = pr.Profile(name=f"stack-{n}")
        self.state = WizardState(prof)
        self._reset_wizard()
        self.go("host")

    def open_profile(self, which: str | pr.Profile) -> bool:
        """Load a profile (name, path or object); offer to resume an unfinished run."""
        try:
            prof = which if isinstance(which, pr.Profile) else pr.load(which)
            state = WizardState.for_profile(prof)
        except pr.ProfileError as exc:
            self.notify(str(exc), title="Cannot use the profile", severity="error", timeout=10)
            return False
        self.state = state
        self._reset_wizard()
        unfinished = self.unfinished_run(prof)
        if unfinished is None:
            self.go("host")
            return True
        from .screens.modals import ResumeModal

        done, total, stopped = unfinished

        def answer(choice) -> None:
            if choice == "resume":
                self.start_run(resume=True)
            elif choice == "review":
                self.go("review")
            else:
                self.go("host")

        self.push_screen(ResumeModal(prof.name, prof.host.address, done, total, stopped), answer)
        return True

    @staticmethod
    def unfinished_run(prof: pr.Profile) -> tuple[int, int, str] | None:
        """(steps done, steps recorded, where it stopped) when the saved run is unfinished."""
        from .tasks import engine

        if not prof.host.address:
            return None
        try:
            st = engine.RunState.load(engine.state_path(prof.name, prof.host.address))
        except engine.StateError:
            return None
        if not st.unfinished():
            return None
        done = sum(1 for s in st.steps if st.status(s).finished_ok)
        return done, len(st.steps), _stopped_at(st)

    # -- running -------------------------------------------------------------
    def start_run(self, *, resume: bool = False) -> None:
        from .screens.modals import MessageModal
        from .screens.progress import ProgressScreen

        if self.state is None:
            return
        self.store_all()
        prof = self.state.profile
        errors = pr.validation_errors(prof)
        if errors:
            key, reason = errors[0]
            self.push_screen(MessageModal("Cannot start yet", f"{key}: {reason}",
                                          hint="fix it on the screen that holds it"))
            return
        try:
            # The run is saved as a profile first: its state and a later resume need it.
            if prof.path is not None and prof.path.stem != prof.name:
                prof.path = None
            secrets = self.state.build_secrets()
            pr.save(prof)
            secrets.file = prof.secrets_file
            secrets.save()
            self.show_secrets()
        except (OSError, ValueError) as exc:
            self.push_screen(MessageModal("Cannot start yet", f"Secrets: {exc}"))
            return
        runner = self.runner_factory(prof, secrets)
        self.switch_screen(ProgressScreen(runner, resumed=resume))

    def show_secrets(self) -> None:
        """Put the state's secrets (some just generated) back into the Credentials fields,
        so a later save or run keeps them instead of the fields' old, empty values."""
        if self.is_screen_installed(self._key("credentials")):
            scr = self.get_screen(self._key("credentials"))
            if scr.is_mounted:
                scr.load_values()

    def running(self) -> bool:
        """Is an install under way (a progress screen connecting or running)?"""
        return any(getattr(s, "installing", False) for s in self.screen_stack)

    # -- actions -----------------------------------------------------------------
    def action_save_profile(self) -> None:
        if self.state is None:
            self.notify("Nothing to save yet: start a new session or load a profile.",
                        severity="warning")
            return
        self.store_all()
        prof = self.state.profile
        if not pr.NAME_RE.match(prof.name or ""):
            self.notify(f"'{prof.name}' is not a valid profile name (letters, digits, . _ -).",
                        title="Not saved", severity="error")
            return
        if prof.path is not None and prof.path.stem != prof.name:
            prof.path = None  # renamed: a new file in the profiles directory
        try:
            secrets = self.state.build_secrets(generate=False)
            path = pr.save(prof)
            secrets.file = prof.secrets_file
            secrets.save()
        except pr.ProfileError as exc:
            self.notify(exc.reason, title=f"Not saved: {exc.key or 'profile'}", severity="error",
                        timeout=8)
            return
        except OSError as exc:
            self.notify(str(exc), title="Not saved", severity="error")
            return
        where = "in the profile" if self.state.save_secrets else f"in {prof.secrets_file.name} (0600)"
        self.notify(f"{path}\nSecrets {where}.", title=f"Saved profile {prof.name}")

    async def action_quit(self) -> None:
        prog = next((s for s in self.screen_stack if getattr(s, "installing", False)), None)
        if prog is None:
            self.exit()
            return
        from .screens.modals import ConfirmModal

        async def answer(yes: bool) -> None:
            if yes:
                await prog.stop_for_quit()
                self.exit()

        self.push_screen(ConfirmModal(
            "Quit while installing?",
            "The running step is cancelled and the run's state is saved. The next start "
            "offers to resume where it stopped.", yes="Quit", no="Keep installing",
            danger=True), answer)

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield SystemCommand("Save profile", "Save this session as a profile (ctrl+s)",
                            self.action_save_profile)
        yield SystemCommand("New session", "Start over with an empty profile", self.new_session)
        from .screens.start import StartScreen

        if not self.running():
            yield SystemCommand("Profiles", "The start screen: load, duplicate, delete profiles",
                                lambda: self.switch_screen(StartScreen()))
        if self.state is not None and not self.running():
            for name in WIZARD:
                yield SystemCommand(f"Go to {name.title()}", f"The {name} screen",
                                    lambda n=name: self.go(n))
            yield SystemCommand("Test connection", "Connect and show the host's facts",
                                self._palette_test)
            yield SystemCommand("Generate all secrets", "Fill every empty password",
                                self._palette_generate)
            yield SystemCommand("Start install", "Run the plan on the host",
                                lambda: self.start_run())
        yield SystemCommand("Quit", "Leave stack-tui (asks first while installing)",
                            self.action_quit)
        yield from super().get_system_commands(screen)

    def _palette_test(self) -> None:
        self.go("host")
        self.call_after_refresh(self.wizard_screen("host").action_test)

    def _palette_generate(self) -> None:
        self.go("credentials")
        self.call_after_refresh(self.wizard_screen("credentials").action_generate_all)


def make_app(profile: str | pr.Profile | None = None, **kwargs) -> StackApp:
    return StackApp(profile, **kwargs)


def run_app(profile: str | None = None) -> int:
    """Entry point for `stack-tui` (tui/cli.py)."""
    if profile is not None:
        try:
            pr.load(profile)
        except pr.ProfileError as exc:
            import sys

            print(f"stack-tui: cannot use profile: {exc}", file=sys.stderr)
            return 2
    app = make_app(profile)
    app.run()
    return app.return_code or 0
