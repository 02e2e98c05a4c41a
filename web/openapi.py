"""GET /openapi.json: the HTTP API's contract (OpenAPI 3.0).

tests/unit/test_openapi.py checks that it names exactly the routes the worker serves, and
tests/integration/test_security.py fuzzes a running worker from it.
"""
from __future__ import annotations

from faust.web import View

from app.records import NAME_PATTERN

VERSION = "0.1.0"


#: The page's own header: a cross-site form cannot send it.
_PAGE = {"name": "X-Flowsight-Page", "in": "header", "required": True, "schema": {"type": "string", "enum": ["1"]}}


def _error(description: str, retry: bool = False) -> dict:
    out: dict = {"description": description,
                 "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    if retry:
        out["headers"] = {"Retry-After": {"schema": {"type": "integer"}, "description": "Seconds to wait."}}
    return out


AUTH = {"401": {**_error("No token, or a token that is not valid."),
                "headers": {"WWW-Authenticate": {"schema": {"type": "string"}}}},
        "403": _error("A valid token that may not do this.")}
UNAVAILABLE = {"503": _error("Kafka or the owning worker is not reachable, or this worker is at its limit; retry.",
                             retry=True)}
READ = [{"bearer": []}, {"session": []}]

_poll_params = [
    {"name": "cursor", "in": "query", "schema": {"type": "string"},
     "description": "The cursor of the previous answer: resume right after it."},
    {"name": "timeout", "in": "query", "schema": {"type": "number", "minimum": 0, "maximum": 60, "default": 30},
     "description": "Seconds to wait for records when none are waiting (a worker may hold a poll for less: "
                    "FLOWSIGHT_LONG_POLL_MAX_S)."},
    {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 5000, "default": 5000}},
    {"name": "from", "in": "query", "schema": {"type": "string", "enum": ["beginning", "end"],
                                               "default": "beginning"},
     "description": "Where to start without a cursor."},
]


_search_params = [
    {"name": "since", "in": "query", "schema": {"type": "string"},
     "description": "Flows that end at or after this capture time: ms since the epoch, or RFC 3339."},
    {"name": "until", "in": "query", "schema": {"type": "string"},
     "description": "Flows that start before this capture time. A range with an end is read to its end, then "
                    "the answer says complete: true."},
    {"name": "filter", "in": "query", "schema": {"type": "string", "maxLength": 65536},
     "description": "nfdump's filter syntax, e.g. 'src host 10.1.2.3 and dst port 22'."},
]


#: A 400 from a view (JSON), or from the HTTP parser before any view (plain text).
_BAD_REQUEST = {**_error("A parameter is out of range, the cursor is not one of ours, or the filter does not parse."),
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}},
                            "text/plain": {"schema": {"type": "string"},
                                           "example": "request line over 64 KiB, refused by the HTTP parser"}}}


