"""Flow records out: NetFlow v5 and IPFIX datagrams (``netflow``) and CSV or JSON-lines text rendered in
compiled code (``text``). Pure code."""
