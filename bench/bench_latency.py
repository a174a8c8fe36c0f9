"""Runaway to effect: how long from a runaway event being produced to the Slack message
at a fake Slack server and to the block call at a fake LiteLLM, under background traffic.

Everything real but the two outside services: the embedded broker, ``spendbrake worker``
(ingest, detect and act stages in one process, as deployed by default), the real
slack_sdk client and httpx. Background traffic (default 10k events/s, live event time) keeps
the ingest busy. Each sample is one event that takes a team past its daily budget's hard
stop: the detector stage alerts and the policy pauses the team's batch key on the spot,
so what is measured is processing time, not the detector's event-time windows.

``--faults`` is the rate-limit case (issue 20): before each sample Slack is set to answer
429 (``Retry-After: --retry-after``) to its next three calls and the gateway 503 to its
next five, and each sample also takes a second team with only a critical key past its
budget (alerted, never paused). It reports the critical alert's trigger-to-Slack time
(target: within 10 s) beside the others, and checks each effect arrived exactly once.

    python -m bench latency [--samples 20] [--rate 10000] [--faults] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer

from spendbrake._broker import EmbeddedBroker, ensure_topics
from spendbrake.fakes.gateway import FakeGateway
from spendbrake.fakes.slack import FakeSlack

from ._worker import worker_command

MASTER = "sk-bench-master"
TOKEN = "xoxb-bench"


def _event(team: str, key: str, cost: float, workload: str, now: float) -> bytes:
    return orjson.dumps(
        {
            "schema_version": 1,
            "event_id": uuid.uuid4().hex,
            "ts": now,
            "provider": "openai",
            "model": "gpt-4o-mini",
            "input_tokens": 1200,
            "output_tokens": 300,
            "cost_usd": cost,
            "team": team,
            "feature": "bench",
            "api_key": key,
            "environment": "prod",
            "workload": workload,
        }
    )


def _config(path: Path, bootstrap: str, slack: FakeSlack, gateway: FakeGateway, n: int) -> None:
    budgets = (
        "".join(
            f"  - name: {team}-{i}\n    scope: {{team: {team}-{i}}}\n    amount_usd: 1.0\n"
            "    period: day\n"
            for i in range(n)
            for team in ("lat", "crit")
        )
        + "  - name: warmup\n    scope: {team: warmup}\n    amount_usd: 1.0\n    period: day\n"
    )
    path.write_text(
        f"kafka:\n  bootstrap_servers: {bootstrap}\n"
        "dimensions: [[], [team]]\n"
        "detectors: []\n"
        f"budgets:\n{budgets}"
        f"slack:\n  token: {TOKEN}\n  base_url: {slack.base_url}\n  cooldown_s: 0\n"
        f"gateway:\n  kind: litellm\n  url: {gateway.url}\n  master_key: {MASTER}\n"
        # The injected runaway keys may be paused (the operator's word, not the events').
        'keys:\n  rules:\n    - {api_key: "lat-*-batch", workload: batch}\n'
        '    - {api_key: "warmup-k", workload: batch}\n'
        '    - {api_key: "crit-*-prod", workload: critical}\n'
    )


async def _background(
    bootstrap: str, topic: str, rate: float, stop: threading.Event
) -> tuple[int, float]:
    """Produce ``rate`` events/s (live event time) until ``stop``: (count, seconds)."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, enable_idempotence=False, linger_ms=5, acks=1
    )
    await producer.start()
    sent = 0
    tick = 0.1
    try:
        started = time.monotonic()
        while not stop.is_set():
            due = int(rate * (time.monotonic() - started)) - sent
            now = time.time()
            for i in range(max(due, 0)):
                raw = _event(f"bg-{i % 8}", f"bg-key-{i % 64}", 0.0001, "standard", now)
                await producer.send(topic, raw, key=raw[15:47])
            sent += max(due, 0)
            await asyncio.sleep(tick)
        await producer.flush()
        elapsed = time.monotonic() - started
    finally:
        await producer.stop()
    return sent, elapsed


