

def test_bootstrap_waits_out_a_just_revoked_token_and_a_lagging_grant(monkeypatch):
    """After bootstrap resets the password (401: a token from the same second as the
    revocation) or grants admin again (403: cached assignments), the step polls with new
    tokens until an admin action works; any other refusal, or the deadline, fails it."""
    import threading
    from types import SimpleNamespace

    import pytest

    from tui.tasks.services import keystone
    from tui.tasks.services.common import KeystoneAnswered

    answers = [401, 403, None]
    forgot = []

    def endpoints_ok(ctx):
        status = answers.pop(0)
        if status:
            raise KeystoneAnswered("Keystone GET /services answered.", "", "", status)
        return True

    monkeypatch.setattr(keystone, "_identity_endpoints_ok", endpoints_ok)
    monkeypatch.setattr(keystone, "forget_session", lambda *a: forgot.append(a))
    ctx = SimpleNamespace(cancel=threading.Event(), secrets={"admin_password": "pw"})
    monkeypatch.setattr(ctx.cancel, "wait", lambda t: None)
    keystone._wait_admin_role(ctx)
    assert answers == [] and len(forgot) == 2

    answers[:] = [500]
    with pytest.raises(KeystoneAnswered):
        keystone._wait_admin_role(ctx)
    answers[:] = [403] * 5
    with pytest.raises(KeystoneAnswered):
        keystone._wait_admin_role(ctx, within=0)
