"""What a step may ask of the host connection: the whole public interface.

``Transport`` (session.py) is the SSH implementation; test stand-ins implement
the part they need.  Nothing outside the transport reads its private state.
"""

from __future__ import annotations

import threading
from typing import Callable, Protocol


class RemoteHost(Protocol):
    address: str
    port: int
    user: str

    @property
    def sudo_mode(self) -> str | None:
        """"root", "nopasswd", "password" (how commands get root), None before connect."""

    @property
    def connected(self) -> bool: ...

    def connect(self) -> "RemoteHost": ...

    def reconnect(self, deadline: float = 60.0) -> None: ...

    def run(self, command: str, *, stdin: str | bytes | None = None,
            secrets: dict[str, str] | None = None, sudo: bool = True,
            timeout: float | None = 600, on_line: Callable[[str], None] | None = None,
            check: bool = True, cancel: threading.Event | None = None):
        """Run a shell command as root; the result has status, stdout, lines, raw."""

    def read(self, path: str) -> str | None:
        """The text of a file, None when it does not exist."""

    def read_bytes(self, path: str, timeout: float = 60) -> bytes | None: ...

    def write_file(self, path: str, content: str | bytes, *, mode: int = 0o644,
                   owner: str = "root", group: str | None = None) -> None: ...

    def upload(self, local: str, remote: str, *, mode: int = 0o644, owner: str = "root",
               group: str | None = None,
               progress: Callable[[int, int], None] | None = None) -> None: ...

    def download(self, remote: str, local: str) -> None: ...

    def forward(self, remote_host: str, remote_port: int) -> int:
        """A local port on 127.0.0.1 tunnelled to remote_host:remote_port."""

    def close(self) -> None: ...
