"""Every format Flowsight writes, defined once: names, flow keys, flowIds, flow records, table rows and
messages. Pure code (no Faust).
"""
from __future__ import annotations

import re

#: A sensor name or a block id: what a capture server may call itself and its uploads.
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"
NAME = re.compile(NAME_PATTERN)
