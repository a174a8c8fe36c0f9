"""Turns alert verdicts into Slack messages and gateway calls (see the actions issue)."""

__all__: list[str] = []
