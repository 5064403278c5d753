"""The image a new cloud gets: the CirrOS default, "no image", and a default URL this
machine cannot reach (no internet): said plainly, and Skip finishes the install."""

from __future__ import annotations

import socket
import tomllib

import pytest

from tui.tasks import deploy, profile as pr
from tui.tasks.engine import Context, Decision, Engine, Phase, Plan, RunState, Status, Step, StepError
from tui.tasks.redact import Redactor
from tui.tasks.services import finish, glance

BASE = """version = 1
[host]
address = "192.0.2.10"
[openstack]
platform = "debian-13"
"""


@pytest.fixture
def home(monkeypatch, tmp_path):
    monkeypatch.setenv("STACK_TUI_HOME", str(tmp_path / "home"))
    return tmp_path


def load(tmp_path, text: str) -> pr.Profile:
    path = tmp_path / "p.toml"
    path.write_text(text)
    return pr.load(path)


def test_default_url_is_cirros_from_the_cirros_site():
    assert pr.DEFAULT_IMAGE_URL == (
        "https://download.cirros-cloud.net/0.6.3/cirros-0.6.3-x86_64-disk.img")


def test_no_image_table_uploads_the_default_cirros(home, tmp_path):
    prof = load(tmp_path, BASE)
    assert prof.image.upload and prof.image.source() == pr.DEFAULT_IMAGE_URL
    plan = deploy.build_plan(prof)
    step = plan.find("image.upload")
    assert step is not None and pr.DEFAULT_IMAGE_URL in step.detail
    text = deploy.describe_plan(prof)
    assert f"Image: cirros from {pr.DEFAULT_IMAGE_URL}" in text
    assert "Verify: tokens, catalog, image active" in text


def test_a_file_or_url_wins_over_the_default(home, tmp_path):
    img = tmp_path / "my.img"
    img.write_bytes(b"x")
    prof = load(tmp_path, BASE + f'[image]\nfile = "{img}"\n')
    assert prof.image.source() == str(img)
    prof = load(tmp_path, BASE + '[image]\nurl = "https://example.org/a.img"\n')
    assert prof.image.source() == "https://example.org/a.img"


def test_upload_false_skips_the_image_phase_and_says_so(home, tmp_path):
    # A missing file is no error when no image is wanted.
    prof = load(tmp_path, BASE + '[image]\nupload = false\nfile = "/nonexistent.img"\n')
    assert prof.image.source() is None
    plan = deploy.build_plan(prof)
    assert "image" not in [p.id for p in plan.phases]
    assert plan.find("glance.service") is not None, "Glance itself is still installed"
    assert plan.find("finish.verify").title == "Verify: tokens, catalog"
    text = deploy.describe_plan(prof)
    assert "Image: none (upload = false)" in text and "the image phase is skipped" in text
    assert "image active" not in text


def test_upload_false_survives_a_save_and_true_is_written_back(home, tmp_path):
    prof = load(tmp_path, BASE + "[image]\n# no image yet\nupload = false\n")
    pr.save(prof)
    raw = prof.path.read_text()
    assert "# no image yet" in raw and tomllib.loads(raw)["image"]["upload"] is False
    prof.image.upload = True
    pr.save(prof)
    assert tomllib.loads(prof.path.read_text())["image"]["upload"] is True
    assert pr.load(prof.path).image.upload is True


def test_upload_must_be_true_or_false(home, tmp_path):
    with pytest.raises(pr.ProfileError) as err:
        load(tmp_path, BASE + '[image]\nupload = "no"\n')
    assert err.value.key == "image.upload" and "true or false" in str(err.value)


# -- a URL this machine cannot reach --------------------------------------------------------
class _Ctx:
    """What image_source needs of a step context."""

    def __init__(self, profile):
        import threading

        self.profile = profile
        self.cancel = threading.Event()
        self.lines: list[str] = []

    def output(self, line):
        self.lines.append(line)

    def progress(self, *a):
        pass


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_url_says_so_and_offers_skip(home, tmp_path):
    prof = load(tmp_path, BASE + f'[image]\nurl = "http://127.0.0.1:{_closed_port()}/c.img"\n')
    with pytest.raises(StepError) as err:
        glance.image_source(_Ctx(prof))
    exc = err.value
    assert exc.what == "This machine cannot reach 127.0.0.1 to download the image."
    assert "no internet access" in exc.why and "refused" in exc.why.lower()
    assert exc.hint.startswith("Skip (s) finishes the install without an image")


def test_no_dns_says_the_name_does_not_resolve(home, tmp_path, monkeypatch):
    def no_dns(*a, **kw):
        raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")

    monkeypatch.setattr(socket, "getaddrinfo", no_dns)
    prof = load(tmp_path, BASE)  # the default CirrOS URL, no internet here
    with pytest.raises(StepError) as err:
        glance.image_source(_Ctx(prof))
    assert err.value.what == ("This machine cannot download the image: "
                              "download.cirros-cloud.net does not resolve here.")
    assert "no internet access or no DNS" in err.value.why


def test_skipping_the_failed_download_finishes_the_run(home, tmp_path, monkeypatch):
    """The real image step fails on an unreachable URL; Skip; the verification then does
    not look for the image, and the run ends finished-with-skips, not aborted."""
    prof = load(tmp_path, BASE + f'[image]\nurl = "http://127.0.0.1:{_closed_port()}/c.img"\n')
    state = RunState(tmp_path / "state.json")
    ctx = Context(None, prof, {}, Redactor(), state)
    seen = {}

    def verify(c):
        seen["outcome"] = finish.image_outcome(c)
        checks = []
        finish._check_image(c, lambda *a: checks.append(a))
        seen["checks"] = checks

    plan = Plan([Phase("image", "Image", [Step("image.upload", "Upload image cirros",
                                               run=lambda c: glance.image_source(c))]),
                 Phase("finish", "Finish", [Step("finish.verify", "Verify", run=verify)])])
    asked = []

    def decide(step, info):
        asked.append((step.id, info.what, info.hint))
        return Decision.SKIP

    result = Engine(plan, ctx, decide=decide).run()
    assert [a[0] for a in asked] == ["image.upload"]
    assert "cannot reach 127.0.0.1" in asked[0][1] and asked[0][2].startswith("Skip (s)")
    assert not result.aborted and result.counts["skipped"] == 1 and result.counts["done"] == 1
    assert state.status("image.upload") == Status.SKIPPED
    assert seen == {"outcome": "skipped", "checks": []}


def test_no_image_means_no_image_check(home, tmp_path):
    prof = load(tmp_path, BASE + "[image]\nupload = false\n")
    ctx = _Ctx(prof)
    ctx.state = RunState(tmp_path / "s.json")
    checks = []
    finish._check_image(ctx, lambda *a: checks.append(a))
    assert finish.image_outcome(ctx) == "none" and checks == []
    assert ctx.lines == ["no image check: no image chosen"]
