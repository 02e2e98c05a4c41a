"""The command line: ``faust -A app ...`` commands (``commands``), table inspection (``inspect``) and the
offline ``pcap2flows`` (which loads no Faust)."""
