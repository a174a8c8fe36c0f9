"""Turning alerts into effects: policies (pure) first; Slack and gateway adapters at the edge."""

from actions._policy import apply_policies, pausable

__all__ = ["apply_policies", "pausable"]
