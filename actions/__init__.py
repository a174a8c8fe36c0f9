"""Turning alerts into effects: policies (pure) first; Slack and gateway adapters at the edge.

The adapters load on first use (the gateway: httpx; the interaction server and the Slack
notifier: aiohttp and slack-sdk), so the detector stage and replay, which only apply
policies, do not carry them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from spendbrake.actions._blocks import (
    mention,
    render_alert,
    render_followup,
    render_parent_update,
    render_resume_answer,
    render_snoozed,
    requester,
)
from spendbrake.actions._outbox import (
    Incident,
    Outbox,
    ResumeAnswer,
    Task,
    outcome_line,
    retry_worth_telling,
    scope_key,
)
from spendbrake.actions._outbox_file import OUTBOX_VERSION, dump_outbox, load_outbox
from spendbrake.actions._policy import (
    apply_policies,
    decide,
    pausable,
    refusal,
    screen_pauses,
)
from spendbrake.actions._retry import backoff_delay

if TYPE_CHECKING:
    from spendbrake.actions._gateway import (
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
    from spendbrake.actions._interactive import (
        RESPONSE_ORIGINS,
        Answer,
        Interaction,
        InteractionServer,
        Rejected,
        build_payload,
        parse_interaction,
        sign_request,
    )
    from spendbrake.actions._slack import SlackNotifier, how_to_fix

_GATEWAY = (
    "DryRunGateway",
    "Gateway",
    "GatewayOutcome",
    "LiteLLMGateway",
    "TargetKind",
    "WebhookGateway",
    "make_gateway",
    "sign_webhook",
    "verify_webhook_signature",
)
_INTERACTIVE = (
    "RESPONSE_ORIGINS",
    "Answer",
    "Interaction",
    "InteractionServer",
    "Rejected",
    "build_payload",
    "parse_interaction",
    "sign_request",
)
#: name -> the submodule that defines it, imported on first access.
_LAZY = {
    **dict.fromkeys(_GATEWAY, "_gateway"),
    **dict.fromkeys(_INTERACTIVE, "_interactive"),
    "SlackNotifier": "_slack",
    "how_to_fix": "_slack",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'spendbrake.actions' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


__all__ = [
    "OUTBOX_VERSION",
    "RESPONSE_ORIGINS",
    "Answer",
    "DryRunGateway",
    "Gateway",
    "GatewayOutcome",
    "Incident",
    "Interaction",
    "InteractionServer",
    "LiteLLMGateway",
    "Outbox",
    "Rejected",
    "ResumeAnswer",
    "SlackNotifier",
    "TargetKind",
    "Task",
    "WebhookGateway",
    "apply_policies",
    "backoff_delay",
    "build_payload",
    "decide",
    "dump_outbox",
    "how_to_fix",
    "load_outbox",
    "make_gateway",
    "mention",
    "outcome_line",
    "parse_interaction",
    "pausable",
    "refusal",
    "render_alert",
    "render_followup",
    "render_parent_update",
    "render_resume_answer",
    "render_snoozed",
    "requester",
    "retry_worth_telling",
    "scope_key",
    "screen_pauses",
    "sign_request",
    "sign_webhook",
    "verify_webhook_signature",
]
