"""The HTTP API's rules, as pure code: tokens and sessions (``auth``) and resumable cursors (``cursor``)."""
