"""One SSH connection per run (paramiko), used for every remote step.

* Commands stream stdout/stderr lines, return the exit status, honour a
  time limit and a cancel event; a stopped command is ended on the host.
* Non-root users get ``sudo``: ``sudo -n`` when it needs no password, else
  ``sudo -k -S`` with the password as the first line of stdin.
* Secrets reach remote commands only through stdin: the wrapper reads them
  with the shell builtin ``read`` into exported variables, so they are never
  in any process's argv.
* Files are written atomically (temp file + rename) with mode and owner;
  uploads go through a private directory.
* Local port forwards go through the same connection and survive reconnects.
* Host keys are checked against our known_hosts (and the user's, read-only);
  unknown keys need the caller's consent, changed keys are refused.

The interface is ``RemoteHost`` (interface.py); ``Transport`` is its paramiko
implementation, split by concern: connect.py (connection, host-key policy),
commands.py (running a command), files.py, forwards.py, errors.py.
"""

from __future__ import annotations

import logging

from .commands import Result
from .errors import (
    AuthError, CommandCancelled, CommandFailed, CommandTimeout, ConnectError, ConnectionLost,
    HostKeyChanged, SudoError, TransportError, UnknownHostKey, command_name, timed_out,
)
from .interface import RemoteHost
from .session import Transport

# paramiko logs its own tracebacks (e.g. "Error reading SSH protocol banner") through
# logging; with no handler configured, logging.lastResort printed them to stderr,
# unredacted, next to (or across the TUI screen instead of) our plain messages.
logging.getLogger("paramiko").addHandler(logging.NullHandler())

__all__ = [
    "AuthError", "CommandCancelled", "CommandFailed", "CommandTimeout", "ConnectError",
    "ConnectionLost", "HostKeyChanged", "RemoteHost", "Result", "SudoError", "Transport",
    "TransportError", "UnknownHostKey", "command_name", "timed_out",
]
