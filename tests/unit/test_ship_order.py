"""The Python shipper sends a folder of old captures oldest capture first, whatever the files are called."""
from __future__ import annotations

from app import synth
from app.ship import first_time_ns, in_capture_order


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
