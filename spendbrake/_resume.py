"""``spendbrake resume``: unblock keys or a team at the gateway now, and audit it.

The operator's undo of a pause. It calls the gateway directly (an on-call wants the
answer in the terminal, not in a queue), retries a few times with backoff, and writes one
audit record per target to the actions topic, as the action stage does for its own calls.

An operator at the terminal holds the gateway's credentials and decides: any key or team
may be named, paused by SpendBrake or not. The audit says so: incident and kind
``manual``, source ``cli:USER``. (A Slack "Resume" button goes through the action stage
instead, which only unblocks what it paused for that incident.)
"""

from __future__ import annotations

import asyncio
import getpass
import random
import time
from collections.abc import Callable

import msgspec
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from spendbrake.actions import (
    GatewayOutcome,
    Outbox,
    TargetKind,
    Task,
    backoff_delay,
    make_gateway,
)
from spendbrake.schemas import ActionRecord, Alert, Config, visible

ATTEMPTS = 5
#: How long the audit may take to reach Kafka before the command says it was not written.
AUDIT_TIMEOUT_S = 30.0


async def resume(
    config: Config,
    targets: list[tuple[TargetKind, str]],
    reason: str,
    say: Callable[[str], None],
) -> bool:
    """Unblock every target; True when all of them are unblocked (or a dry run).

    ``say`` gets one line per target, then where the audit went: plain text (print it
    as text, not markup), each name through ``visible`` (a key is whatever the operator
    typed or pasted from Slack, the detail is the gateway's answer).
    """
    gateway = make_gateway(config.gateway)
    user = getpass.getuser()
    stamp = time.time()
    book = Outbox(slack_enabled=False)
    rng = random.Random()
    all_ok = True
    # No alert asked for this: the audit record names the operator's reason instead.
    alert = Alert(kind="manual", id="manual", seq=0, severity="info", reason=reason)
    try:
        for kind, target in targets:
            task = Task(
                f"resume/manual/{kind}/{target}@{stamp:.3f}",
                "gateway",
                "unblock",
                "manual",
                msgspec.structs.replace(alert, scope={kind: target}),
                target,
                source=f"cli:{user}",
                first_attempt_at=stamp,
            )
            outcome = GatewayOutcome(False, False, None, "not tried")
            while task.attempts < ATTEMPTS:
                task.attempts += 1
                outcome = await gateway.unblock(kind, target, idempotency_key=task.id)
                if outcome.ok or outcome.permanent:
                    break
                await asyncio.sleep(backoff_delay(task.attempts, cap=8.0, rng=rng))
            result = "dry_run" if outcome.dry_run else "ok" if outcome.ok else "failed"
            all_ok &= outcome.ok
            book.record(task, result, outcome.detail, time.time())
            say(
                f"{kind} {visible(target)}: {result} "
                f"({visible(outcome.detail)}, {task.attempts} attempt(s))"
            )
    finally:
        await gateway.aclose()
    try:
        await asyncio.wait_for(_audit(config, list(book.audit.values())), AUDIT_TIMEOUT_S)
    except (KafkaError, OSError) as exc:  # a timeout is an OSError too
        # What was done at the gateway is said above; say what is missing, and its effect.
        why = str(exc) or type(exc).__name__
        say(
            f"audit NOT written to {config.kafka.topics.actions} at "
            f"{config.kafka.bootstrap_servers} ({why}): the running action stage does not "
            "know of this resume, and a pause it still retries for these keys would block "
            "them again. Run the same command once Kafka answers (unblocking twice is safe)."
        )
        return False
    say(f"audited on {config.kafka.topics.actions}: {len(book.audit)} record(s), source cli:{user}")
    if any(kind == "team" for kind, _ in targets):
        # Unblocking a team leaves its blocked keys blocked (LiteLLM checks both).
        say(
            "note: SpendBrake pauses keys, never teams; keys it paused stay paused until "
            "named here or resumed in Slack"
        )
    return all_ok


async def _audit(config: Config, records: list[ActionRecord]) -> None:
    producer = AIOKafkaProducer(**config.kafka.client_args(), acks="all", enable_idempotence=False)
    try:
        await producer.start()
        for record in records:
            await producer.send_and_wait(
                config.kafka.topics.actions,
                record.to_json(),
                key=record.id.encode(),
            )
    finally:
        await producer.stop()
