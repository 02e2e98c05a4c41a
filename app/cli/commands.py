"""Project commands of ``faust -A app``.

    faust -A app pcap2flows FILE [FILE...] [--window S] [--format jsonl|csv] [--inner-tunnels]

prints the flow records the pipeline would emit for those captures; no broker needed.

    faust -A app ship FILE [FILE...] [--url URL] [--token-file F] [--sensor NAME] [--remove | --done-dir DIR]

uploads capture files with retries and a stable block id per file (see app/cli/ship.py).

    faust -A app export FILE [FILE...] [--v5 HOST:PORT,...] [--ipfix HOST:PORT,...] [--window S] [--pace S]

replays the flow records of capture files to NetFlow v5 and/or IPFIX collectors over UDP; no broker needed.

    faust -A app token NAME --file F [--sensor | --api]

makes a new token for sensor or API client NAME, appends its salted hash to F and prints the token
once (see app/api/auth.py). NAME * with --sensor makes a relay token that may upload as any sensor.
"""
from __future__ import annotations

import sys

from faust.cli import argument, option

from app.cli import pcap2flows as offline
from app.cli import ship as shipper
from app.main import app


@app.command(
    argument("files", nargs=-1, required=True),
    option("--window", type=int, default=None, help="Window length in seconds (default: FLOWSIGHT_WINDOW_S); 0 = "
                                                     "one record per flow for the whole capture."),
    option("--format", "fmt", type=str, default="jsonl", help="jsonl or csv."),
    option("--sensor", type=str, default="default", help="Sensor name put in the records."),
    option("--inner-tunnels", is_flag=True, default=False, help="Also emit the inner flow of tunnel packets."),
)
async def pcap2flows(self, files: tuple[str, ...], window: int | None, fmt: str, sensor: str,
                     inner_tunnels: bool) -> None:
    """Print the flow records of capture files, as the pipeline would emit them."""
    from app.main import settings

    if fmt not in ("jsonl", "csv"):
        raise self.UsageError(f"--format {fmt}: expected jsonl or csv")
    code = offline.run(list(files), settings.window_s if window is None else window, fmt, sensor,
                       inner_tunnels=inner_tunnels or settings.inner_tunnels)
    if code:
        sys.exit(code)


@app.command(
    argument("files", nargs=-1, required=True),
    option("--url", type=str, default=None,
           help="Flowsight's web address (default: this deployment's, FLOWSIGHT_WEB_PORT on localhost)."),
    option("--sensor", type=str, default=None, help="The capture point's name (default: the token's sensor)."),
    option("--token-file", type=str, default=None, help="File holding the sensor token (default: FLOWSIGHT_TOKEN)."),
    option("--remove", is_flag=True, default=False, help="Delete each file once it was accepted."),
    option("--done-dir", type=str, default=None, help="Move each file here once it was accepted."),
)
async def ship(self, files: tuple[str, ...], url: str, sensor: str | None, token_file: str | None, remove: bool,
               done_dir: str | None) -> None:
    """Upload capture files (or folders of them), oldest capture first, retrying until Flowsight accepts them
    (a progress bar on a terminal)."""
    bar = offline.ProgressBar(min_bytes=1 << 20)
    from app.main import settings
    url = url or settings.own_url
    rejected = await shipper.ship(list(files), url, sensor, remove=remove, done_dir=done_dir, progress=bar,
                                  log=lambda m: print(m, file=sys.stderr), token_file=token_file)
    if rejected:
        sys.exit(1)


@app.command(
    argument("files", nargs=-1, required=True),
    option("--v5", type=str, default="", help="NetFlow v5 collectors, host:port,..."),
    option("--ipfix", type=str, default="", help="IPFIX collectors, host:port,..."),
    option("--window", type=int, default=None, help="Window length in seconds (default: FLOWSIGHT_WINDOW_S)."),
    option("--sensor", type=str, default="default", help="Sensor name (IPFIX observation domain 0)."),
    option("--pace", type=float, default=0.001, help="Seconds between datagram batches (UDP has no flow control)."),
)
async def export(self, files: tuple[str, ...], v5: str, ipfix: str, window: int | None, sensor: str,
                 pace: float) -> None:
    """Send the flow records of capture files to NetFlow v5 / IPFIX collectors."""
    import asyncio

    from app.export import netflow
    from app.main import settings

    try:
        exporter = netflow.Exporter(netflow.parse_collectors(v5), netflow.parse_collectors(ipfix))
    except ValueError as exc:
        raise self.UsageError(str(exc)) from None
    if not v5 and not ipfix:
        raise self.UsageError("give --v5 and/or --ipfix collectors")
    n = 0
    for batch in offline.records_of_files(list(files), settings.window_s if window is None else window, sensor):
        for lo in range(0, len(batch), 30):
            exporter.send(batch[lo:lo + 30])
            await asyncio.sleep(pace)
        n += len(batch)
    print(f"{n} flow records, {exporter.datagrams} datagrams sent, {exporter.skipped} IPv6 records not in "
          f"NetFlow v5, {exporter.errors} send errors", file=sys.stderr)
    exporter.close()


async def _table_command(name: str, rows_of, as_json: bool) -> None:
    from app.cli import inspect
    from app.main import settings

    topic = f"{settings.app_id}-{name}-changelog"
    try:
        table = await inspect.read_changelog(settings.bootstrap, topic, **settings.kafka_kwargs())
    except LookupError as exc:
        print(f"flowsight: {exc}", file=sys.stderr)
        sys.exit(1)
    print(inspect.render(rows_of(table), as_json))


