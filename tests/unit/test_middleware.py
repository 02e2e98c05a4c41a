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