def _poll(what: str, search: bool = False) -> dict:
    return {"get": {
        "summary": f"Long poll for {what}" + (", or a search by capture time and filter" if search else ""),
        "security": READ,
        "parameters": _poll_params + (_search_params if search else []),
        "responses": {
            "200": {"description": "Records after the cursor (maybe none) and the cursor to send next.",
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Page"}}}},
            "400": _BAD_REQUEST,
            **AUTH, **UNAVAILABLE}}}


_capture_body = {"required": True, "content": {
    t: {"schema": {"type": "string", "format": "binary"}}
    for t in ("application/octet-stream", "application/vnd.tcpdump.pcap", "application/vnd.tcpdump.pcapng",
              "application/x-pcapng")}}
_upload = {
    "summary": "Upload a pcap or pcapng file (idempotent by block id)",
    "security": [{"bearer": []}],
    "parameters": [
        {"name": "X-Sensor", "in": "header", "schema": {"type": "string", "pattern": NAME_PATTERN},
         "description": "The capture point (default: the one the token is for)."},
        {"name": "X-Block-Id", "in": "header", "schema": {"type": "string", "pattern": NAME_PATTERN},
         "description": "Stable id of this file; the same id and content is counted once (default: its sha256)."},
    ],
    "requestBody": _capture_body,
    "responses": {
        "200": {"description": "Already accepted before (duplicate).",
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Upload"}}}},
        "202": {"description": "Accepted: every chunk is in Kafka.",
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Upload"}}}},
        "400": _error("Not a readable capture, damaged, empty, cut off, or a bad header."),
        **AUTH,
        "408": _error("The client sent nothing for too long, or too slowly."),
        "409": _error("This block id was uploaded before with other content, or cut into chunks larger than this "
                      "worker's chunk size."),
        "413": _error("Over the size limit."),
        "415": _error("Wrong Content-Type, or a link type that is not supported."),
        "429": _error("This sensor is over its upload rate.", retry=True),
        **UNAVAILABLE,
        "507": _error("The spool volume is nearly full.", retry=True),
    }}

DOCUMENT: dict = {
    "openapi": "3.0.3",
    "info": {"title": "Flowsight", "version": VERSION,
             "description": "Packet captures in; NetFlow-style flow records, anomalies and alerts out."},
    "paths": {
        "/v1/captures": {"post": _upload, "put": {**_upload, "summary": "The same as POST (for curl -T)"}},
        "/v1/flows": _poll("flow records", search=True),
        "/v1/top": {"get": {
            "summary": "Top N talkers, ports or protocols by flows, packets or bytes (like nfdump -s), and traffic "
                       "over time",
            "security": READ,
            "parameters": [
                {"name": "by", "in": "query", "schema": {"type": "string", "default": "srcip", "enum": [
                    "srcip", "dstip", "ip", "srcport", "dstport", "port", "proto", "pair", "sensor"]}},
                {"name": "metric", "in": "query", "schema": {"type": "string", "default": "bytes",
                                                             "enum": ["flows", "packets", "bytes"]}},
                {"name": "n", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 1000,
                                                        "default": 10}},
                {"name": "bucket", "in": "query", "schema": {"type": "integer", "minimum": 0, "maximum": 31622400,
                                                             "default": 0},
                 "description": "Seconds per bucket of a time series of the same flows (0: none)."},
                *_search_params],
            "responses": {"200": {"description": "The top N, and whether the whole range was read.",
                                  "content": {"application/json": {"schema": {"type": "object"}}}},
                          "400": _BAD_REQUEST,
                          **AUTH, **UNAVAILABLE}}},
        "/v1/anomalies": _poll("anomalies"),
        "/v1/alerts": _poll("alerts"),
        "/v1/actions": {**_poll("analysts' actions"), "post": {
            "summary": "Acknowledge an alert, suppress an entity or lift a suppression (who, when and a note are "
                       "recorded)",
            "security": READ,
            "requestBody": {"required": True, "content": {"application/json": {"schema": {
                "$ref": "#/components/schemas/Action"}}}},
            "responses": {"202": {"description": "Recorded.", "content": {"application/json": {"schema": {
                "type": "object"}}}},
                          "400": _error("Not a valid action."),
                          "404": _error("No such alert (ack), or no such active suppression (lift)."),
                          **AUTH, **UNAVAILABLE}}},
        "/v1/suppressions": {"get": {
            "summary": "The suppressions active now: type, entity, until when, by whom, when and why",
            "security": READ,
            "responses": {"200": {"description": "Active suppressions, the soonest to end first.",
                                  "content": {"application/json": {"schema": {"type": "object"}}}},
                          **AUTH}}},
        "/v1/blocks/{key}": {"get": {
            "summary": "The state of an uploaded block, SENSOR~BLOCK_ID",
            "security": READ,
            "parameters": [{"name": "key", "in": "path", "required": True, "schema": {"type": "string"}}],
            "responses": {"200": {"description": "Chunks done and the content's sha256.",
                                  "content": {"application/json": {"schema": {"type": "object"}}}},
                          "404": _error("No such block."), **AUTH, **UNAVAILABLE}}},
        "/v1/health": {"get": {
            "summary": "Progress, lag, placebo round trip", "security": READ,
            "responses": {"200": {"description": "Healthy.", "content": {"application/json": {"schema": {
                "type": "object"}}}},
                          **AUTH, "503": {"description": "Degraded (same body).", "content": {
                              "application/json": {"schema": {"type": "object"}}}}}}},
        "/metrics": {"get": {
            "summary": "Prometheus metrics", "security": READ,
            "responses": {"200": {"description": "Text exposition format.", "content": {"text/plain": {
                "schema": {"type": "string"}}}}, **AUTH}}},
        "/healthz": {"get": {"summary": "Liveness", "security": [], "responses": {
            "200": {"description": "The process answers.", "content": {"application/json": {"schema": {
                "type": "object"}}}}}}},
        "/readyz": {"get": {"summary": "Readiness", "security": [], "responses": {
            "200": {"description": "Ready.", "content": {"application/json": {"schema": {"type": "object"}}}},
            "503": {"description": "Not ready, with reasons.", "content": {"application/json": {"schema": {
                "type": "object"}}}}}}},
        "/openapi.json": {"get": {"summary": "This document", "security": [], "responses": {
            "200": {"description": "OpenAPI 3.0.", "content": {"application/json": {"schema": {"type": "object"}}}}}}},
        "/": {"get": {"summary": "The analyst's page", "security": [], "responses": {
            "200": {"description": "HTML.", "content": {"text/html": {"schema": {"type": "string"}}}}}}},
        "/ui/{name}": {"get": {
            "summary": "The page's static files", "security": [],
            "parameters": [{"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}],
            "responses": {"200": {"description": "The file.", "content": {"*/*": {"schema": {"type": "string"}}}},
                          "404": _error("No such file.")}}},
        "/v1/login": {"post": {
            "summary": "Sign the page in with an API token (sets an HttpOnly session cookie)", "security": [],
            "parameters": [_PAGE],
            "requestBody": {"required": True, "content": {"application/json": {"schema": {
                "type": "object", "required": ["token"], "properties": {"token": {"type": "string"}}}}}},
            "responses": {"200": {"description": "Signed in.", "content": {"application/json": {"schema": {
                "type": "object"}}}},
                          "400": _error("No token in the body."),
                          "401": _error("Not an API token."),
                          "403": _error("Not sent by the page (no X-Flowsight-Page header, or another origin)."),
                          "429": _error("Too many failed sign-ins from this address.", retry=True)}}},
        "/v1/logout": {"post": {"summary": "End every session of the signed-in name and clear the cookie",
                                "security": [], "parameters": [_PAGE], "responses": {
            "200": {"description": "Signed out.", "content": {"application/json": {"schema": {"type": "object"}}}},
            "403": _error("Not sent by the page (no X-Flowsight-Page header, or another origin)."),
            "503": _error("Kafka is unavailable; sign out again.", retry=True)}}},
    },
    "components": {
        "securitySchemes": {
            "bearer": {"type": "http", "scheme": "bearer",
                       "description": "A sensor token (uploads) or an API token (everything else)."},
            "session": {"type": "apiKey", "in": "cookie", "name": "flowsight_session"},
        },
        "schemas": {
            "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}},
            "Page": {"type": "object", "required": ["records", "cursor"],
                     "properties": {"records": {"type": "array", "items": {"type": "object"}},
                                    "cursor": {"type": "string"}}},
            "Upload": {"type": "object", "required": ["block_id", "sensor", "chunks", "packets", "bytes", "duplicate"],
                       "properties": {"block_id": {"type": "string"}, "sensor": {"type": "string"},
                                      "chunks": {"type": "integer"}, "packets": {"type": "integer"},
                                      "bytes": {"type": "integer"}, "duplicate": {"type": "boolean"}}},
            "Action": {"type": "object", "required": ["action"], "properties": {
                "action": {"type": "string", "enum": ["ack", "suppress", "lift"]}, "id": {"type": "string"},
                "note": {"type": "string"}, "type": {"type": "string"}, "entity": {"type": "string"},
                "for_s": {"type": "integer", "minimum": 60, "maximum": 2592000}}},
        },
    },
}


class OpenAPI(View):
    """GET /v1/openapi.json: the API's description."""
    async def get(self, request):
        return self.json(DOCUMENT)
