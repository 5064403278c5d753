"""What the command line's modules share: exit codes and how an error is said."""

from __future__ import annotations

import sys

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_CONNECT = 0, 1, 2, 3


def _err(text: str) -> None:
    from .tasks.redact import strip_controls

    print(strip_controls(text), file=sys.stderr)
