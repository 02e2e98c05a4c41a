"""Thin Faust agents and timers wiring topics to the pure code in ``app``."""
