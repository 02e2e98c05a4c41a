"""Project commands of ``faust -A app``.

    faust -A app pcap2flows FILE [FILE...] [--window S] [--format jsonl|csv] [--inner-tunnels]

prints the flow records the pipeline would emit for those captures; no broker needed.

    faust -A app ship FILE [FILE...] [--url URL] [--sensor NAME] [--remove | --done-dir DIR]

uploads capture files with retries and a stable block id per file (see app/ship.py).
"""
from __future__ import annotations

import sys

from faust.cli import argument, option

from app import offline, ship as shipper
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
    option("--url", type=str, default="http://localhost:6066", help="Flowsight's web address."),
    option("--sensor", type=str, default="default", help="The capture point's name (X-Sensor)."),
    option("--remove", is_flag=True, default=False, help="Delete each file once it was accepted."),
    option("--done-dir", type=str, default=None, help="Move each file here once it was accepted."),
)
async def ship(self, files: tuple[str, ...], url: str, sensor: str, remove: bool, done_dir: str | None) -> None:
    """Upload capture files, retrying until Flowsight accepts them (a progress bar on a terminal)."""
    bar = offline.ProgressBar(min_bytes=1 << 20)
    rejected = await shipper.ship(list(files), url, sensor, remove=remove, done_dir=done_dir, progress=bar,
                                  log=lambda m: print(m, file=sys.stderr))
    if rejected:
        sys.exit(1)
