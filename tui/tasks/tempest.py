"""OpenStack's own integration suite (Tempest) against a cloud stack-tui installed.

UI-free.  Tempest runs from this machine in a venv of its own (pinned version,
made once under the cache dir), against the cloud's public endpoints, with
dynamic credentials: it creates and deletes its own projects and users with the
admin account.  The config is generated from the profile and its secrets (no
hand-kept file) into the run's directory, 0600.  Tests that need the internet
are excluded by name, each with its reason (``EXCLUDES``).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from . import inifile, paths, platforms
from .errors import Failure
from .services import glance
from .services.common import url_host

TEMPEST_VERSION = "47.0.0"
# The API tests of the services stack-tui installs (compute/network join them with Nova/Neutron).
DEFAULT_REGEX = r"^tempest\.api\.(identity|image)\."
CONCURRENCY = 2
RUN_TIMEOUT = 3600

# (test id regex, why it cannot pass here).  Nothing is excluded for being broken.
EXCLUDES: tuple[tuple[str, str], ...] = (
    (r"test_image_web_download_import",
     "web-download makes Glance fetch [image] http_image from the internet "
     "(a CirrOS URL); test hosts reach no internet"),
    (r"test_image_copy_image_import",
     "copy-image copies between two Glance stores; stack-tui configures one (fs)"),
    (r"test_register_remote_image|test_image_glance_direct_import_with_multiple_stores",
     "needs a remote image URL or several stores"),
)

Log = Callable[[str], None]


class TempestError(Failure, RuntimeError):
    """Tempest could not be set up or run; the message says what and what to try."""


@dataclass
class TempestResult:
    passed: int = 0
    failed: int = 0
    skipped: int = 0
    failures: list[str] = field(default_factory=list)
    duration: float = 0.0
    workdir: Path | None = None
    report: Path | None = None   # subunit stream of the run
    html: Path | None = None
    output: Path | None = None   # the console output of `tempest run`

    @property
    def ok(self) -> bool:
        return self.failed == 0 and self.passed > 0

    def summary(self) -> str:
        return (f"Tempest: {self.passed} passed, {self.failed} failed, {self.skipped} skipped "
                f"in {self.duration:.0f} s")


def venv_dir() -> Path:
    return paths.cache_dir() / f"tempest-{TEMPEST_VERSION}"


def ensure_venv(log: Log = print) -> Path:
    """The pinned Tempest in a venv of its own (made once; later runs reuse it)."""
    venv = venv_dir()
    tempest = venv / "bin" / "tempest"
    stamp = venv / ".stack-tui-ok"
    if stamp.exists() and tempest.exists():
        return venv
    base = "/usr/bin/python3" if Path("/usr/bin/python3").exists() else sys.executable
    log(f"installing Tempest {TEMPEST_VERSION} into {venv} (once; about a minute)")
    shutil.rmtree(venv, ignore_errors=True)
    for argv in ([base, "-m", "venv", str(venv)],
                 [str(venv / "bin" / "python"), "-m", "pip", "install", "-q",
                  "--disable-pip-version-check", f"tempest=={TEMPEST_VERSION}", "os-testr"]):
        try:
            r = subprocess.run(argv, capture_output=True, text=True, timeout=900)
        except subprocess.TimeoutExpired as exc:
            raise TempestError(f"Installing Tempest took more than 15 minutes ({argv[2]}); "
                               "check the connection to PyPI and retry.") from exc
        if r.returncode != 0:
            tail = "\n".join((r.stdout + r.stderr).strip().splitlines()[-8:])
            hint = (" (python3-venv is missing: apt-get install python3-venv)"
                    if "ensurepip" in r.stdout + r.stderr else "")
            raise TempestError(f"Could not install Tempest {TEMPEST_VERSION}{hint}:\n{tail}")
    stamp.write_text(TEMPEST_VERSION + "\n")
    return venv



def config_text(profile, admin_password: str, platform_id: str, workdir: Path) -> str:
    """tempest.conf for the profile's cloud: identity and image, dynamic credentials."""
    host = url_host(profile.endpoint_host)
    # Glance 30 (Epoxy) checks uploaded content against disk_format; Zed's accepts anything.
    enforce = "true" if glance.layout(platforms.by_id(platform_id)).checks_disk_format else "false"
    services = set(profile.openstack.services)
    pw = inifile.oslo_value(admin_password)
    return f"""# Written by stack-tui from profile {profile.name}: regenerated on every run
[DEFAULT]
log_file = {workdir / 'tempest.log'}
use_stderr = false

[auth]
admin_username = admin
admin_password = {pw}
admin_project_name = admin
admin_domain_name = Default
use_dynamic_credentials = true
create_isolated_networks = false
tempest_roles = member

[identity]
uri_v3 = http://{host}:5000/v3
auth_version = v3
region = {profile.openstack.region}
disable_ssl_certificate_validation = true

[identity-feature-enabled]
application_credentials = true
access_rules = true
project_tags = true
security_compliance = false

[image]
region = {profile.openstack.region}
http_image = http://127.0.0.1:9/unused-image-url

[image-feature-enabled]
api_v2 = true
import_image = true
image_format_enforcement = {enforce}

[service_available]
glance = {'true' if 'glance' in services else 'false'}
nova = false
neutron = false
cinder = false
swift = false
placement = false
heat = false
horizon = false

[validation]
run_validation = false

[oslo_concurrency]
lock_path = {workdir / 'lock'}
"""


