"""Capture files in: pcap and pcapng readers (``pcap``), the shipper of a capture server (``ship``) and the
synthetic captures of the placebo source (``synth``). Pure code: no Faust, no Kafka."""
