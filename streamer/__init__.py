"""Consumes usage events and rolls spend up into event-time windows (see the streamer issue)."""

__all__: list[str] = []
