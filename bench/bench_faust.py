"""The naive Faust pipeline of the ingest benchmark, run in its own process.

Written the way the Faust documentation shows a windowed aggregation: a
``faust.Record`` model, an agent that re-keys the stream with ``group_by``
(through a repartition topic) and a tumbling windowed ``Table`` summing cost
per team. Nothing here validates, dedupes, prices or handles late events; it
is the baseline, not a design. It reads the first ``--events`` records of the
topic and prints one JSON line: events, seconds from the first event reaching
the table to the last, events/s, and its peak RSS. Windows are Faust's default
(relative to the record timestamp, closed on wall-clock time).

    python -m bench faust --bootstrap HOST:PORT --topic T --events N --datadir DIR
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import faust
import orjson

from bench._output import peak_rss_mb


class SpendEvent(faust.Record, serializer="json"):
    event_id: str
    ts: str
    team: str
    cost_usd: float | None = None


def build(bootstrap: str, topic: str, events: int, datadir: str) -> faust.App:
    app = faust.App(
        f"bench-faust-{time.time_ns()}",
        broker=f"kafka://{bootstrap}",
        store="memory://",
        datadir=datadir,
        web_enabled=False,
        topic_partitions=4,
        topic_replication_factor=1,
        consumer_auto_offset_reset="earliest",
        # The embedded broker holds a new group's join for the whole rebalance
        # timeout (Faust's default is a minute); one member needs no wait.
        broker_rebalance_timeout=3.0,
        broker_session_timeout=10.0,
    )
    source = app.topic(topic, value_type=SpendEvent)
    spend = app.Table("spend_per_team", default=float).tumbling(60.0, expires=3600.0)
    seen = {"n": 0, "first": 0.0}

    @app.agent(source)
    async def sum_cost(stream: faust.StreamT[SpendEvent]) -> None:
        async for event in stream.group_by(SpendEvent.team):
            if seen["n"] == 0:
                seen["first"] = time.perf_counter()
            spend[event.team] += event.cost_usd or 0.0
            seen["n"] += 1
            if seen["n"] >= events:
                elapsed = time.perf_counter() - seen["first"]
                result = {
                    "events": seen["n"],
                    "seconds": elapsed,
                    "events_per_s": seen["n"] / elapsed,
                    "peak_rss_mb": peak_rss_mb(),
                }
                sys.stdout.write(orjson.dumps(result).decode() + "\n")
                sys.stdout.flush()
                # Faust's shutdown waits on commits and rebalances for seconds; the
                # figure is out and this process owns nothing worth a clean stop.
                os._exit(0)

    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--datadir", required=True, help="Faust's data directory (a temp dir)")
    args = parser.parse_args(argv)
    app = build(args.bootstrap, args.topic, args.events, args.datadir)
    worker = faust.Worker(
        app,
        loglevel=os.environ.get("BENCH_FAUST_LOG", "WARNING"),
        quiet=True,
        redirect_stdouts=False,
    )
    worker.execute_from_commandline()


if __name__ == "__main__":
    main()
