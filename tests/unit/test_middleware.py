"""The web guard on its own: an unexpected error shows no trace or path, and headers go on everything."""
from __future__ import annotations


from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer



async def test_an_unexpected_error_is_a_500_with_an_id_and_nothing_else(caplog):
    import app.main  # noqa: F401  (the entry point: it imports every module of the app, this one too)
    from web.security import guard

    async def boom(request):
        raise RuntimeError("cannot open /srv/flowsight/secret.py")

    async def fine(request):
        return web.json_response({"ok": True})

    site = web.Application(middlewares=[guard])
    site.router.add_get("/healthz", boom)   # a public path: no token needed to reach the handler
    site.router.add_get("/readyz", fine)
    async with TestClient(TestServer(site)) as client:
        r = await client.get("/healthz")
        body = await r.json()
        assert r.status == 500 and set(body) == {"error", "id"}
        assert "/srv" not in str(body) and "Traceback" not in str(body) and "secret" not in str(body)
        assert r.headers["X-Content-Type-Options"] == "nosniff" and r.headers["X-Frame-Options"] == "DENY"
        assert body["id"] in caplog.text and "secret.py" in caplog.text   # the operator sees it in the log
        r = await client.get("/nowhere")
        assert r.status == 401   # unknown paths do not tell an anonymous client what exists
        r = await client.get("/readyz")
        assert r.status == 200 and r.headers["Referrer-Policy"] == "no-referrer"


def test_actions_are_bounded_in_length_characters_and_types():
    """Ten acks with 1 MB ids once crashed the worker for good; ids, entities, types and notes are checked."""
    import pytest

    from web.dashboard import check_action
    ok = check_action({"action": "ack", "id": "tap-1|traffic|tap-1|1767600000000", "note": "seen\nby me"})
    assert ok["id"] == "tap-1|traffic|tap-1|1767600000000"
    assert check_action({"action": "suppress", "type": "host-bytes", "entity": "2001:db8::7", "for_s": 60})["for_s"] == 60
    bad = [{"action": "ack", "id": "x" * 1_000_000}, {"action": "ack", "id": "a|traffic|b|1\n"},
           {"action": "ack", "id": "tap|traffic|\udcff|1"}, {"action": "ack", "id": "t|traffic|t|1", "note": "\udcff"},
           {"action": "ack", "id": "t|traffic|t|1", "note": "y" * 501}, {"action": "ack", "id": "t|traffic|t|1", "note": 5},
           {"action": "suppress", "type": "anything", "entity": "tap", "for_s": 60},
           {"action": "suppress", "type": "traffic", "entity": "t" * 129, "for_s": 60},
           {"action": "suppress", "type": "traffic", "entity": "tap", "for_s": 1e400},
           {"action": "suppress", "type": "traffic", "entity": "tap", "for_s": True},
           {"action": "lift"}, [], None]
    for body in bad:
        with pytest.raises(ValueError):
            check_action(body)
