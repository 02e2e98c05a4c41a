"""Upload capture files to Flowsight with retries: the engine of ``faust -A app ship``.

No Faust here. Same semantics as compose/shipper/ship.sh: a stable block id per
file (its name, size and first capture time), so a retried upload is counted once; 5xx, 408, 429 and connection
errors are retried with backoff; another 4xx is final; a file is deleted or moved
only after a 2xx.
"""
from __future__ import annotations

import asyncio
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import aiohttp

MAX_DELAY_S = 60


@dataclass
class Result:
    """What the server answered to the upload of one file."""

    path: str
    status: int
    answer: dict


def first_time_ns(path: str | Path) -> int | None:
    """The earliest capture time in the first MiB of a capture file; None if it holds no readable packet."""
    from app.capture import pcap
    try:
        with open(path, "rb") as f:
            idx = pcap.index(f.read(1 << 20))
    except (OSError, ValueError):
        return None
    return int(idx.ts_ns[:idx.packets].min()) if idx.packets else None


def in_capture_order(names: list[str]) -> list[str]:
    """The files named, and the files of the folders named, oldest capture first (by the time of their first
    packets), so that a sensor's clock moves forward as a live capture's would; unreadable files last."""
    files = []
    for name in names:
        p = Path(name)
        files += sorted(str(f) for f in p.iterdir() if f.is_file() and not f.name.startswith(".")) if p.is_dir() \
            else [name]
    keyed = [(first_time_ns(f), i, f) for i, f in enumerate(files)]
    return [f for t, i, f in sorted(keyed, key=lambda k: (k[0] is None, k[0] or 0, k[1]))]


def block_id(path: str | Path) -> str:
    """A stable id from the file's name, size and first capture time: a retry is counted once, and a new
    file under a name a ring reuses (``tcpdump -W``'s ring.pcap0) is a block of its own."""
    p = Path(path)
    return re.sub(r"[^A-Za-z0-9._:-]", "_", f"{p.name[:100]}-{p.stat().st_size}-{first_time_ns(p) or 0}")


def token_headers(token_file: str | None = None) -> dict[str, str]:
    """Authorization from a token file (first line) or FLOWSIGHT_TOKEN; none when neither is set."""
    import os
    token = Path(token_file).read_text().strip().splitlines()[0] if token_file else os.environ.get("FLOWSIGHT_TOKEN")
    return {"Authorization": f"Bearer {token.strip()}"} if token else {}


def retried(status: int) -> bool:
    """No answer, a timeout (408), too many requests (429) and server-side trouble (5xx) are retried."""
    return status in (0, 408, 429) or status >= 500


async def ship_file(session: aiohttp.ClientSession, url: str, path: Path, sensor: str | None, *,
                    tries: int | None = None, first_delay_s: float = 1.0, progress=None) -> Result:
    delay, attempt = first_delay_s, 0
    try:
        size, bid = path.stat().st_size, block_id(path)
    except FileNotFoundError:
        return Result(str(path), -1, {"error": "no such file (removed before it was shipped); skipped"})
    except OSError as exc:
        return Result(str(path), -1, {"error": f"cannot read it ({exc.strerror}); skipped"})
    while True:
        attempt += 1
        try:
            with path.open("rb") as f:
                async def body():
                    sent = 0
                    while piece := f.read(1 << 20):
                        sent += len(piece)
                        if progress:
                            progress(str(path), sent, size)
                        yield piece
                headers = {"Content-Type": "application/vnd.tcpdump.pcap", "X-Block-Id": bid,
                           "Content-Length": str(size), **({"X-Sensor": sensor} if sensor else {})}
                async with session.put(url.rstrip("/") + "/v1/captures", data=body(), headers=headers) as r:
                    answer = await r.json(content_type=None)
                    status = r.status
        except FileNotFoundError:
            return Result(str(path), -1, {"error": "no such file (removed before it was shipped); skipped"})
        except (TimeoutError, aiohttp.ClientError, ConnectionError, ValueError):
            status, answer = 0, {"error": "no answer"}
        if not retried(status):
            return Result(str(path), status, answer)
        if tries is not None and attempt >= tries:
            return Result(str(path), status, answer)
        await asyncio.sleep(delay)
        delay = min(delay * 2, MAX_DELAY_S)


async def ship(files: list[str], url: str, sensor: str | None, *, remove: bool = False,
               done_dir: str | None = None, progress=None, log=print, token_file: str | None = None) -> int:
    """Ship files one by one, oldest capture first (:func:`in_capture_order`; folders stand for their files);
    returns the number that were rejected (4xx)."""
    rejected = 0
    files = in_capture_order(files)
    if done_dir:
        if Path(done_dir).exists() and not Path(done_dir).is_dir():
            log(f"--done-dir {done_dir} is not a folder; nothing shipped")
            return len(files)
        Path(done_dir).mkdir(parents=True, exist_ok=True)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, sock_read=600),
                                     headers=token_headers(token_file)) as s:
        for name in files:
            path = Path(name)
            res = await ship_file(s, url, path, sensor, progress=progress)
            if 200 <= res.status < 300:
                log(f"{name}: {res.status} {res.answer.get('packets', '?')} packets in {res.answer.get('chunks')} "
                    f"chunks{' (already there)' if res.answer.get('duplicate') else ''}")
                if remove:
                    path.unlink(missing_ok=True)
                elif done_dir:
                    shutil.move(str(path), str(Path(done_dir) / path.name))
            elif res.status < 0:
                rejected += 1
                log(f"{name}: {res.answer['error']}")
            else:
                rejected += 1
                log(f"{name}: rejected with {res.status}: {res.answer.get('error')}")
    return rejected


def main(argv: list[str] | None = None) -> int:
    import argparse

    from app.cli.pcap2flows import ProgressBar

    ap = argparse.ArgumentParser(prog="flowsight-ship", description="Upload capture files to Flowsight.")
    ap.add_argument("files", nargs="+", help="capture files or folders of them (shipped oldest capture first)")
    ap.add_argument("--url", default=None, help="Flowsight's web address (default: this deployment's)")
    ap.add_argument("--sensor", default=None, help="sensor name (default: the one the token is for)")
    ap.add_argument("--token-file", help="file holding the sensor's token (default: FLOWSIGHT_TOKEN)")
    ap.add_argument("--remove", action="store_true", help="delete each file after it was accepted")
    ap.add_argument("--done-dir", help="move each file here after it was accepted")
    a = ap.parse_args(argv)
    bar = ProgressBar(min_bytes=1 << 20)
    if a.url is None:
        from app.settings import Settings
        a.url = Settings.from_env().own_url
    rejected = asyncio.run(ship(a.files, a.url, a.sensor, remove=a.remove, done_dir=a.done_dir, progress=bar,
                                log=lambda m: print(m, file=sys.stderr), token_file=a.token_file))
    return 1 if rejected else 0


if __name__ == "__main__":
    sys.exit(main())
