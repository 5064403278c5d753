"""What a service declares about itself (a leaf module: no project imports).

Each service module ends with ``SERVICE = Service(...)``; the registry
(``tui/tasks/services/__init__.py``) lists them in install order, and profile,
secrets, preflight, the plan and the screens derive from it.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Generic, Mapping, TypeVar, Union

T = TypeVar("T")

# plain words, or a function of the whole error text that words them
Text = Union[str, Callable[[str], str]]


@dataclass(frozen=True, eq=False)
class PerPlatform(Generic[T]):
    """A service's fact that differs by platform: the family's default ("deb" or "rpm"), then
    the overrides keyed by distribution ("ubuntu": the platform id before "-") and then by
    platform id ("debian-12"), the more specific winning.  A dataclass value's override is a
    dict of the fields it changes; any other value's override replaces it.  The one lookup
    every service module uses (``LAYOUT(plat)``), so a new service needs no platforms.py edit."""
    deb: T
    rpm: T
    overrides: Mapping[str, Any] = field(default_factory=dict)

    def __call__(self, plat) -> T:
        value = self.deb if plat.family == "deb" else self.rpm
        for key in dict.fromkeys((plat.id.split("-")[0], plat.id)):
            if key in self.overrides:
                change = self.overrides[key]
                value = (dataclasses.replace(value, **change)
                         if dataclasses.is_dataclass(value) else change)
        return value


NO_PACKAGES: PerPlatform[tuple[str, ...]] = PerPlatform((), ())


@dataclass(frozen=True)
class Rule:
    """A known failure (tui/tasks/explain.py): its pattern in the error text, the plain
    words for it and the next thing to try."""
    name: str
    pattern: re.Pattern
    kind: str            # "transient" (retried automatically) or "error"
    why: Text            # plain words; a callable gets the whole error text
    hint: Text
    logs: tuple[str, ...] = ()   # explain's log keys: what to show below the error


@dataclass(frozen=True)
class Secret:
    name: str                  # key in the secrets file, STACK_TUI_<NAME> in the environment
    description: str           # what it is, for screens and messages
    kind: str = ""             # "keystone" (a Keystone user's: bcrypt, 72 bytes), "database"
    only_with_demo: bool = False  # needed only when the profile creates the demo project


@dataclass(frozen=True)
class Port:
    port: int
    holders: frozenset[str]    # process names that hold it once the service runs
    label: str


@dataclass(frozen=True)
class SummaryLine:
    """One thing the end of a run tells the user about a service (never a secret): on the
    Summary screen ``label`` beside ``text`` (in the Endpoints table when ``endpoint``, else
    under "Your cloud"); `stack-tui apply` prints ``cli``, by default "label: text"."""
    label: str                 # "Dashboard", "Compute"
    text: str
    cli: str = ""
    endpoint: bool = False

    def line(self) -> str:
        return self.cli or f"{self.label}: {self.text}"


def no_summary(profile, facts) -> tuple[SummaryLine, ...]:
    return ()


@dataclass(frozen=True)
class Service:
    id: str                    # name in [openstack] services
    title: str                 # "Keystone"
    role: str                  # "identity"
    phases: Callable           # (profile, plat) -> list[Phase]
    requires: tuple[str, ...] = ()      # services it needs to be useful
    secrets: tuple[Secret, ...] = ()
    ports: tuple[Port, ...] = ()
    database: str | None = None         # MariaDB database and user; password <db>_db_password
    default: bool = True                # selected in a new profile (compute services are opt-in)
    # For the support bundle, per platform: config files, systemd units, log files.
    configs: Callable = lambda plat: ()
    units: Callable = lambda plat: ()
    logs: Callable = lambda plat: ()
    # Its known failures, explained (explain.rules_for puts them in the plan's rules).
    rules: tuple[Rule, ...] = ()
    # Its packages per platform, installed in the one transaction (services.packages_for).
    packages: PerPlatform = NO_PACKAGES
    # What the end of a run tells the user: (profile, the run's facts) -> its SummaryLines,
    # shown by `stack-tui apply` and the Summary screen (finish.summary_lines gathers them).
    summary: Callable = no_summary