@app.command(option("--json", "as_json", is_flag=True, default=False, help="One JSON object per line."))
async def blocks(self, as_json: bool) -> None:
    """Uploaded blocks and how many of their chunks were decoded (from the blocks changelog)."""
    from app.cli import inspect
    await _table_command("blocks", inspect.blocks_rows, as_json)


@app.command(option("--json", "as_json", is_flag=True, default=False, help="One JSON object per line."))
async def flows_open(self, as_json: bool) -> None:
    """Flow rows of windows not closed yet (from the flows changelog)."""
    from app.cli import inspect
    await _table_command("flows", inspect.open_flow_rows, as_json)


@app.command(option("--json", "as_json", is_flag=True, default=False, help="One JSON object per line."))
async def baselines(self, as_json: bool) -> None:
    """Each sensor's models: L0 mean and sd, L1 expectation, level and dispersion, thresholds."""
    from app.cli import inspect
    await _table_command("scoring", inspect.baseline_rows, as_json)


@app.command(
    argument("name"),
    option("--file", "path", type=str, required=True, help="Token file to append the hash to (created 0600)."),
    option("--sensor", "kind", flag_value="sensor", default=True, help="An upload token for sensor NAME."),
    option("--api", "kind", flag_value="api", help="A token that reads flows, alerts and health."),
)
async def token(self, name: str, path: str, kind: str) -> None:
    """Make a token: append its salted hash to a token file and print the token once."""
    from app.api.auth import AuthError, add_token
    try:
        print(add_token(path, name))
    except (AuthError, OSError) as exc:
        raise self.UsageError(str(exc)) from None
    print(f"{kind} token for {name!r}: its hash is in {path}; this is the only copy of the token",
          file=sys.stderr)


@app.command(
    argument("filter_words", nargs=-1),
    option("--since", type=str, default=None, help="Flows that end at or after this capture time (RFC 3339 or ms)."),
    option("--until", type=str, default=None, help="Flows that start before this capture time (RFC 3339 or ms)."),
    option("--json", "as_json", is_flag=True, default=False, help="One JSON record per line."),
    option("--csv", "as_csv", is_flag=True, default=False, help="CSV with pcap2flows' columns."),
    option("--limit", type=int, default=0, help="Stop after this many records (0: all)."),
)
async def query(self, filter_words: tuple[str, ...], since: str | None, until: str | None, as_json: bool,
                as_csv: bool, limit: int) -> None:
    """Flow records of a range of capture time that match a filter in nfdump's syntax, e.g.
    faust -A app query --since 2026-12-01T10:00Z --until 2026-12-01T10:15Z 'src host 10.1.2.3 and dst port 22'"""
    import json

    from app.query import show
    from app.runtime.egress import pages
    from app.topics import flows

    q = _search_of(self, filter_words, since, until)
    n = 0
    if not as_json and not as_csv:
        print(show.HEADER)
    first = True
    async for page in pages(flows.get_topic_name(), q):
        recs = page["records"][:limit - n] if limit else page["records"]
        if as_json:
            sys.stdout.write("".join(json.dumps(r) + "\n" for r in recs))
        elif as_csv:
            sys.stdout.write(show.csv_rows(recs, header=first))
        else:
            sys.stdout.write("".join(show.table_row(r) + "\n" for r in recs))
        n, first = n + len(recs), False
        if limit and n >= limit:
            break
    print(f"{n} flow records", file=sys.stderr)


def _search_of(cmd, filter_words: tuple[str, ...], since: str | None, until: str | None):
    """The search a command's options ask for (a usage error saying what is wrong)."""
    from app.main import settings
    from app.query.top import Query

    try:
        return Query.parse(" ".join(filter_words), since, until, settings.window_ms)
    except ValueError as exc:
        raise cmd.UsageError(str(exc)) from None


@app.command(
    argument("filter_words", nargs=-1),
    option("--by", type=str, default="srcip", help="srcip, dstip, ip, srcport, dstport, port, proto, pair or sensor."),
    option("--metric", type=str, default="bytes", help="flows, packets or bytes."),
    option("-n", "n", type=int, default=10, help="How many."),
    option("--since", type=str, default=None, help="Flows that end at or after this capture time."),
    option("--until", type=str, default=None, help="Flows that start before this capture time."),
    option("--json", "as_json", is_flag=True, default=False, help="One JSON object per line."),
)
async def top(self, filter_words: tuple[str, ...], by: str, metric: str, n: int, since: str | None,
              until: str | None, as_json: bool) -> None:
    """The top N of an element by flows, packets or bytes, as nfdump -s gives it, over a range of capture time
    and a filter."""
    import json

    from app.query.top import Top, Visit
    from app.runtime.egress import pages
    from app.topics import flows

    q = _search_of(self, filter_words, since, until)
    try:
        agg = Top(by)
        agg.result(1, metric)
    except ValueError as exc:
        raise self.UsageError(str(exc)) from None
    async for _ in pages(flows.get_topic_name(), q, 1, visit=Visit(agg)):
        pass
    rows = agg.result(n, metric)
    if as_json:
        sys.stdout.write("".join(json.dumps(r) + "\n" for r in rows))
    else:
        print(f"{by:<40} {'flows':>10} {'packets':>12} {'bytes':>15}")
        for r in rows:
            print(f"{r['key']:<40} {r['flows']:>10} {r['packets']:>12} {r['bytes']:>15}")
    print(f"top {len(rows)} of {len(agg.sums)} by {metric}, over {agg.records} flow records", file=sys.stderr)
