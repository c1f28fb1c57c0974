"""Gossip at scale: a 10,000-node run, and its event rate against bare SimPy.

Guide section 1.3 (数据传播与状态同步). Run from the repository root::

    python benchmarks/bench_gossip.py            # about 20 s
    python benchmarks/bench_gossip.py --quick    # fewer repeats, noisier

What is measured (Markdown tables on stdout, medians of the repeats):

(a) ``simulations.gossip.run_gossip(10_000)``: push-pull anti-entropy, fanout 1, on the
    complete graph, one update from node 0 until every node holds it. Wall time of the
    whole call (nodes, topology, run), the SimPy events it processed (message arrivals and
    round ticks), and events per second of the whole call.
(b) Bare SimPy on the same schedule: the same number of rounds, each scheduling as many
    timeouts as the gossip run sent in that round, each with a callback that does nothing.
    That is the floor any SimPy model with this many events pays; the ratio says what the
    protocol objects (``GossipNode``, the G-Set CRDT) and the model add on top.
(c) The same gossip run for 1,000 and 100,000 nodes, to show how the time grows.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

import simpy

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from simulations.gossip import GossipResult, run_gossip
from simulations.kit.widgets import paused_gc


def timed_gossip(n: int, repeats: int) -> tuple[float, GossipResult]:
    times, result = [], None
    for seed in range(1, repeats + 1):
        started = time.perf_counter()
        result = run_gossip(n, seed=seed)
        times.append(time.perf_counter() - started)
    assert result is not None
    return statistics.median(times), result


def bare_simpy(result: GossipResult, repeats: int) -> float:
    """Seconds to run the same numbers of events per round with no model at all."""
    per_round = [round((result.messages_per_node[r] - result.messages_per_node[r - 1]) * result.n)
                 for r in range(1, len(result.messages_per_node))]
    times = []
    for _ in range(repeats):
        env = simpy.Environment()
        processed = [0]

        def arrive(_event: simpy.Event, processed: list[int] = processed) -> None:
            processed[0] += 1

        def rounds(env: simpy.Environment = env) -> object:
            for count in per_round:
                for message in range(count):
                    env.timeout(0.01, message).callbacks.append(arrive)
                yield env.timeout(1.0)

        started = time.perf_counter()
        with paused_gc():
            env.process(rounds())
            env.run()
        times.append(time.perf_counter() - started)
        assert processed[0] == sum(per_round)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    repeats = 3 if args.quick else 7
    print(f"CPython {platform.python_version()}, simpy {simpy.__version__}, "
          f"{platform.machine()}, repeats {repeats}\n")

    seconds, result = timed_gossip(10_000, repeats)
    bare = bare_simpy(result, repeats)
    events = result.events
    print("| run | nodes | rounds to all | messages | events | wall time (s) | events/s |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    print(f"| gossip, push-pull | 10,000 | {result.rounds_to_all} | {result.messages:,} | "
          f"{events:,} | {seconds:.2f} | {events / seconds:,.0f} |")
    print(f"| bare SimPy, same schedule | - | - | - | {events - result.rounds:,} | {bare:.2f} | "
          f"{(events - result.rounds) / bare:,.0f} |")
    print(f"\nbare SimPy processes events {seconds / bare:.1f}x as fast as the gossip model "
          "(whole call, set-up included)\n")

    print("| nodes | rounds to all | messages | wall time (s) | events/s |")
    print("|---:|---:|---:|---:|---:|")
    for n in (1_000, 10_000, 100_000):
        count = repeats if n <= 10_000 else 1
        seconds, result = timed_gossip(n, count)
        print(f"| {n:,} | {result.rounds_to_all} | {result.messages:,} | {seconds:.2f} | "
              f"{result.events / seconds:,.0f} |")


if __name__ == "__main__":
    main()
