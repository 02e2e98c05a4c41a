"""Capture files in: pcap and pcapng readers (``pcap``) and the
synthetic captures of the placebo source (``synth``). Pure code: no Faust, no Kafka."""
