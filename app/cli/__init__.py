"""The command line: ``faust -A app ...`` commands (``commands``), table inspection (``inspect``), the
shipper of a capture server (``ship``) and the offline ``pcap2flows`` (which loads no Faust)."""
