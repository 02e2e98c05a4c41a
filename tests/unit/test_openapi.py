"""The published OpenAPI document names exactly the routes the worker serves, with their methods."""
from __future__ import annotations




def served() -> set[tuple[str, str]]:
    from app.main import app
    web = app.web
    web.init_server()
    return {(r.resource.canonical, r.method.lower()) for r in web.web_app.router.routes() if r.method != "HEAD"}


def documented() -> set[tuple[str, str]]:
    from web.openapi import DOCUMENT
    return {(path, method) for path, item in DOCUMENT["paths"].items() for method in item}


def test_every_served_route_is_documented_and_every_documented_route_is_served():
    s, d = served(), documented()
    assert s - d == set(), f"served but not in /openapi.json: {sorted(s - d)}"
    assert d - s == set(), f"in /openapi.json but not served: {sorted(d - s)}"


def test_every_operation_documents_its_errors_and_security():
    from web.openapi import DOCUMENT
    from web.security import PUBLIC_PATHS, PUBLIC_PREFIXES
    for path, item in DOCUMENT["paths"].items():
        public = path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)
        for method, op in item.items():
            codes = set(op["responses"])
            assert any(c.startswith("2") for c in codes), (path, method)
            if public:
                assert op["security"] == [], f"{method} {path} is public but the document asks for a token"
            else:
                assert op["security"] and {"401", "403"} <= codes, f"{method} {path} must document 401 and 403"


def test_the_document_is_valid_openapi():
    import json

    from web.openapi import DOCUMENT
    json.dumps(DOCUMENT)  # serialisable
    import jsonschema_rs  # comes with schemathesis
    assert DOCUMENT["openapi"].startswith("3.0")
    for path, item in DOCUMENT["paths"].items():
        for method, op in item.items():
            for code, resp in op["responses"].items():
                for media in resp.get("content", {}).values():
                    schema = media["schema"]
                    if "$ref" in schema:
                        name = schema["$ref"].rsplit("/", 1)[1]
                        schema = DOCUMENT["components"]["schemas"][name]
                    jsonschema_rs.validator_for(schema)  # each schema compiles
