"""Typed, frozen settings read from ``FLOWSIGHT_*`` environment variables.

Every value is checked when the object is built; a bad value raises
:class:`SettingsError` with a message that says what a valid value looks like.
``Settings.from_env().redacted()`` is what the worker prints at start-up.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, fields
from collections.abc import Mapping
from urllib.parse import urlsplit

PREFIX = "FLOWSIGHT_"
SECRET_WORDS = ("password", "secret", "token", "key")


class SettingsError(ValueError):
    """A ``FLOWSIGHT_*`` variable holds a value that cannot be used."""


def _int(name: str, raw: str, lo: int, hi: int) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{PREFIX}{name.upper()}={raw!r}: expected a whole number from {lo} to {hi}") from None
    if not lo <= value <= hi:
        raise SettingsError(f"{PREFIX}{name.upper()}={raw!r}: expected a whole number from {lo} to {hi}")
    return value


def _bool(name: str, raw: str) -> bool:
    low = raw.strip().lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise SettingsError(f"{PREFIX}{name.upper()}={raw!r}: expected true or false")


@dataclass(frozen=True)
class Settings:
    """Every setting of a worker, from ``FLOWSIGHT_*`` variables (:meth:`from_env`), checked when read."""

    #: Kafka bootstrap servers, ``kafka://host:port[;host:port]``.
    broker: str = "kafka://127.0.0.1:9092"
    #: Faust application id; prefixes consumer groups and changelog topics.
    app_id: str = "flowsight"
    #: Prefix of every topic name (lets several deployments or test runs share a cluster).
    topic_prefix: str = ""
    #: Partitions of every topic the app creates.
    partitions: int = 8
    #: Replication factor of every topic the app creates (3 on a 3-broker cluster).
    replication: int = 1
    #: Tumbling capture-time window length in seconds; 0 means one record per flow for the whole capture.
    window_s: int = 60
    #: How far capture time may run behind the highest time seen before a window closes, in seconds.
    lateness_s: int = 5
    #: Wall-clock seconds a sensor replaying old captures may send nothing before its open windows are
    #: flushed (end of capture).
    idle_flush_s: int = 5
    #: Longest wall-clock silence of a live sensor (capture clock near the wall clock) before its open windows
    #: are flushed; it waits one and a half of its usual pauses between uploads, at least idle_flush_s.
    live_idle_flush_s: int = 600
    #: Open flows a worker holds at most (about 250 bytes each); past it the biggest open windows are closed
    #: early, and their later parts come as late records (exact, but split).
    max_open_flows: int = 1_500_000
    #: A capture time further ahead of its sensor's clock than this, in seconds, does not move the clock
    #: by itself (a damaged timestamp): another chunk must confirm it, or its chunk must be large.
    max_clock_jump_s: int = 86400
    #: Largest pcap chunk produced to Kafka, in bytes.
    chunk_bytes: int = 8 * 1024 * 1024
    #: Freed memory a worker keeps for reuse, in MiB, instead of giving it back to the kernel (app/runtime/memory.py);
    #: 0 leaves the C library's defaults.
    malloc_keep_mb: int = 128
    #: Largest upload accepted, in bytes.
    max_upload_bytes: int = 8 * 1024 * 1024 * 1024
    #: TCP port of the web server.
    web_port: int = 6066
    #: Interface the web server binds.
    web_host: str = "0.0.0.0"
    #: Table store: rocksdb:// (changelog-backed local cache) or memory:// (tests).
    store: str = "rocksdb://"
    #: Folder for RocksDB tables and the upload spool.
    datadir: str = "var/worker"

    #: Also emit the inner flow of tunnels (GRE, VXLAN, Geneve, GTP-U, 6in4, ...), besides the outer one.
    inner_tunnels: bool = False
    #: Seconds an upload may wait for Kafka to acknowledge its chunks before it is answered 503.
    produce_timeout_s: int = 30
    #: Seconds without a heartbeat before Kafka declares a worker dead and rebalances its partitions.
    session_timeout_s: int = 30
    #: Other workers that keep a warm copy of each table partition: a failover then need not replay the
    #: changelog, for about 12% more CPU per worker (bench/README.md).
    standby_replicas: int = 0
    #: Upload a small synthetic capture under sensor "placebo" every placebo_interval_s (leader only).
    placebo_source: bool = True
    #: Check that placebo uploads come out at egress, and report it in /v1/health.
    placebo_sink: bool = True
    #: Seconds between placebo uploads.
    placebo_interval_s: int = 30
    #: Do not print the settings at start-up.
    quiet: bool = False
    #: Log one JSON object per line (uploads carry block_id and sensor fields).
    log_json: bool = False
    #: Install the workarounds of dependency internals (app/runtime/compat.py): the produce request
    #: encoding with one copy of each batch, and the hardened HTTP error pages. Off: the libraries as shipped.
    compat_patches: bool = True

    #: Score complete windows and raise anomalies and alerts.
    scoring: bool = True
    #: Run the detectors per entity (scans, brute force, beacons, DNS tunnels, exfiltration; needs scoring).
    entities: bool = True
    #: Alert episodes per day an analyst is willing to read (thresholds are calibrated to it).
    alert_budget: int = 5
    #: Seconds after an alert during which its (type, entity) raises nothing new.
    alert_suppress_s: int = 3600
    #: Hard cap of alerts per capture day, whatever the thresholds.
    alert_cap: int = 20
    #: The sites' time zones, ``sensor=Zone,...`` (IANA names such as Europe/Paris): the seasonal models' slots
    #: of the day and days of the week follow each sensor's local time, daylight saving included.
    sensor_timezones: str = ""
    #: The time zone of the sensors FLOWSIGHT_SENSOR_TIMEZONES does not name.
    timezone: str = "UTC"
    #: Inside networks, comma-separated CIDRs: their hosts' outgoing bytes are modelled one by one.
    home_nets: str = "10.0.0.0/8,172.16.0.0/12,192.168.0.0/16,fc00::/7"
    #: Inside hosts modelled per sensor (the host silent for longest makes room for a new one).
    host_capacity: int = 1024
    #: Send every flow record to these NetFlow v5 collectors over UDP (host:port,...).
    netflow_v5: str = ""
    #: Send every flow record to these IPFIX collectors over UDP (host:port,...).
    ipfix: str = ""
    #: Where export to collectors begins the first time it is turned on: "now" (records already on the flows
    #: topic are not sent) or "start" (the whole retained topic). Later it goes on from where it stopped.
    export_from: str = "now"

    #: Require tokens (off only on a closed lab network: then anyone who reaches the port may upload and read).
    auth: bool = True
    #: File of ``sensor:hash`` lines: the upload tokens (``faust -A app token SENSOR --sensor --file F``).
    sensor_tokens: str = ""
    #: File of ``name:hash`` lines: tokens that read flows, alerts, health and the page.
    api_tokens: str = ""
    #: File holding a secret shared by every worker (worker-to-worker requests, session cookies).
    cluster_secret_file: str = ""
    #: PEM certificate (chain) and private key: the web server then speaks HTTPS only.
    tls_cert: str = ""
    tls_key: str = ""
    #: Uploads one worker receives at once, from all sensors; more are answered 503 with Retry-After.
    max_concurrent_uploads: int = 16
    #: Uploads one worker receives at once from one sensor (so one sensor cannot take every slot).
    sensor_max_concurrent_uploads: int = 4
    #: Long polls one worker holds open at once; more are answered 503 with Retry-After.
    max_long_polls: int = 64
    #: Longest a long poll is held open, in seconds; a longer ?timeout= is shortened to it.
    long_poll_max_s: int = 60
    #: Webhooks for chat and ticket systems: URLs (``,``-separated); each alert is POSTed to each as JSON,
    #: signed with HMAC-SHA256 (webhook_secret_file), and retried with backoff on failure.
    alert_webhooks: str = ""
    #: File holding the key that signs webhook bodies (header X-Flowsight-Signature: sha256=HEX).
    webhook_secret_file: str = ""
    #: Attempts per alert and URL before a webhook delivery is given up (and counted as failed).
    webhook_attempts: int = 6
    #: Longest a search or an aggregate (GET /v1/flows with a filter or a time range, /v1/top) reads before it
    #: answers with what it has (a search then carries on from its cursor; an aggregate says it is partial).
    query_max_s: int = 30
    #: Bytes of flow records the flows topic keeps per partition. Its records carry their capture time, so
    #: a replay of old captures would be deleted at once by a time limit: the topic is limited by size only.
    flows_retention_bytes: int = 8 << 30
    #: Flows messages (up to 500 records each) per entry of the flows topic's time index (app/flows/index.py):
    #: a search of a time range passes over, unfetched, every entry's span whose capture times lie outside it.
    flows_index_every: int = 256
    #: Uploads per minute per sensor (a token bucket holding a burst of a tenth of a minute, at least 5).
    sensor_uploads_per_min: int = 600
    #: Folder of upload spool files (default DATADIR/spool).
    spool_dir: str = ""
    #: Uploads are refused with 507 when the spool volume would keep less than this free.
    spool_min_free_bytes: int = 256 * 1024 * 1024
    #: Seconds a client may send nothing (headers or body) before its connection is closed.
    client_idle_timeout_s: int = 20
    #: Slowest average upload rate accepted once an upload has run 1.5 idle timeouts (30 s), in bytes per second.
    min_upload_rate: int = 4096
    #: Kafka security: PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL.
    kafka_security_protocol: str = "PLAINTEXT"
    #: SASL mechanism: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512.
    kafka_sasl_mechanism: str = "PLAIN"
    kafka_sasl_username: str = ""
    kafka_sasl_password: str = ""
    #: CA bundle that signed the brokers' certificates (SSL and SASL_SSL).
    kafka_ssl_cafile: str = ""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """From ``env`` (default: the process environment, over what ``make run`` started, see
        :func:`deployment_defaults`)."""
        env = {**deployment_defaults(os.environ), **os.environ} if env is None else env
        kwargs: dict[str, object] = {}
        for f in fields(cls):
            raw = env.get(PREFIX + f.name.upper())
            if raw is None or raw == "":
                continue
            if f.type == "int":
                kwargs[f.name] = _int(f.name, raw, *_RANGES[f.name])
            elif f.type == "bool":
                kwargs[f.name] = _bool(f.name, raw)
            else:
                kwargs[f.name] = raw
        known = {PREFIX + f.name.upper() for f in fields(cls)}
        unknown = sorted(k for k in env if k.startswith(PREFIX) and k not in known and k not in _OTHER_VARS)
        if unknown:
            raise SettingsError(f"unknown setting {unknown[0]}; known: {', '.join(sorted(known))}")
        settings = cls(**kwargs)  # type: ignore[arg-type]
        settings.check()
        return settings

    def check(self) -> None:
        for name, (lo, hi) in _RANGES.items():
            value = getattr(self, name)
            if not lo <= value <= hi:
                raise SettingsError(f"{PREFIX}{name.upper()}={value}: expected a whole number from {lo} to {hi}")
        for url in self.webhook_urls:
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise SettingsError(f"{PREFIX}ALERT_WEBHOOKS: {url!r} is not an http(s) URL")
        if self.webhook_secret_file and not os.path.isfile(self.webhook_secret_file):
            raise SettingsError(f"{PREFIX}WEBHOOK_SECRET_FILE={self.webhook_secret_file!r}: no such file")
        if self.export_from not in ("now", "start"):
            raise SettingsError(f"{PREFIX}EXPORT_FROM={self.export_from!r}: expected now or start")
        for server in self.broker_servers:
            host, _, port = server.rpartition(":")
            if not host or not port.isdigit():
                raise SettingsError(
                    f"{PREFIX}BROKER={self.broker!r}: expected kafka://host:port[;host:port...]")
        if self.store not in ("rocksdb://", "memory://"):
            raise SettingsError(f"{PREFIX}STORE={self.store!r}: expected rocksdb:// or memory://")
        if self.topic_prefix and not all(c.isalnum() or c in "._-" for c in self.topic_prefix):
            raise SettingsError(f"{PREFIX}TOPIC_PREFIX={self.topic_prefix!r}: use letters, digits, '.', '_' and '-'")
        try:
            _ = self.home_networks
        except ValueError as exc:
            raise SettingsError(f"{PREFIX}HOME_NETS={self.home_nets!r}: expected CIDRs separated by commas ({exc})") \
                from None
        try:
            _ = self.timezones
        except ValueError as exc:
            raise SettingsError(f"{PREFIX}SENSOR_TIMEZONES / {PREFIX}TIMEZONE: {exc}") from None
        from app.export.netflow import parse_collectors
        for name in ("netflow_v5", "ipfix"):
            try:
                parse_collectors(getattr(self, name))
            except ValueError as exc:
                raise SettingsError(f"{PREFIX}{name.upper()}: {exc}") from None
        if bool(self.tls_cert) != bool(self.tls_key):
            raise SettingsError(f"{PREFIX}TLS_CERT and {PREFIX}TLS_KEY go together: set both or neither")
        for name in ("tls_cert", "tls_key", "sensor_tokens", "api_tokens", "cluster_secret_file", "kafka_ssl_cafile"):
            path = getattr(self, name)
            if path and not os.path.isfile(path):
                raise SettingsError(f"{PREFIX}{name.upper()}={path!r}: no such file")
        if self.kafka_security_protocol not in KAFKA_PROTOCOLS:
            raise SettingsError(f"{PREFIX}KAFKA_SECURITY_PROTOCOL={self.kafka_security_protocol!r}: expected one of "
                                f"{', '.join(KAFKA_PROTOCOLS)}")
        if self.kafka_sasl_mechanism not in SASL_MECHANISMS:
            raise SettingsError(f"{PREFIX}KAFKA_SASL_MECHANISM={self.kafka_sasl_mechanism!r}: expected one of "
                                f"{', '.join(SASL_MECHANISMS)}")
        if self.chunk_bytes * 2 > self.max_upload_bytes:
            raise SettingsError(f"{PREFIX}MAX_UPLOAD_BYTES must be at least twice {PREFIX}CHUNK_BYTES")

    @property
    def broker_servers(self) -> list[str]:
        rest = self.broker.split("://", 1)[1] if "://" in self.broker else self.broker
        return [s.strip() for s in rest.replace(",", ";").split(";") if s.strip()]

    @property
    def bootstrap(self) -> str:
        """Servers in the comma form aiokafka takes."""
        return ",".join(self.broker_servers)

    @property
    def kafka_ssl_context(self):
        if "SSL" not in self.kafka_security_protocol:
            return None
        from aiokafka.helpers import create_ssl_context
        return create_ssl_context(cafile=self.kafka_ssl_cafile or None)

    def kafka_kwargs(self) -> dict[str, object]:
        """Security settings for an aiokafka client, the same as the Faust app's (see faust_credentials)."""
        out: dict[str, object] = {"security_protocol": self.kafka_security_protocol}
        if self.kafka_security_protocol.startswith("SASL"):
            out.update(sasl_mechanism=self.kafka_sasl_mechanism, sasl_plain_username=self.kafka_sasl_username,
                       sasl_plain_password=self.kafka_sasl_password)
        if self.kafka_ssl_context is not None:
            out["ssl_context"] = self.kafka_ssl_context
        return out

    def faust_credentials(self):
        import faust
        if self.kafka_security_protocol.startswith("SASL"):
            return faust.SASLCredentials(username=self.kafka_sasl_username, password=self.kafka_sasl_password,
                                         mechanism=self.kafka_sasl_mechanism, ssl_context=self.kafka_ssl_context)
        if self.kafka_security_protocol == "SSL":
            return faust.SSLCredentials(self.kafka_ssl_context)
        return None

    @property
    def own_url(self) -> str:
        """This deployment's web address on this machine."""
        return f"{'https' if self.tls_cert else 'http'}://localhost:{self.web_port}"

    @property
    def web_ssl_context(self):
        if not self.tls_cert:
            return None
        import ssl
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(self.tls_cert, self.tls_key)
        return ctx

    @property
    def webhook_urls(self) -> list[str]:
        return [u.strip() for u in self.alert_webhooks.split(",") if u.strip()]

    @property
    def home_networks(self) -> list[str]:
        import ipaddress
        return [str(ipaddress.ip_network(n.strip())) for n in self.home_nets.split(",") if n.strip()]

    @property
    def timezones(self) -> dict[str, str]:
        """Sensor -> time zone name (``""``: every sensor not named), each checked to be a known zone."""
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError
        out = {"": self.timezone}
        for item in self.sensor_timezones.split(","):
            if not item.strip():
                continue
            sensor, sep, zone = item.strip().partition("=")
            if not sep or not sensor or not zone:
                raise ValueError(f"{item!r}: expected sensor=Zone")
            out[sensor] = zone
        for zone in out.values():
            try:
                ZoneInfo(zone)
            except (ZoneInfoNotFoundError, ValueError):
                raise ValueError(f"unknown time zone {zone!r}") from None
        return out

    @property
    def window_ms(self) -> int:
        return self.window_s * 1000

    def redacted(self) -> dict[str, object]:
        out = dataclasses.asdict(self)
        for name in out:
            if any(w in name for w in SECRET_WORDS):
                out[name] = "***"
        parts = urlsplit(self.broker)
        if parts.password:
            out["broker"] = self.broker.replace(parts.password, "***")
        # a chat system's webhook URL is its secret: show where it goes, not the path
        out["alert_webhooks"] = ",".join(f"{urlsplit(u).scheme}://{urlsplit(u).netloc}/***" for u in self.webhook_urls)
        return out