_LINE = re.compile(r"^\{\d+\} (?P<id>\S+?)(?:\[[^\]]*\])? \[[^\]]*\] \.\.\. "
                   r"(?P<status>ok|FAILED|SKIPPED)", re.I)
_TOTALS = re.compile(r"^ - (Passed|Failed|Skipped): (\d+)")


def parse_line(line: str) -> tuple[str, str] | None:
    """('tempest.api...test_x', 'ok'|'failed'|'skipped') for a result line of `tempest run`."""
    m = _LINE.match(line.strip())
    return (m.group("id"), m.group("status").lower()) if m else None


def run(profile, admin_password: str, platform_id: str, out_dir: Path, *,
        regex: str = DEFAULT_REGEX, on_result: Callable[[str, str, int], None] | None = None,
        log: Log = print, redact: Callable[[str], str] = lambda s: s,
        timeout: float = RUN_TIMEOUT) -> TempestResult:
    """Run the suite; ``on_result(test_id, status, done_count)`` after every test."""
    venv = ensure_venv(log)
    tempest = venv / "bin" / "tempest"
    work = out_dir
    conf, excl = _workspace(tempest, work, config_text(profile, admin_password, platform_id, work),
                            redact)
    argv = [str(tempest), "run", "--regex", regex, "--exclude-list", str(excl),
            "--concurrency", str(CONCURRENCY)]
    log(f"running Tempest {TEMPEST_VERSION}: {regex} (concurrency {CONCURRENCY}; "
        f"{len(EXCLUDES)} internet/multi-store exclusions)")
    res = TempestResult(workdir=work, output=work / "tempest-run.txt")
    t0 = time.monotonic()
    env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
    env["TEMPEST_CONFIG_DIR"] = str(conf.parent)
    returncode, done = _stream(argv, work, env, res, on_result, redact, t0 + timeout, timeout)
    res.duration = time.monotonic() - t0
    _apply_totals(res)
    if returncode not in (0, None) and res.failed == 0:
        res.failed = 1  # tempest said failure (an import error, a setUpClass error...)
        res.failures.append(f"tempest run exited {returncode}: see {res.output}")
    if done == 0:
        tail = "\n".join(res.output.read_text(encoding="utf-8").splitlines()[-15:])
        raise TempestError(f"Tempest ran no test (exit {returncode}). Last lines:\n{tail}")
    _reports(venv, work, res)
    return res


def _workspace(tempest: Path, work: Path, conf_text: str,
               redact: Callable[[str], str]) -> tuple[Path, Path]:
    """`tempest init` once, then (every run) tempest.conf (0600) and the exclude list."""
    work.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(work, 0o700)
    if not (work / ".stestr.conf").exists():
        r = subprocess.run([str(tempest), "init", str(work)], capture_output=True, text=True,
                           timeout=120)
        if r.returncode != 0 and not (work / ".stestr.conf").exists():
            raise TempestError("tempest init failed:\n" + redact(r.stderr[-1500:]))
    (work / "lock").mkdir(exist_ok=True)
    conf = work / "etc" / "tempest.conf"
    conf.parent.mkdir(exist_ok=True)
    from .fsutil import atomic_write

    atomic_write(conf, conf_text.encode(), mode=0o600)
    excl = work / "exclude-list.txt"
    excl.write_text("".join(f"# {why}\n{rx}\n" for rx, why in EXCLUDES))
    return conf, excl


