"""Packets to flow records, in the order the pipeline runs: ``decode`` (frames to packet columns),
``aggregate`` (compiled grouping), ``parts`` (partial flows per chunk), ``clock`` (a capture clock per sensor),
``windows`` (open windows, closing, records), ``complete`` (whole windows over partitions), ``summary`` (what
scoring reads of a window) and ``ranges`` (chunk sets). Pure code: no Faust, no Kafka."""