#: What ``make run`` (compose/run.sh) started, written while it runs, so that the commands run beside it
#: (``faust -A app blocks``, ``ship``, ...) reach that deployment and no other: ``KEY=VALUE`` lines.
DEPLOYMENT_FILE = os.path.join("run", "deployment.env")
DEPLOYMENT_KEYS = {"FLOWSIGHT_BROKER", "FLOWSIGHT_WEB_PORT", "FLOWSIGHT_TLS_CERT", "FLOWSIGHT_TOPIC_PREFIX",
                   "FLOWSIGHT_APP_ID", "FLOWSIGHT_PARTITIONS"}


def deployment_defaults(env: Mapping[str, str]) -> dict[str, str]:
    """The settings of the deployment ``make run`` started (under ``$FLOWSIGHT_VAR``, default ``var/`` of the
    repository), for the variables the environment does not set; {} when none runs."""
    var = env.get("FLOWSIGHT_VAR") or os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "var")
    try:
        with open(os.path.join(var, DEPLOYMENT_FILE)) as f:
            lines = f.read().splitlines()
    except OSError:
        return {}
    out = {}
    for line in lines:
        key, sep, value = line.partition("=")
        if sep and key in DEPLOYMENT_KEYS and value:
            out[key] = value
    return out


#: (lowest, highest) for every integer setting.
_RANGES: dict[str, tuple[int, int]] = {
    "partitions": (1, 1024),
    "replication": (1, 5),
    "window_s": (0, 86400),
    "lateness_s": (0, 86400),
    "idle_flush_s": (1, 3600),
    "live_idle_flush_s": (1, 86400),
    "max_clock_jump_s": (60, 10 * 365 * 86400),
    "max_open_flows": (1000, 100_000_000),
    "chunk_bytes": (256 * 1024, 64 * 1024 * 1024),
    "malloc_keep_mb": (0, 4096),
    "max_upload_bytes": (512 * 1024, 1 << 40),
    "web_port": (1, 65535),
    "session_timeout_s": (6, 300),
    "standby_replicas": (0, 8),
    "produce_timeout_s": (1, 600),
    "placebo_interval_s": (2, 86400),
    "alert_budget": (1, 1000),
    "alert_suppress_s": (0, 7 * 86400),
    "alert_cap": (1, 100000),
    "host_capacity": (0, 65536),
    "max_concurrent_uploads": (1, 1024),
    "sensor_max_concurrent_uploads": (1, 1024),
    "max_long_polls": (1, 100000),
    "long_poll_max_s": (0, 60),
    "query_max_s": (1, 600),
    "webhook_attempts": (1, 20),
    "flows_retention_bytes": (1 << 20, 1 << 50),
    "flows_index_every": (1, 1 << 20),
    "sensor_uploads_per_min": (1, 1000000),
    "spool_min_free_bytes": (0, 1 << 50),
    "client_idle_timeout_s": (1, 3600),
    "min_upload_rate": (0, 1 << 40),
}
KAFKA_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
#: Variables with the prefix that are read elsewhere: the launchers (VAR), the tests (PCAPS,
#: TEST_KAFKA_PORT), the benchmarks (PEER_TOOLS) and the shippers (SENSOR, TOKEN).
_OTHER_VARS = {"FLOWSIGHT_VAR", "FLOWSIGHT_PCAPS", "FLOWSIGHT_TEST_KAFKA_PORT", "FLOWSIGHT_PEER_TOOLS",
               "FLOWSIGHT_SENSOR", "FLOWSIGHT_TOKEN"}
