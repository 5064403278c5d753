"""Package installation progress from apt's output: downloaded / unpacked / set up.

The fixtures are real apt-get output: tests/data/apt-install-debian13.txt is the whole
prepare.packages output of an install on a Debian 13 sandbox (the .debs were cached, so
no downloads); apt-download-debian13.txt is the download part of another one."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from tui.tasks import engine as e
from tui.tasks.platforms import PLATFORMS
from tui.tasks.redact import Redactor
from tui.tasks.services import prepare
from tui.tasks.services.prepare import AptProgress

DATA = Path(__file__).parent / "data"


def lines(name: str) -> list[str]:
    return (DATA / name).read_text().splitlines()


class Recorder:
    def __init__(self):
        self.events: list[tuple[int, int, str]] = []

    def progress(self, done, total, text=""):
        self.events.append((done, total, text))


def test_a_whole_install_counts_every_package_unpacked_and_set_up():
    rec = Recorder()
    p = AptProgress(rec)
    for line in lines("apt-install-debian13.txt"):
        p.feed(line)
    assert p.total == 377 and p.counts[1:] == [377, 377]
    # Cached .debs: no 'Get:' lines; downloading counts as done once dpkg unpacks.
    assert rec.events[0] == (378, 1131, "unpacked 1/377: perl-modules-5.40")
    assert rec.events[-1] == (1131, 1131, "set up 377/377: glance-api")
    dones = [d for d, _, _ in rec.events]
    assert dones == sorted(dones), "progress never goes back"
    assert len(rec.events) == 2 * 377, "one per package unpacked and per package set up"
    assert ("set up 1/377: libmpfr6") in [t for _, _, t in rec.events]


def test_downloads_count_by_apts_own_numbering():
    rec = Recorder()
    p = AptProgress(rec)
    for line in lines("apt-download-debian13.txt"):
        p.feed(line)
    texts = [t for _, _, t in rec.events]
    assert texts[0] == "downloaded 1/377: perl-modules-5.40"
    assert "downloaded 377/377: rabbitmq-server" in texts
    assert rec.events[-1] == (379, 1131, "unpacked 2/377: libgdbm6t64")


def test_lines_before_the_summary_or_unrelated_lines_count_nothing():
    rec = Recorder()
    p = AptProgress(rec)
    assert not p.feed("Setting up foo (1.0) ...")  # no total yet: not apt-get install's
    assert not p.feed("0 upgraded, 2 newly installed, 1 reinstalled, 0 to remove and 3 not "
                      "upgraded.")
    assert p.total == 3
    assert not p.feed("(Reading database ... 45%")
    assert not p.feed("Processing triggers for man-db (2.13.1-1) ...")
    assert p.feed("Unpacking libfoo1:amd64 (1.0-1) ...")
    assert p.text == "unpacked 1/3: libfoo1"
    assert rec.events == [(4, 9, "unpacked 1/3: libfoo1")]


class ReplayTransport:
    """Answers every command with the lines of a real apt run, through on_line."""

    def __init__(self, out: list[str]):
        self.out, self.commands = out, []

    def run(self, command, *, on_line=None, **kw):
        self.commands.append(command)
        out = self.out if "apt-get install" in command else []
        for line in out:
            if on_line:
                on_line(line)
        return SimpleNamespace(status=0, stdout="\n".join(out), stderr="", lines=out)


def test_the_install_command_reports_progress_through_the_engine(tmp_path, monkeypatch):
    monkeypatch.setenv("STACK_TUI_LOCK_WAIT", "0")
    transport = ReplayTransport(lines("apt-install-debian13.txt"))
    plat = PLATFORMS["debian-13"]
    state = e.RunState(tmp_path / "s.json")
    ctx = e.Context(transport, SimpleNamespace(name="t"), {}, Redactor(), state)
    step = e.Step("prepare.packages", "Install the packages",
                  run=lambda c: prepare._apt(c, plat.install_cmd(["keystone", "glance"]),
                                             watch=AptProgress(c).feed))
    seen: list = []
    e.Engine(e.Plan([e.Phase("prepare", "Prepare", [step])]), ctx,
             listeners=[seen.append]).run()
    progress = [ev for ev in seen if isinstance(ev, e.StepProgress)]
    outputs = [ev.line for ev in seen if isinstance(ev, e.StepOutput)]
    assert progress and progress[-1] == e.StepProgress("prepare.packages", 1131, 1131,
                                                       "set up 377/377: glance-api")
    assert "Setting up glance-api (2:30.0.0-3+deb13u5) ..." in outputs, "the log pane too"
