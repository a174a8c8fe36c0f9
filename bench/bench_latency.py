"""Runaway to effect: how long from a runaway event being produced to the Slack message
at a fake Slack server and to the block call at a fake LiteLLM, under background traffic.

Everything real but the two outside services: the embedded broker, ``spendbrake worker``
(ingest, detect and act stages in one process, as deployed by default), the real
slack_sdk client and httpx. Background traffic (default 10k events/s, live event time) keeps
the ingest busy. Each sample is one event that takes a team past its daily budget's hard
stop: the detector stage alerts and the policy pauses the team's batch key on the spot,
so what is measured is processing time, not the detector's event-time windows.

    python -m bench latency [--samples 20] [--rate 10000] [--json]
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
    budgets = "".join(
        f"  - name: lat-{i}\n    scope: {{team: lat-{i}}}\n    amount_usd: 1.0\n    period: day\n"
        for i in range(n)
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


def run(samples: int, rate: float, gap_s: float, say: Any = print) -> dict[str, Any]:
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
            ),
            stdout=subprocess.DEVNULL,
            stderr=log,
            env={**os.environ, "SPENDBRAKE_LOG_LEVEL": "WARNING"},
        )
        stop = threading.Event()
        counted: list[tuple[int, float]] = []
        traffic = threading.Thread(
            target=_run_background, args=(bootstrap, "spend.events", rate, stop, counted)
        )
        to_slack: list[float] = []
        to_gateway: list[float] = []
        try:
            traffic.start()
            time.sleep(8.0)  # the group joins and the background settles
            for i in range(samples):
                key = f"lat-{i}-batch"
                produced = time.time()
                raw = _event(f"lat-{i}", key, 5.0, "batch", produced)
                asyncio.run(_inject(bootstrap, "spend.events", [raw]))
                blocked = gateway.wait_for(lambda k=key: gateway.is_blocked(k), 30)
                posted = slack.wait_for(lambda k=key: _first_post(slack, k) is not None, 30)
                if not (blocked and posted):
                    say(f"sample {i}: no effect within 30 s (blocked={blocked}, posted={posted})")
                    continue
                call = next(c for c in gateway.calls if c["body"].get("key") == key)
                to_gateway.append(call["time"] - produced)
                to_slack.append(_first_post(slack, key) - produced)  # type: ignore[operator]
                say(
                    f"sample {i + 1}/{samples}: slack {to_slack[-1]:.3f}s, "
                    f"gateway {to_gateway[-1]:.3f}s"
                )
                time.sleep(gap_s)
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
    return {
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
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    say = (lambda *a: print(*a, file=sys.stderr)) if args.json else print
    result = run(args.samples, args.rate, args.gap, say)
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


if __name__ == "__main__":
    main()
