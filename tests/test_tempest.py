"""Tempest glue without a cloud: the generated config and the progress parser."""

from __future__ import annotations

import pytest

from tests.cloud import HOSTILE
from tui.tasks import tempest
from tui.tasks.profile import Profile


def _profile():
    p = Profile(name="t")
    p.host.address = "10.0.0.5"
    return p


@pytest.mark.parametrize("platform,enforce", [("debian-13", "True"), ("debian-12", "False"),
                                              ("ubuntu-22.04", "False"), ("ubuntu-24.04", "True")])
def test_config_reads_back_with_oslo_config(tmp_path, platform, enforce):
    from oslo_config import cfg

    pw = HOSTILE["admin_password"]
    path = tmp_path / "tempest.conf"
    path.write_text(tempest.config_text(_profile(), pw, platform, tmp_path))
    conf = cfg.ConfigOpts()
    conf.register_opts([cfg.StrOpt("admin_password"), cfg.BoolOpt("use_dynamic_credentials")],
                       group="auth")
    conf.register_opts([cfg.StrOpt("uri_v3")], group="identity")
    conf.register_opts([cfg.StrOpt("image_format_enforcement")], group="image-feature-enabled")
    conf(args=[], default_config_files=[str(path)])
    assert conf.auth.admin_password == pw          # quotes, $, backslashes survive
    assert conf.auth.use_dynamic_credentials is True
    assert conf.identity.uri_v3 == "http://10.0.0.5:5000/v3"
    assert conf["image-feature-enabled"].image_format_enforcement.capitalize() == enforce


def test_every_exclusion_has_a_reason():
    assert tempest.EXCLUDES
    for rx, why in tempest.EXCLUDES:
        assert rx and len(why) > 20


@pytest.mark.parametrize("line,want", [
    ("{0} tempest.api.identity.v3.test_tokens.TokensV3Test.test_create_token [0.512s] ... ok",
     ("tempest.api.identity.v3.test_tokens.TokensV3Test.test_create_token", "ok")),
    ("{1} tempest.api.image.v2.test_images.ImportImagesTest.test_x[id-1a2b,smoke] [1.1s] ... FAILED",
     ("tempest.api.image.v2.test_images.ImportImagesTest.test_x", "failed")),
    ("{1} setUpClass (tempest.api.image.v2.admin.test_x.T) ... SKIPPED: no", None),
    ("{0} tempest.api.image.v2.test_a.A.test_b [0.0s] ... SKIPPED: Feature off", 
     ("tempest.api.image.v2.test_a.A.test_b", "skipped")),
    ("Totals", None),
])
def test_progress_lines(line, want):
    assert tempest.parse_line(line) == want


def test_config_refuses_an_unknown_platform(tmp_path):
    from tui.tasks.platforms import UnknownPlatform

    with pytest.raises(UnknownPlatform, match="debian-11"):
        tempest.config_text(_profile(), "pw", "debian-11", tmp_path)