def _run_background(
    bootstrap: str, topic: str, rate: float, stop: threading.Event, out: list[tuple[int, float]]
) -> None:
    out.append(asyncio.run(_background(bootstrap, topic, rate, stop)))


async def _inject(bootstrap: str, topic: str, events: list[bytes]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False)
    await producer.start()
    try:
        for raw in events:
            await producer.send_and_wait(topic, raw)
    finally:
        await producer.stop()


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def run(
    samples: int,
    rate: float,
    gap_s: float,
    say: Any = print,
    faults: bool = False,
    retry_after_s: float = 1.0,
) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="spendbrake-latency-"))
    with (
        EmbeddedBroker() as broker,
        FakeSlack(token=TOKEN) as slack,
        FakeGateway(master_key=MASTER, strict_key_format=False) as gateway,
    ):
        bootstrap = broker.bootstrap_servers
        names = [
            "spend.events",
            "spend.dlq",
            "spend.rollups",
            "spend.alerts",
            "spend.actions",
            "spend.traces",
        ]
        asyncio.run(ensure_topics(bootstrap, names, 4))
        config = tmp / "config.yaml"
        _config(config, bootstrap, slack, gateway, samples)
        log = open(tmp / "worker.log", "wb")  # noqa: SIM115 - closed below
        worker = subprocess.Popen(
            worker_command(
                config,
                tmp / "state",
                "--flush-interval",
                "0.1",
                "--checkpoint-interval",
                "1",
                "--metrics-port",
                "0",
                "--act-from",
                "earliest",
            ),
            stdout=subprocess.DEVNULL,
            stderr=log,
            env={
                **os.environ,
                "SPENDBRAKE_LOG_LEVEL": os.environ.get("SPENDBRAKE_LOG_LEVEL", "WARNING"),
            },
        )
        stop = threading.Event()
        counted: list[tuple[int, float]] = []
        traffic = threading.Thread(
            target=_run_background, args=(bootstrap, "spend.events", rate, stop, counted)
        )
        to_slack: list[float] = []
        to_gateway: list[float] = []
        to_critical: list[float] = []
        try:
            traffic.start()
            time.sleep(8.0)  # the background settles
            # A warm-up runaway, not counted: the ingest's consumer group can take longer
            # than the settling time to join, and the first sample measured that wait.
            warm = time.time()
            raw_warm = _event("warmup", "warmup-k", 5.0, "batch", warm)
            asyncio.run(_inject(bootstrap, "spend.events", [raw_warm]))
            ready = gateway.wait_for(lambda: gateway.is_blocked("warmup-k"), 60)
            say(f"warm-up: {'effects' if ready else 'NO effect'} after {time.time() - warm:.1f} s")
            for i in range(samples):
                key, critical = f"lat-{i}-batch", f"crit-{i}-prod"
                if faults:
                    slack.fail_with(429, retry_after=retry_after_s, times=3)
                    gateway.fail_with(503, times=5)
                produced = time.time()
                raw = [_event(f"lat-{i}", key, 5.0, "batch", produced)]
                if faults:
                    raw.append(_event(f"crit-{i}", critical, 5.0, "critical", produced))
                asyncio.run(_inject(bootstrap, "spend.events", raw))
                wait_s = 60.0 if faults else 30.0
                blocked = gateway.wait_for(lambda k=key: gateway.is_blocked(k), wait_s)
                posted = slack.wait_for(lambda k=key: _first_post(slack, k) is not None, wait_s)
                alerted = not faults or slack.wait_for(
                    lambda k=critical: _first_post(slack, k) is not None, wait_s
                )
                if not (blocked and posted and alerted):
                    say(
                        f"sample {i}: no effect within {wait_s:.0f} s (blocked={blocked}, "
                        f"posted={posted}, critical alerted={alerted})"
                    )
                    continue
                call = next(
                    c for c in gateway.calls if c["body"].get("key") == key and c["status"] == 200
                )
                to_gateway.append(call["time"] - produced)
                to_slack.append(_first_post(slack, key) - produced)  # type: ignore[operator]
                line = (
                    f"sample {i + 1}/{samples}: slack {to_slack[-1]:.3f}s, "
                    f"gateway {to_gateway[-1]:.3f}s"
                )
                if faults:
                    to_critical.append(_first_post(slack, critical) - produced)  # type: ignore[operator]
                    line += f", critical alert {to_critical[-1]:.3f}s"
                say(line)
                time.sleep(gap_s)
            if faults:
                time.sleep(3.0)  # anything sent twice would arrive by now
                slack.clear_faults()
                gateway.clear_faults()
        finally:
            stop.set()
            traffic.join(60)
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(30)
            except subprocess.TimeoutExpired:
                worker.kill()
            log.close()
    sent, seconds = counted[0] if counted else (0, 1.0)
    keys = Counter(
        (m.get("metadata") or {}).get("event_payload", {}).get("dedupe_key") for m in slack.messages
    )
    blocks = Counter(
        c["body"].get("key") for c in gateway.calls if c["status"] == 200 and "/block" in c["path"]
    )
    return {
        "faults": "slack 429 x3, gateway 503 x5 per sample" if faults else None,
        "messages_sent_twice": sum(1 for k, n in keys.items() if k is not None and n > 1),
        "blocks_applied_twice": sum(1 for n in blocks.values() if n > 1),
        "critical_p50_s": round(statistics.median(to_critical), 3) if to_critical else None,
        "critical_max_s": round(max(to_critical), 3) if to_critical else None,
        "critical_target_s": 10.0 if faults else None,
        "samples": len(to_slack),
        "background_events": sent,
        "background_rate_target": rate,
        "background_rate": round(sent / seconds),
        "slack_p50_s": round(statistics.median(to_slack), 3) if to_slack else None,
        "slack_p99_s": round(_percentile(to_slack, 0.99), 3) if to_slack else None,
        "gateway_p50_s": round(statistics.median(to_gateway), 3) if to_gateway else None,
        "gateway_p99_s": round(_percentile(to_gateway, 0.99), 3) if to_gateway else None,
        "target_p99_s": 2.0,
    }


