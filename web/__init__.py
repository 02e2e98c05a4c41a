"""Faust web views: ingest, long-poll egress and health. ``web.routes`` registers them."""
