"""Turning alerts into effects: policies (pure) first; Slack and gateway adapters at the edge."""

from actions._gateway import (
    DryRunGateway,
    Gateway,
    GatewayOutcome,
    LiteLLMGateway,
    TargetKind,
    WebhookGateway,
    make_gateway,
    sign_webhook,
    verify_webhook_signature,
)
from actions._outbox import Incident, Outbox, Task
from actions._policy import apply_policies, pausable
from actions._retry import backoff_delay

__all__ = [
    "DryRunGateway",
    "Gateway",
    "GatewayOutcome",
    "Incident",
    "LiteLLMGateway",
    "Outbox",
    "TargetKind",
    "Task",
    "WebhookGateway",
    "apply_policies",
    "backoff_delay",
    "make_gateway",
    "pausable",
    "sign_webhook",
    "verify_webhook_signature",
]