def _first_post(slack: FakeSlack, key: str) -> float | None:
    for message in slack.messages:
        if key in orjson.dumps(message.get("blocks") or message.get("text") or "").decode():
            return message["received_at"]
    return None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--rate", type=float, default=10_000.0, help="background events/s")
    parser.add_argument("--gap", type=float, default=1.0, help="seconds between samples")
    parser.add_argument(
        "--faults",
        action="store_true",
        help="per sample: Slack 429 x3, gateway 503 x5, and a critical key's alert too",
    )
    parser.add_argument("--retry-after", type=float, default=1.0, help="Slack's 429 Retry-After")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    say = (lambda *a: print(*a, file=sys.stderr)) if args.json else print
    result = run(args.samples, args.rate, args.gap, say, args.faults, args.retry_after)
    if args.json:
        print(orjson.dumps(result).decode())
        return
    print(
        f"{result['samples']} samples under {result['background_rate']} events/s of background "
        f"traffic (target {args.rate:.0f})\n"
        f"runaway event -> Slack message:  p50 {result['slack_p50_s']} s, "
        f"p99 {result['slack_p99_s']} s\n"
        f"runaway event -> gateway block:  p50 {result['gateway_p50_s']} s, "
        f"p99 {result['gateway_p99_s']} s   (target p99 <= 2 s)"
    )
    if args.faults:
        print(
            f"under {result['faults']}: critical alert -> Slack p50 {result['critical_p50_s']} s, "
            f"max {result['critical_max_s']} s (target <= 10 s); messages sent twice: "
            f"{result['messages_sent_twice']}, blocks applied twice: "
            f"{result['blocks_applied_twice']}"
        )


if __name__ == "__main__":
    main()
