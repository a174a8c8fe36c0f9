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
from actions._interactive import (
    Interaction,
    InteractionServer,
    Rejected,
    build_payload,
    parse_interaction,
    sign_request,
)
from actions._outbox import Incident, Outbox, Task
from actions._policy import apply_policies, pausable
from actions._retry import backoff_delay

__all__ = [
    "DryRunGateway",
    "Gateway",
    "GatewayOutcome",
    "Incident",
    "Interaction",
    "InteractionServer",
    "LiteLLMGateway",
    "Outbox",
    "Rejected",
    "TargetKind",
    "Task",
    "WebhookGateway",
    "apply_policies",
    "backoff_delay",
    "build_payload",
    "make_gateway",
    "parse_interaction",
    "pausable",
    "sign_request",
    "sign_webhook",
    "verify_webhook_signature",
]
