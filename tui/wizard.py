"""What the wizard screens edit together: the profile, the secrets and a few UI choices."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .tasks import profile as pr
from .tasks.secrets import GENERATABLE

if TYPE_CHECKING:
    from .screens.hostinfo import HostFacts
    from .tasks.secrets import Secrets


WIZARD = ("host", "credentials", "services", "review")


@dataclass
class WizardState:
    """Everything the screens edit: the profile, the secrets and a few UI choices."""

    profile: pr.Profile
    secrets: dict[str, str] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)   # env / profile / file / user
    save_secrets: bool = False                              # into the profile's [secrets]
    auth: str = "agent"                                     # key / agent / password
    facts: "HostFacts | None" = None                        # from "Test connection"

    @classmethod
    def for_profile(cls, profile: pr.Profile) -> "WizardState":
        secrets = pr.load_secrets(profile)
        st = cls(profile, dict(secrets.values), dict(secrets.sources),
                 save_secrets=bool(profile.inline_secrets))
        if profile.host.key_file:
            st.auth = "key"
        elif secrets.get("ssh_password"):
            st.auth = "password"
        return st

    def set_secret(self, name: str, value: str) -> None:
        if value == self.secrets.get(name, ""):
            return
        if value:
            self.secrets[name] = value
            self.sources[name] = "user"
        else:
            self.secrets.pop(name, None)
            self.sources.pop(name, None)

    def build_secrets(self, *, generate: bool = True) -> "Secrets":
        """The run's Secrets.  Missing ones the run needs are generated (shown on the
        Credentials screen too).  Where they are kept: the profile's [secrets] when
        ``save_secrets``, else the 0600 secrets file; values from the environment nowhere."""
        from .tasks.secrets import Secrets, generate as make

        prof = self.profile
        if generate:
            for name in prof.needed_secrets():
                if name in GENERATABLE and not self.secrets.get(name):
                    self.secrets[name] = make()
                    self.sources[name] = "generated"
        values = {k: v for k, v in self.secrets.items() if v}
        sources = {}
        for k in values:
            src = self.sources.get(k, "user")
            if src == "env":
                sources[k] = "env"
            elif self.save_secrets:
                sources[k] = "profile"
            else:
                sources[k] = "user" if src == "profile" else src
        prof.inline_secrets = {k: v for k, v in values.items() if sources[k] == "profile"}
        return Secrets(values=values, sources=sources, file=prof.secrets_file)
