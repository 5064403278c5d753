"""Waiting for another package manager (apt, dpkg, unattended-upgrades) to finish.

Used by the preflight's lock check and by every package command of the prepare phase.
"""

from __future__ import annotations

import os

from .engine import Context, Notice


# Package-manager locks, and who holds them, without fuser (psmisc is not in a
# minimal Debian): /proc/locks lists every POSIX lock with the holder's pid and
# the locked file as MAJOR:MINOR:INODE.  apt and dpkg take POSIX (fcntl) locks.
LOCK_FILES = ("/var/lib/dpkg/lock-frontend", "/var/lib/dpkg/lock", "/var/lib/apt/lists/lock",
              "/var/cache/apt/archives/lock")
LOCK_HOLDERS_SH = r"""stk_lock_holders() {
  for f in %s; do
    [ -e "$f" ] || continue
    d=$((0x$(stat -c %%D "$f")))
    id=$(printf '%%02x:%%02x:%%s' $(( (d >> 8) & 0xfff )) $(( (d & 0xff) | ((d >> 12) & 0xfff00) )) "$(stat -c %%i "$f")")
    awk -v id="$id" '$2 == "POSIX" && $6 == id && $5 > 0 {print $5}' /proc/locks
  done | sort -un | while read -r p; do
    printf '%%s (pid %%s)\n' "$(cat /proc/$p/comm 2>/dev/null || echo '?')" "$p"
  done | paste -sd, - | sed 's/,/, /g'
}
""" % " ".join(LOCK_FILES)


def lock_wait_seconds() -> int:
    """How long a step waits for another package manager (STACK_TUI_LOCK_WAIT, default 120)."""
    try:
        return max(0, int(os.environ.get("STACK_TUI_LOCK_WAIT", "120")))
    except ValueError:
        return 120


def lock_wait_sh(wait: int) -> str:
    """Shell that waits up to ``wait`` s for the package-manager locks, counting down.

    Ends with status 75 and a line ``@@LOCKED <holders>`` when still held."""
    every = 1 if wait <= 10 else 10
    return LOCK_HOLDERS_SH + (
        f"w={int(wait)}; i=0\n"
        "while h=$(stk_lock_holders); [ -n \"$h\" ]; do\n"
        "  if [ $i -ge $w ]; then echo \"@@LOCKED $h\"; exit 75; fi\n"
        f"  [ $((i % {every})) = 0 ] && echo \"waiting for $h to release the package manager "
        "lock ($((w - i)) s left)\"\n"
        "  sleep 1; i=$((i + 1))\n"
        "done\n")


def run_lock_wait(ctx: Context, wait: int, then: str = "true", timeout: float = 1800,
                  watch=None):
    """Wait visibly for the locks, then run ``then``; returns (result, holders or "").
    ``watch`` sees each output line too (e.g. to count packages)."""
    def on_line(line: str) -> None:
        if line.startswith("@@LOCKED"):
            return
        ctx.output(line)
        if watch is not None:
            watch(line)
        if line.startswith("waiting for ") and ctx.engine is not None:
            ctx.engine.emit(Notice(ctx.redact(line), ctx.step_id))

    r = ctx.transport.run(lock_wait_sh(wait) + then, timeout=timeout + wait, check=False,
                          on_line=on_line, cancel=ctx.cancel)
    held = next((ln[len("@@LOCKED "):] for ln in r.stdout.splitlines()
                 if ln.startswith("@@LOCKED ")), "")
    return r, (held if r.status == 75 else "")
