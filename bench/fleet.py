#!/usr/bin/env python3
"""Benchmark: a controller and two compute hosts against one all-in-one host.

    sudo .venv/bin/python bench/fleet.py                 # Debian 12
    sudo .venv/bin/python bench/fleet.py --release 13

In the same run, on this machine: one fresh sandbox host gets the all-in-one compute cloud
(`stack-tui apply`, every service but Horizon, the test guest as the image, the test boot),
then a fresh group of three (`stack-tui sandbox up --hosts 3`) gets the same services with two
more compute hosts and a test boot on each.  The aim (issue 16): the three hosts take under
1.5 times the one, because their installs overlap.  Both start from the same cached base
rootfs and the same warm apt archive cache.  Wall clock of `stack-tui apply`; the group's
boot is not counted, as the single host's is not.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import cli  # noqa: E402 - bench/bench.py, beside this script


def cli_logged(log: Path | None, *args, timeout=3600):
    """cli(), and each output line with its second since the start into *log* (the timeline
    that shows which host's step was on the critical path)."""
    if log is None:
        return cli(*args, timeout=timeout)
    import subprocess

    t0 = time.monotonic()
    out: list[str] = []
    with subprocess.Popen([sys.executable, "-m", "tui.cli", *args], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, cwd=ROOT,
                          env={**os.environ, "PYTHONUNBUFFERED": "1"}) as p, \
            log.open("w", buffering=1) as f:
        for line in p.stdout:
            out.append(line)
            f.write(f"{time.monotonic() - t0:7.1f}  {line}")
        p.wait(timeout=timeout)
    r = subprocess.CompletedProcess(p.args, p.returncode, "".join(out), "")
    return r, time.monotonic() - t0


def compute_profile(name: str, image_of) -> None:
    from tui.tasks import profile as pr
    from tui.tasks.sandbox import guest

    prof = pr.load(name)
    prof.openstack.services = [s for s in pr.SERVICES if s != "horizon"]
    prof.image.file, prof.image.url = str(guest.guest_image(image_of)), ""
    pr.save(prof)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--release", default="12", choices=("12", "13"))
    ap.add_argument("--timeline", metavar="DIR", type=Path,
                    help="write each apply's output, with seconds since its start, into DIR")
    args = ap.parse_args()
    tl = args.timeline
    if tl:
        tl.mkdir(parents=True, exist_ok=True)
    os.environ["STACK_TUI_HOME"] = tempfile.mkdtemp(prefix="stack-tui-bench-")
    os.environ.setdefault("STACK_TUI_CACHE_DIR", "/var/cache/stack-tui-test")
    from tui.cli import write_sandbox_profile
    from tui.tasks import sandbox

    one, group = f"bone{os.getpid() % 10000}", f"bgrp{os.getpid() % 10000}"
    try:
        a = sandbox.up(one, release=args.release)
        write_sandbox_profile(a, name=one)
        compute_profile(one, a)
        print(f"== one host (Debian {args.release}) ...", flush=True)
        r1, t1 = cli_logged(tl and tl / "one.log", "apply", one, "--yes", "--accept-new-host-key", timeout=3600)
        if r1.returncode != 0:
            print(r1.stdout[-4000:], r1.stderr[-2000:])
            return 1
        sandbox.down(one)
        up, _ = cli("sandbox", "up", "--hosts", "3", "--name", group, "--release", args.release)
        if up.returncode != 0:
            print(up.stdout, up.stderr)
            return 1
        compute_profile(group, sandbox._load_info(f"{group}-1"))
        print("== three hosts (controller + 2 compute) ...", flush=True)
        r3, t3 = cli_logged(tl and tl / "three.log", "apply", group, "--yes", "--accept-new-host-key", timeout=3600)
        if r3.returncode != 0:
            print(r3.stdout[-4000:], r3.stderr[-2000:])
            return 1
        t0 = time.monotonic()
        rr, _ = cli("apply", group, "--yes")
        rerun = time.monotonic() - t0
    finally:
        for gone in (lambda: sandbox.down(one), lambda: cli("sandbox", "down", "--name", group)):
            try:
                gone()
            except Exception as exc:  # noqa: BLE001
                print(f"cleanup: {exc}", file=sys.stderr)
    ok = "OK: 0 done," in rr.stdout
    print(f"\nDebian {args.release}, {os.cpu_count()} cores")
    print(f"  one host, all-in-one:          {t1:7.1f} s")
    print(f"  three hosts (1 ctl + 2 cmp):   {t3:7.1f} s   ratio {t3 / t1:.2f} (aim < 1.5)")
    print(f"  three hosts, re-run:           {rerun:7.1f} s   "
          + ("changed nothing" if ok else "CHANGED SOMETHING"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
