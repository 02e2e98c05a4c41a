"""Changelog-backed tables. Rows are JSON; their shapes are documented here.

``blocks``      ``"sensor~block id"`` -> ``{"sensor": str, "sha256": hex of the whole upload, "chunks": how many,
                "done": [[lo, hi], ...] chunk indexes decoded, "chunk_bytes": the chunk size it was cut with}``:
                the block's own row, which ingest reads (its lane 0's chunks, and every other lane's reports);
                ``"sensor~block id@lane"`` -> the same for the chunks of another lane (agents/decode.py)
``flows``       ``"o|partition|window_ms|chunk|sensor~block"`` -> the parts ``[window_ms, flow key, packets, bytes,
                first_ms, last_ms, flags]`` that one flow-parts message brought to an open window (or
                that whole message, when all its parts are of that window);
                ``"c|partition|window_ms|sensor"`` -> ``{"closed_ms": when it closed (message time),
                "a": {"sensor~block": [[lo, hi], ...]} chunks applied}`` for a closed window of a sensor
                (app/flows/windows.py; an older version wrote ``"c|partition|window_ms"`` for every sensor at once)
``export_marks`` ``"p<partition>"`` -> ``{"offset": N}``: where export to collectors began on that flows partition
                (agents/export.py; an older version kept a time in ms, read as offset 0)
``watermarks``  ``"p<partition>|sensor"`` -> :meth:`app.flows.clock.SensorClock.to_json`, that sensor's capture clock
                on the partition: highest capture time, flushed floor, blocks in flight, a jump held as damaged
``scoring``     ``"clock|SENSOR"`` -> :meth:`app.flows.complete.SensorProgress.to_json` (every partition's frontier of
                the sensor, windows scored, records that missed their score); ``"pending|SENSOR|window|partition"``
                -> that partition's summary of a window not scored yet: the window-summaries message as it came
                (``{window, partition, sensors: {SENSOR: Summary}}``); ``"pending|SENSOR|partition|window|batch"``
                -> a message of many windows' summaries, while any of them waits; ``"sensor|NAME"`` ->
                :meth:`app.detect.scorer.SensorScorer.state`; ``"suppress|TYPE|ENTITY"`` -> until when (ms)
                an analyst suppressed it. Rows of an older version (``completer``, ``pending|window|partition``,
                ``actions``) are read and rewritten. Row keys: :class:`app.records.ScoringRows`.
``entities``    ``"sensor|source address"`` -> :meth:`app.detect.entities.Actor.to_json`: what the detectors per
                entity keep of that actor (sliding counts, sketches, outside addresses it talks to, habits)
"""
from __future__ import annotations

from app.main import app, settings

_n = settings.partitions
_rocks = {"block_cache_size": 8 << 20, "block_cache_compressed_size": 0}

blocks = app.Table("blocks", default=None, partitions=_n, key_type=str,
                   options=_rocks, help="Which chunks of each uploaded block were decoded.")
# a slice holds up to a whole chunk's parts for one partition
# rows are JSON written by app.flows.windows (value_type bytes: raw, as a slice is often the message as it came)
flows = app.Table("flows", default=None, partitions=_n, key_type=str, value_type=bytes,
                  options=_rocks,
                  extra_topic_configs={"max.message.bytes": str(settings.chunk_bytes + (1 << 20))},
                  help="Open capture-time windows as the parts each message brought them, and closed windows.")
watermarks = app.Table("watermarks", default=None, partitions=_n, key_type=str,
                       options=_rocks, help="Each sensor's capture clock on each flow-parts partition.")
export_marks = app.Table("export_marks", default=None, partitions=_n, key_type=str, options=_rocks,
                         help="Where export to NetFlow/IPFIX collectors began on each flows partition (offset).")
# one partition, like its source topic window-summaries; a scorer state can exceed the 1 MB default
# rows are JSON bytes written by agents/score.py: a row is encoded once, not for the store and the changelog
scoring = app.Table("scoring", default=None, partitions=1, key_type=str, value_type=bytes, options=_rocks,
                    extra_topic_configs={"max.message.bytes": str(settings.chunk_bytes + (1 << 20))},
                    help="Scoring: 'clock|NAME' holds a sensor's partition frontiers and late counts, "
                         "'pending|NAME|window|partition' (and '...|batch') its summaries not scored yet, "
                         "'sensor|NAME' its models, calibration history and alert episodes, "
                         "'suppress|TYPE|ENTITY' an analyst's suppression (until, ms).")
# co-partitioned with topic entity-flows (an actor's rows go to its partition); rows are JSON bytes written
# by agents/entities.py
entities = app.Table("entities", default=None, partitions=_n, key_type=str, value_type=bytes, options=_rocks,
                     help="What the detectors per entity keep of each actor ('sensor|source address').")
