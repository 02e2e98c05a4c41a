"""Scoring of whole windows: the models (``models``), the attention control that keeps alerts within their
budget (``attention``) and the per-sensor scorer that runs the ladder (``scorer``). Pure code."""
