"""Project commands of ``faust -A app``. Filled in by the offline tools."""
