"""The Python shipper sends a folder of old captures oldest capture first, whatever the files are called."""
from __future__ import annotations

from app.capture import synth
from app.cli.ship import first_time_ns, in_capture_order


def test_a_folder_is_shipped_in_order_of_its_captures_first_packets(tmp_path):
    folder = tmp_path / "cap"
    folder.mkdir()
    starts = {"c.pcap": 1_300_000_000, "a.pcap": 1_500_000_000, "b.pcap": 1_400_000_000}
    for name, start in starts.items():
        synth.generate(seed=3, conversations=3, packets=20, start_s=start, duration_s=5, path=str(folder / name))
    (folder / "notes.txt").write_text("not a capture")
    (folder / ".hidden.pcap").write_bytes(b"")
    single = tmp_path / "z.pcap"
    synth.generate(seed=4, conversations=3, packets=20, start_s=1_200_000_000, duration_s=5, path=str(single))
    got = in_capture_order([str(folder), str(single)])
    assert [p.rsplit("/", 1)[1] for p in got] == ["z.pcap", "c.pcap", "b.pcap", "a.pcap", "notes.txt"]
    assert first_time_ns(folder / "c.pcap") // 10 ** 9 == 1_300_000_000
    assert first_time_ns(folder / "notes.txt") is None


import asyncio  # noqa: E402
import shutil  # noqa: E402
from pathlib import Path  # noqa: E402

from aiohttp import web  # noqa: E402
from aiohttp.test_utils import TestServer  # noqa: E402

SHIP_SH = Path(__file__).resolve().parents[2] / "compose" / "shipper" / "ship.sh"


async def collector():
    """A stand-in for the ingest endpoint: 202 for every upload, remembering its block id and size."""
    got: list[tuple[str, int]] = []

    async def put(request):
        body = await request.read()
        got.append((request.headers.get("X-Block-Id", ""), len(body)))
        return web.json_response({"packets": 1, "chunks": 1}, status=202)
    app = web.Application()
    app.router.add_put("/v1/captures", put)
    server = TestServer(app)
    await server.start_server()
    return server, got


def ring(tmp_path, name, seed):
    path = tmp_path / name
    synth.generate(seed=seed, conversations=3, packets=20, start_s=1_700_000_000 + seed * 600, duration_s=5,
                   path=str(path))
    return path


async def test_the_python_shipper_keeps_both_files_of_a_missing_done_dir_and_skips_a_vanished_file(tmp_path):
    from app.cli.ship import ship
    server, got = await collector()
    try:
        a, b = ring(tmp_path, "a.pcap", 1), ring(tmp_path, "b.pcap", 2)
        done = tmp_path / "done"                      # does not exist: it once became a file, and b overwrote a
        lines: list[str] = []
        rejected = await ship([str(a), str(tmp_path / "gone.pcap"), str(b)], str(server.make_url("")), "tap",
                              done_dir=str(done), log=lines.append)
        assert sorted(p.name for p in done.iterdir()) == ["a.pcap", "b.pcap"]
        assert rejected == 1 and any("gone.pcap" in x and "no such file" in x for x in lines), lines
        assert len(got) == 2
        # the same name again with other content (a ring reusing ring.pcap0): another block id
        shutil.copy(done / "a.pcap", tmp_path / "ring.pcap0")
        await ship([str(tmp_path / "ring.pcap0")], str(server.make_url("")), "tap", log=lines.append)
        ring(tmp_path, "ring.pcap0", 3)
        await ship([str(tmp_path / "ring.pcap0")], str(server.make_url("")), "tap", log=lines.append)
        assert got[-1][0] != got[-2][0] and got[-1][0].startswith("ring.pcap0-")
    finally:
        await server.close()


async def test_ship_sh_skips_a_vanished_file_and_tells_a_reused_ring_name_apart(tmp_path):
    server, got = await collector()
    try:
        first = ring(tmp_path, "ring.pcap0", 1)
        listing = f"{tmp_path / 'ring.pcap1'}\n{first}\n"      # ring.pcap1 was overwritten before its turn
        proc = await asyncio.create_subprocess_exec("sh", str(SHIP_SH), "-u", str(server.make_url("")).rstrip("/"),
                                                    "-s", "tap", stdin=asyncio.subprocess.PIPE,
                                                    stderr=asyncio.subprocess.PIPE)
        _, err = await asyncio.wait_for(proc.communicate(listing.encode()), 60)
        assert "ring.pcap1: no such file" in err.decode() and len(got) == 1, err.decode()
        ring(tmp_path, "ring.pcap0", 2)                          # the ring came round: same name, new capture
        proc = await asyncio.create_subprocess_exec("sh", str(SHIP_SH), "-u", str(server.make_url("")).rstrip("/"),
                                                    "-s", "tap", str(first), stderr=asyncio.subprocess.PIPE)
        await asyncio.wait_for(proc.communicate(), 60)
        assert len(got) == 2 and got[0][0] != got[1][0] and got[1][0].startswith("ring.pcap0-"), got
    finally:
        await server.close()