def _count(res: TempestResult, tid: str, status: str) -> None:
    if status == "ok":
        res.passed += 1
    elif status == "failed":
        res.failed += 1
        res.failures.append(tid)
    else:
        res.skipped += 1


def _stream(argv: list[str], work: Path, env: dict, res: TempestResult,
            on_result: Callable[[str, str, int], None] | None, redact: Callable[[str], str],
            deadline: float, timeout: float) -> tuple[int | None, int]:
    """Run tempest, copy its (redacted) output to res.output, count results as they come."""
    done = 0
    with open(res.output, "w", encoding="utf-8") as out:
        proc = subprocess.Popen(argv, cwd=work, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, text=True, errors="replace", env=env,
                                start_new_session=True)
        assert proc.stdout is not None
        try:
            for line in proc.stdout:
                line = redact(line.rstrip("\n"))
                out.write(line + "\n")
                hit = parse_line(line)
                if hit:
                    done += 1
                    _count(res, *hit)
                    if on_result:
                        on_result(hit[0], hit[1], done)
                if time.monotonic() > deadline:
                    raise TempestError(f"Tempest ran longer than {timeout:.0f} s; stopped.")
            proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, 15)
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, 9)
                    proc.wait()
    return proc.returncode, done


def _apply_totals(res: TempestResult) -> None:
    """stestr's own totals are the authority (a skipped class counts each of its tests)."""
    totals = {}
    for ln in res.output.read_text(encoding="utf-8").splitlines():
        m = _TOTALS.match(ln)
        if m:
            totals[m.group(1)] = int(m.group(2))
    if totals:
        res.passed = totals.get("Passed", res.passed)
        res.failed = totals.get("Failed", res.failed)
        res.skipped = totals.get("Skipped", res.skipped)


def _reports(venv: Path, work: Path, res: TempestResult) -> None:
    """The full report: stestr's subunit stream of this run, and HTML when subunit2html is there."""
    stestr = venv / "bin" / "stestr"
    sub = subprocess.run([str(stestr), "last", "--subunit"], cwd=work, capture_output=True,
                         timeout=300)
    if sub.returncode == 0 and sub.stdout:
        res.report = work / "tempest.subunit"
        res.report.write_bytes(sub.stdout)
        s2h = venv / "bin" / "subunit2html"
        if s2h.exists():
            html = work / "tempest.html"
            h = subprocess.run([str(s2h), str(res.report), str(html)], capture_output=True,
                               timeout=300)
            if h.returncode == 0 and html.exists():
                res.html = html


def run_for_profile(profile, *, regex: str = DEFAULT_REGEX,
                    on_result: Callable[[str, str, int], None] | None = None,
                    log: Log = print) -> TempestResult:
    """Tempest against the cloud of a profile: its secrets, its run state's platform; the
    workspace and reports land next to the run logs (``<log dir>/<profile>-tempest-<time>``)."""
    from .engine import RunState, state_path
    from .profile import load_secrets

    secrets = load_secrets(profile)
    admin = secrets.get("admin_password")
    if not admin:
        raise TempestError(f"Profile {profile.name} has no admin password yet: install first "
                           f"(stack-tui apply {profile.name}).")
    redact = secrets.redactor()
    state = RunState.load(state_path(profile.name, profile.host.address), redact)
    platform_id = state.facts.get("platform")
    if platform_id and platform_id not in platforms.PLATFORMS:
        raise TempestError(f"The recorded install of profile {profile.name} names platform "
                           f"{platform_id!r}, which this stack-tui does not know: run "
                           f"stack-tui apply {profile.name} again.")
    if not platform_id:
        raise TempestError(f"No finished install of profile {profile.name} is recorded on this "
                           f"machine: run stack-tui apply {profile.name} first.")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = paths.log_dir() / f"{profile.name}-tempest-{stamp}"
    return run(profile, admin, platform_id, out, regex=regex, on_result=on_result, log=log,
               redact=redact)
