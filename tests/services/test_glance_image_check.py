"""The image step's check only reads and decides: it never downloads the image or writes
the local cache. It decides from the cached file when it is here, else from the checksum
an earlier run recorded for the same source; unknown means "not done", and the run
downloads. The run records the checksum and does not upload twice."""

from __future__ import annotations

import hashlib

import pytest

from tests.fakehost import FakeHost
from tui.tasks.profile import ImageConfig, Profile
from tui.tasks.services import glance

URL = "http://127.0.0.1:9/cirros.img"
DATA = b"not really qcow2, but bytes\n" * 100
MD5 = hashlib.md5(DATA).hexdigest()


class _Images:
    def __init__(self, existing):
        self.existing = existing        # images Glance lists for the name
        self.created: list[dict] = []

    def list(self, filters=None):
        return [i for i in self.existing if i["name"] == filters["name"]]

    def create(self, **kw):
        self.created.append(kw)
        return {"id": "new"}


class _Glance:
    def __init__(self, existing=()):
        self.images = _Images(list(existing))


@pytest.fixture
def cache(tmp_path, monkeypatch):
    d = tmp_path / "cache"
    monkeypatch.setenv("STACK_TUI_CACHE_DIR", str(d))
    return d


@pytest.fixture
def downloads(monkeypatch):
    """Every download attempt; one writes the image bytes, as the real one would."""
    seen: list[str] = []

    def fake_download(ctx, url, dest):
        seen.append(url)
        dest.write_bytes(DATA)

    monkeypatch.setattr(glance, "_download", fake_download)
    return seen


def _ctx(tmp_path, gc, monkeypatch):
    monkeypatch.setattr(glance, "glance_client", lambda ctx, session=None: gc)
    prof = Profile(name="t", image=ImageConfig(url=URL))
    return FakeHost().ctx(prof, state_path=tmp_path / "state.json")


def _files(d):
    return sorted(p.relative_to(d) for p in d.rglob("*")) if d.exists() else []


def test_check_with_nothing_cached_says_not_done_and_never_downloads(
        tmp_path, monkeypatch, cache, downloads):
    gc = _Glance([{"name": "cirros", "checksum": MD5, "status": "active"}])
    ctx = _ctx(tmp_path, gc, monkeypatch)
    assert glance._image_check(ctx) is False
    assert downloads == [] and _files(cache) == []


def test_check_reads_the_cached_file_and_says_already_done(
        tmp_path, monkeypatch, cache, downloads):
    gc = _Glance([{"name": "cirros", "checksum": MD5, "status": "active"}])
    ctx = _ctx(tmp_path, gc, monkeypatch)
    _, path = glance.image_path(ctx)
    path.parent.mkdir(parents=True)
    path.write_bytes(DATA)
    before = _files(cache)
    assert glance._image_check(ctx) is True
    assert downloads == [] and _files(cache) == before and path.read_bytes() == DATA


def test_check_uses_the_checksum_a_run_recorded_when_the_cache_is_gone(
        tmp_path, monkeypatch, cache, downloads):
    gc = _Glance([{"name": "cirros", "checksum": MD5, "status": "active"}])
    ctx = _ctx(tmp_path, gc, monkeypatch)
    glance._image_run(ctx)              # already in Glance: records, uploads nothing
    assert downloads == [URL] and gc.images.created == []
    assert ctx.facts["image"]["md5"] == MD5 and URL not in str(ctx.facts)
    glance.image_path(ctx)[1].unlink()
    downloads.clear()
    assert glance._image_check(ctx) is True
    assert downloads == [] and _files(cache) == [glance.image_path(ctx)[1].parent.relative_to(cache)]
    # a different image in Glance (another checksum) is not "done"
    gc.images.existing[0]["checksum"] = "0" * 32
    assert glance._image_check(ctx) is False


def test_recorded_checksum_of_another_source_is_not_used(
        tmp_path, monkeypatch, cache, downloads):
    gc = _Glance([{"name": "cirros", "checksum": MD5, "status": "active"}])
    ctx = _ctx(tmp_path, gc, monkeypatch)
    ctx.facts["image"] = {"source": "another", "md5": MD5}
    assert glance._image_check(ctx) is False
    assert downloads == [] and _files(cache) == []
