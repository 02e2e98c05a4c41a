"""Flowsight: packet captures to NetFlow-style flow records on Kafka.

``faust -A app worker`` finds the Faust application as ``app.app``. It is loaded
lazily, so the pure modules of this package (``app.capture.pcap``, ``app.flows.decode``,
``app.flows.parts``, ...) import no Faust and run without a broker.
"""


def __getattr__(name: str):
    if name == "app":
        from app.main import app as faust_app

        return faust_app
    raise AttributeError(f"module 'app' has no attribute {name!r}")
