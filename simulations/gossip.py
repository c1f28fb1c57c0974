"""Gossip convergence in simulated time (guide section 1.3, 数据传播与状态同步).

One update is published at node 0 and spreads by gossip. Every node is a
:class:`patterns.dataflow.gossip.GossipNode` holding a G-Set CRDT; a SimPy process starts a
round on every node each ``period`` seconds and every message is a SimPy event that
arrives after a small latency (far below the period), or is lost; a reply leaves when its
request arrives, so an exchange completes inside its round.

Rounds are synchronous, as in the epidemic theory: the nodes run with
``GossipConfig(synchronous=True)``, so within a round every node answers as it was when
the round began, whatever order the messages of the round arrive in. Push-pull then
follows the synchronous mean field. ``run_gossip(synchronous=False)`` lets a node answer
with what it knows when a message arrives: a node told early in a round passes the news
on to a later caller of the same round (two hops in a round), and push-pull runs ahead of
the mean field.

* :func:`run_gossip`: anti-entropy or rumour mongering over a topology (complete graph,
  random regular, small world, ring; built with networkx), with fanout, message loss and
  churn (nodes that crash and come back with their state). The result has the fraction of
  nodes that hold the update after every round and the messages spent per node.
* :data:`RUMOUR_VARIANTS` and :func:`demers_table`: push rumour mongering with Demers et
  al.'s rules, beside their Table 1 (:data:`DEMERS_TABLE_1`), and the variant that judges
  contacts as they arrive.
* :func:`mean_field`: the epidemic recurrence on the complete graph for push, pull and
  push-pull with fanout and loss, drawn beside the simulation; :func:`rumour_residue_theory`
  Demers et al.'s residue ``s = exp(-(k+1)(1-s))`` (feedback, coin) and
  ``s = exp(-k(1-s))`` (blind, coin).
* :class:`GuideSketchStateReplication` transcribes the guide's ``start_sync`` (full state to
  half of all peers every interval) and :func:`run_guide_broadcast` counts its messages.
"""

from __future__ import annotations

import functools
import inspect
import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import networkx as nx
import numpy as np
import simpy
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from patterns._validation import require_int_at_least, require_unit_interval
from patterns.dataflow.crdt import GSet
from patterns.dataflow.gossip import (
    GossipConfig,
    GossipNode,
    LossOfInterest,
    Message,
    Mode,
    NodeId,
    PeerList,
    PeerSampler,
    RumourMongering,
    Rumours,
)
from simulations.kit.plotting import label, subplots
from simulations.kit.rng import RandomStreams
from simulations.kit.tables import format_table
from simulations.kit.widgets import Explorer, choice, float_slider, int_slider, paused_gc

TOPOLOGIES: tuple[str, ...] = ("complete", "random regular", "small world", "ring")
MODES: tuple[str, ...] = tuple(mode.value for mode in Mode)
TOPOLOGY_COLORS: dict[str, str] = {
    "complete": "#1f77b4", "random regular": "#2ca02c", "small world": "#ff7f0e", "ring": "#d62728",
}
MODE_COLORS: dict[str, str] = {"push": "#d62728", "pull": "#2ca02c", "push-pull": "#1f77b4"}
UPDATE = "update"
"""The element node 0 adds to its G-Set: "informed" means holding it."""


# ============================================================================ topologies


class CompleteGraphPeers:
    """Every other node, sampled uniformly, without building the ``n * (n - 1)`` edges."""

    __slots__ = ("node", "size")

    def __init__(self, node: int, size: int) -> None:
        self.node, self.size = node, size

    def sample(self, count: int, rng: random.Random) -> Sequence[NodeId]:
        others = self.size - 1
        if count == 1:
            j = int(rng.random() * others)
            return (j + 1 if j >= self.node else j,)
        picks = rng.sample(range(others), min(count, others))
        return [j + 1 if j >= self.node else j for j in picks]


def topology_peers(topology: str, n: int, *, degree: int = 4, rewire: float = 0.1,
                   seed: int = 1) -> list[PeerSampler]:
    """Each node's peers on ``topology`` (one of :data:`TOPOLOGIES`).

    ``degree``: neighbours per node of the random regular and small-world graphs
    (Watts-Strogatz ring lattice rewired with probability ``rewire``). The ring is a
    cycle: two neighbours per node.
    """
    if topology not in TOPOLOGIES:
        raise ValueError(f"topology must be one of {TOPOLOGIES}, got {topology!r}")
    if isinstance(n, bool) or not isinstance(n, int) or n < 3:
        raise ValueError(f"n must be an int >= 3, got {n!r}")
    if topology == "complete":
        return [CompleteGraphPeers(node, n) for node in range(n)]
    if topology == "random regular":
        graph = nx.random_regular_graph(degree, n, seed=seed)
    elif topology == "small world":
        graph = nx.connected_watts_strogatz_graph(n, degree, rewire, seed=seed)
    else:
        graph = nx.cycle_graph(n)
    adjacency = graph.adj
    return [PeerList(sorted(adjacency[node])) for node in range(n)]


# ============================================================================ the model


@dataclass(frozen=True)
class GossipResult:
    """One run: per round, the fraction of nodes holding the update and the messages spent."""

    n: int
    topology: str
    mode: str
    fanout: int
    loss: float
    churn: float
    rumour: RumourMongering | None
    informed: np.ndarray
    """Fraction of all nodes holding the update at the end of round r (index 0: the start)."""
    messages_per_node: np.ndarray
    """Messages sent (lost ones included) per node, cumulative, at the end of round r."""
    hot: np.ndarray
    """Fraction of nodes still spreading a rumour at the end of round r (rumour mongering)."""
    rounds_to_all: int | None
    """The first round after which every node held the update (None: not within the run)."""
    synchronous: bool
    """Whether nodes answered as of their round's start (see :func:`run_gossip`)."""
    rumour_messages: int
    """Messages that carried at least one rumour (Demers' "traffic")."""
    messages: int
    events: int
    """SimPy events processed (message arrivals and round ticks)."""

    @property
    def rounds(self) -> int:
        return len(self.informed) - 1

    @property
    def residue(self) -> float:
        """Fraction of nodes that never received the update."""
        return 1.0 - float(self.informed[-1])

    @property
    def traffic(self) -> float:
        """Rumour-carrying messages per node (Demers' ``m``)."""
        return self.rumour_messages / self.n

    @property
    def last_informed_round(self) -> int:
        """The round in which the last node to get the update got it (Demers' ``t_last``)."""
        rose = np.nonzero(np.diff(self.informed) > 0)[0]
        return int(rose[-1]) + 1 if len(rose) else 0


class _Network:
    """The SimPy side: rounds, message delivery with latency and loss, churn."""

    def __init__(self, env: simpy.Environment, nodes: list[GossipNode[GSet[str]]], *,
                 loss: float, churn: float, recovery: float, latency: tuple[float, float],
                 rng: random.Random) -> None:
        self.env, self.nodes = env, nodes
        self.loss, self.churn, self.recovery = loss, churn, recovery
        self.latency_low, self.latency_span = latency[0], latency[1] - latency[0]
        self.rng = rng
        self.up = [True] * len(nodes)
        self.informed = [False] * len(nodes)
        self.informed_count = 0
        self.messages = 0
        self.rumour_messages = 0
        self.events = 0

    def mark_informed(self, node: int) -> None:
        if not self.informed[node] and UPDATE in self.nodes[node].state:
            self.informed[node] = True
            self.informed_count += 1

    def send(self, to: NodeId, message: Message) -> None:
        self.messages += 1
        if type(message) is Rumours and message.rumours:
            self.rumour_messages += 1
        rng = self.rng
        if self.loss and rng.random() < self.loss:
            return
        delay = self.latency_low + rng.random() * self.latency_span
        self.env.timeout(delay, (to, message)).callbacks.append(self._arrive)

    def _arrive(self, event: simpy.Event) -> None:
        self.events += 1
        to, message = event.value
        if not self.up[to]:
            return
        node = self.nodes[to]
        before = node.changes
        replies = node.receive(message)
        if node.changes != before:
            self.mark_informed(to)
        for reply in replies:
            self.send(reply.to, reply.message)

    def churn_step(self) -> None:
        rng, up = self.rng, self.up
        for node in range(len(up)):
            if up[node]:
                if rng.random() < self.churn:
                    up[node] = False
            elif rng.random() < self.recovery:
                up[node] = True

    def tick_all(self) -> None:
        self.events += 1
        up, send = self.up, self.send
        for index, node in enumerate(self.nodes):
            if up[index]:
                for to, message in node.tick():
                    send(to, message)


def run_gossip(
    n: int = 1000,
    *,
    topology: str = "complete",
    mode: str = "push-pull",
    fanout: int = 1,
    loss: float = 0.0,
    churn: float = 0.0,
    recovery: float = 0.25,
    rumour: RumourMongering | None = None,
    max_rounds: int = 100,
    period: float = 1.0,
    latency: tuple[float, float] = (0.01, 0.01),
    degree: int = 4,
    seed: int = 1,
    peers: Sequence[PeerSampler] | None = None,
    synchronous: bool = True,
) -> GossipResult:
    """Spread one update from node 0 to ``n`` nodes by gossip; record every round.

    ``churn``: probability that an up node crashes in a round (it keeps its state, sends
    nothing, and messages to it are lost); a down node comes back with probability
    ``recovery`` per round. ``rumour``: rumour mongering instead of anti-entropy. The run
    ends when every node holds the update (anti-entropy), when no rumour is hot any more
    (rumour mongering without anti-entropy), or after ``max_rounds``.
    ``peers`` reuses a topology built by :func:`topology_peers` (it must have ``n`` entries).

    ``latency`` is the (low, high) range of a message's delay, below a quarter of the
    ``period``, so that a request and its reply both land inside their round.

    ``synchronous=True`` (the default): the nodes run with ``GossipConfig(synchronous=True)``
    and answer as they were when the round began: the synchronous rounds of the epidemic
    theory (:func:`mean_field`, Demers et al.'s simulations). ``synchronous=False``: a node
    answers with what it knows when a message arrives, and the messages of a round are
    handled one after another in the order they land (with one fixed delay, the order in
    which the nodes sent them). A node told by an early push of a round then passes the
    news to a later push-pull caller of the same round (two hops in a round), and a rumour
    monger pushing to a node that another monger told a moment before hears "I knew that".
    """
    require_unit_interval("loss", loss)
    require_unit_interval("churn", churn)
    if not require_unit_interval("recovery", recovery) > 0.0:
        raise ValueError(f"recovery must be in (0, 1], got {recovery!r}")
    require_int_at_least("max_rounds", max_rounds, 1)
    if not 0.0 <= latency[0] <= latency[1] < period / 4:
        raise ValueError(f"latency must be (low, high) with 0 <= low <= high < period / 4, "
                         f"got {latency!r}")
    config = GossipConfig(mode=Mode(mode), fanout=fanout, rumour_mongering=rumour,
                          synchronous=synchronous)
    streams = RandomStreams(seed)
    if peers is None:
        peers = topology_peers(topology, n, degree=degree, seed=seed)
    elif len(peers) != n:
        raise ValueError(f"peers must have n={n} entries, got {len(peers)}")
    gossip_rng = streams.stream("gossip")
    nodes = [GossipNode(node, GSet(str(node)), peers[node], config, rng=gossip_rng)
             for node in range(n)]
    env = simpy.Environment()
    network = _Network(env, nodes, loss=loss, churn=churn, recovery=recovery, latency=latency,
                       rng=streams.stream("network"))
    nodes[0].publish(GSet("0", {UPDATE}))
    network.mark_informed(0)
    informed = [network.informed_count / n]
    spent = [0.0]
    hot = [1 / n if rumour is not None else 0.0]
    outcome: dict[str, int | None] = {"rounds_to_all": None}
    repairing = rumour is None or rumour.anti_entropy_every > 0

    def rounds() -> Any:
        for round_number in range(1, max_rounds + 1):
            if churn:
                network.churn_step()
            network.tick_all()
            yield env.timeout(period)
            informed.append(network.informed_count / n)
            spent.append(network.messages / n)
            hot_now = sum(1 for node in nodes if node.hot_rumours) if rumour else 0
            hot.append(hot_now / n)
            if network.informed_count == n:
                outcome["rounds_to_all"] = round_number
                if repairing or hot_now == 0:
                    return
            elif not repairing and hot_now == 0:
                return

    env.process(rounds())
    with paused_gc():  # the run makes ~10 objects per message, none in a cycle
        env.run()
    return GossipResult(
        n=n, topology=topology, mode=mode, fanout=fanout, loss=loss, churn=churn,
        rumour=rumour, informed=np.array(informed), messages_per_node=np.array(spent),
        hot=np.array(hot), rounds_to_all=outcome["rounds_to_all"], synchronous=synchronous,
        rumour_messages=network.rumour_messages, messages=network.messages,
        events=network.events,
    )


# ============================================================================ theory


def mean_field(n: int, mode: str, fanout: int = 1, loss: float = 0.0,
               rounds: int = 60) -> np.ndarray:
    """Expected fraction of nodes informed after each round, anti-entropy on the complete graph.

    With ``I`` informed nodes, an uninformed node stays uninformed through a round if no
    informed node pushes to it, ``(1 - fanout * (1 - loss) / (n - 1)) ** I``, and (pull) none of
    its ``fanout`` contacts is informed with both request and reply arriving,
    ``(1 - I / (n - 1) * (1 - loss) ** 2) ** fanout``. Push-pull multiplies the two.
    (The mean-field recurrence of the epidemic; Pittel 1987 and Karp et al. 2000 give the
    number of rounds to reach everyone: about ``log2 n + ln n`` for push and
    ``log3 n + O(ln ln n)`` for push-pull.)
    """
    mode_value = Mode(mode)
    informed = 1.0
    fractions = [informed / n]
    keep = 1.0 - loss
    for _ in range(rounds):
        stay = 1.0
        if mode_value is not Mode.PULL:
            stay *= (1.0 - min(1.0, fanout * keep / (n - 1))) ** informed
        if mode_value is not Mode.PUSH:
            stay *= (1.0 - informed / (n - 1) * keep * keep) ** fanout
        informed = n - (n - informed) * stay
        fractions.append(informed / n)
    return np.array(fractions)


def mean_field_rounds(n: int, mode: str, fanout: int = 1, loss: float = 0.0) -> int:
    """Rounds until the mean field expects fewer than half a node uninformed."""
    curve = mean_field(n, mode, fanout, loss, rounds=500)
    below = np.nonzero((1.0 - curve) * n < 0.5)[0]
    return int(below[0]) if len(below) else -1


def rumour_residue_theory(k: int, *, feedback: bool) -> float:
    """Demers et al.'s residue for push rumour mongering with coin loss of interest.

    Feedback: ``s = exp(-(k + 1)(1 - s))``; blind: ``s = exp(-k(1 - s))``. The root in
    (0, 1) found by fixed-point iteration (1.0 when there is none: blind with k = 1).
    """
    rate = k + 1 if feedback else k
    if rate <= 1:
        return 1.0
    s = 0.0
    for _ in range(200):
        s = math.exp(-rate * (1.0 - s))
    return s


# ============================================================================ the guide


class GuideSketchStateReplication:
    """The guide's ``StateReplication.start_sync`` and ``receive_state`` (1.3), transcribed.

    Every ``sync_interval`` the node picks ``ceil(len(peers) * gossip_factor)`` peers
    (``gossip_factor = 0.5``: half of all peers) and sends each of them its *full* state;
    ``receive_state`` hands the state to ``apply_delta``. ``apply_delta`` is supplied by the
    replica; here it joins (the CRDT merge) so that only the message count differs from the
    fixed protocol. (That applying a state as a delta loses updates is shown in
    :mod:`simulations.crdt`.)
    """

    def __init__(self, node_id: int, local: GSet[str], peers: Sequence[int],
                 rng: random.Random, gossip_factor: float = 0.5) -> None:
        self.node_id, self.local, self.peers = node_id, local, list(peers)
        self.rng, self.gossip_factor = rng, gossip_factor

    def sync_round(self) -> list[tuple[int, GSet[str]]]:
        sync_count = math.ceil(len(self.peers) * self.gossip_factor)
        selected = self.rng.sample(self.peers, sync_count)
        return [(peer, self.local.copy()) for peer in selected]

    def receive_state(self, sender: int, state: GSet[str]) -> None:
        self.apply_delta(state)

    def apply_delta(self, state: GSet[str]) -> None:
        self.local.merge(state)


@dataclass(frozen=True)
class BroadcastResult:
    n: int
    rounds_to_all: int
    messages_per_round: int
    messages_to_all: int


def run_guide_broadcast(n: int, *, seed: int = 1, max_rounds: int = 20) -> BroadcastResult:
    """The guide's replication spreading one update over ``n`` nodes, round by round."""
    rng = RandomStreams(seed).stream("guide")
    replicas = [GuideSketchStateReplication(node, GSet(str(node)),
                                            [peer for peer in range(n) if peer != node], rng)
                for node in range(n)]
    replicas[0].local.merge(GSet("0", {UPDATE}))
    messages = 0
    per_round = 0
    for round_number in range(1, max_rounds + 1):
        outbox = [(sender.node_id, peer, state) for sender in replicas
                  for peer, state in sender.sync_round()]
        per_round = len(outbox)
        messages += per_round
        for sender_id, peer, state in outbox:
            replicas[peer].receive_state(sender_id, state)
        if all(UPDATE in replica.local for replica in replicas):
            return BroadcastResult(n, round_number, per_round, messages)
    raise RuntimeError(f"the guide's replication did not reach all {n} nodes in {max_rounds} "
                       "rounds")


@dataclass(frozen=True)
class GuideComparison:
    """One cluster size: the guide's broadcast beside push-pull gossip with fanout k."""

    guide: BroadcastResult
    gossip: Mapping[int, GossipResult]
    """By fanout."""


def guide_comparison(sizes: Sequence[int] = (50, 100, 200, 400), *,
                     fanouts: Sequence[int] = (1, 3), seed: int = 1) -> list[GuideComparison]:
    """The guide's half-of-all-peers broadcast beside fanout-k push-pull, per size."""
    return [GuideComparison(run_guide_broadcast(n, seed=seed),
                            {k: run_gossip(n, fanout=k, seed=seed) for k in fanouts})
            for n in sizes]


def guide_comparison_table(rows: Sequence[GuideComparison]) -> str:
    fanouts = list(rows[0].gossip)
    body = []
    for row in rows:
        guide = row.guide
        line: list[object] = [guide.n, guide.messages_per_round, guide.rounds_to_all,
                              guide.messages_to_all]
        for k in fanouts:
            ours = row.gossip[k]
            line += [round(messages_per_round(ours) * ours.n), ours.rounds_to_all,
                     ours.messages]
        body.append(line)
    headers = ["nodes", "guide: msgs/interval", "rounds", "msgs to all"]
    for k in fanouts:
        headers += [f"k={k}: msgs/round", "rounds", "msgs to all"]
    return format_table(headers, body)


# ============================================================================ figures


def plot_informed(results: Mapping[str, GossipResult], ax: Axes,
                  colors: Mapping[str, str]) -> Axes:
    for name, result in results.items():
        ax.plot(np.arange(len(result.informed)), result.informed, color=colors.get(name),
                label=f"{name} ({_reached(result)})")
    ax.set_ylim(-0.02, 1.02)
    return label(ax, title="Nodes holding the update", xlabel="round (1 round = 1 s)",
                 ylabel="fraction of nodes")


def _reached(result: GossipResult) -> str:
    if result.rounds_to_all is not None:
        return f"all by round {result.rounds_to_all}"
    return f"{result.informed[-1]:.0%} after {result.rounds}"


def plot_messages(results: Mapping[str, GossipResult], ax: Axes,
                  colors: Mapping[str, str]) -> Axes:
    for name, result in results.items():
        ax.plot(np.arange(len(result.messages_per_node)), result.messages_per_node,
                color=colors.get(name), label=name)
    return label(ax, title="Messages spent", xlabel="round (1 round = 1 s)",
                 ylabel="messages sent per node (cumulative)")


def run_topologies(n: int = 1000, *, mode: str = "push-pull", fanout: int = 1,
                   loss: float = 0.0, churn: float = 0.0, max_rounds: int = 60,
                   seed: int = 1) -> dict[str, GossipResult]:
    """The same gossip over each topology of :data:`TOPOLOGIES`."""
    return {topology: run_gossip(n, topology=topology, mode=mode, fanout=fanout, loss=loss,
                                 churn=churn, max_rounds=max_rounds, seed=seed)
            for topology in TOPOLOGIES}


def hops_from(peers: Sequence[PeerSampler], source: int = 0) -> int:
    """Hops from ``source`` to the farthest node (breadth-first over the peer lists): no
    gossip can reach that node in fewer message hops."""
    if isinstance(peers[source], CompleteGraphPeers):
        return 1
    distance = {source: 0}
    frontier = [source]
    while frontier:
        following = []
        for node in frontier:
            for peer in peers[node].peers:  # type: ignore[attr-defined]
                if peer not in distance:
                    distance[peer] = distance[node] + 1
                    following.append(peer)
        frontier = following
    return max(distance.values())


@functools.lru_cache(maxsize=8)
def topology_hops(n: int, seed: int = 1) -> dict[str, int]:
    """:func:`hops_from` node 0 on each topology of :data:`TOPOLOGIES` (cached)."""
    return {name: hops_from(topology_peers(name, n, seed=seed)) for name in TOPOLOGIES}


def topology_table(results: Mapping[str, GossipResult], *, seed: int = 1) -> str:
    """Per topology: rounds until every node held the update (or the share reached), the
    hops from node 0 to the farthest node, and the messages spent per node."""
    first = next(iter(results.values()))
    hops = topology_hops(first.n, seed)
    body = [(name, result.rounds_to_all if result.rounds_to_all is not None
             else f"> {result.rounds} ({result.informed[-1]:.1%} informed)",
             hops[name], round(float(result.messages_per_node[-1]), 1))
            for name, result in results.items()]
    return format_table(["topology", "rounds until all informed", "hops to the farthest",
                         "messages per node"], body)


def draw_topologies(n: int = 1000, *, mode: str = "push-pull", fanout: int = 1,
                    loss: float = 0.0, churn: float = 0.0, max_rounds: int = 60,
                    seed: int = 1, results: Mapping[str, GossipResult] | None = None
                    ) -> Figure:
    """The centrepiece: convergence per round on four topologies, theory on the complete graph,
    and the rounds each needed beside its distance in hops. ``results`` reuses a
    :func:`run_topologies` run (made with the same parameters)."""
    if results is None:
        results = run_topologies(n, mode=mode, fanout=fanout, loss=loss, churn=churn,
                                 max_rounds=max_rounds, seed=seed)
    first = next(iter(results.values()))
    n, mode, fanout, loss, churn = first.n, first.mode, first.fanout, first.loss, first.churn
    max_rounds = max(result.rounds for result in results.values())
    fig, (left, right) = subplots(1, 2, width=10, height=4.2,
                                  gridspec_kw={"width_ratios": [1.6, 1]})
    plot_informed(results, left, TOPOLOGY_COLORS)
    theory = mean_field(n, mode, fanout, loss, rounds=max_rounds)
    left.plot(np.arange(len(theory)), theory, color="black", linestyle="--", linewidth=1,
              label="theory, complete graph (mean field)")
    left.legend(loc="center right", fontsize=8)
    names = list(results)
    positions = np.arange(len(names))
    rounds = [r.rounds_to_all if r.rounds_to_all is not None else r.rounds
              for r in results.values()]
    hops = [topology_hops(n, seed)[name] for name in names]
    bars = right.bar(positions - 0.2, rounds, 0.4,
                     color=[TOPOLOGY_COLORS[name] for name in names],
                     label="rounds until all informed")
    for bar, result in zip(bars, results.values(), strict=True):
        if result.rounds_to_all is None:
            right.annotate(f"> {result.rounds}\n({result.informed[-1]:.0%})",
                           (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                           ha="center", va="bottom", fontsize=8)
    right.bar(positions + 0.2, hops, 0.4, color="white", edgecolor="black", hatch="//",
              label="hops from the source to the farthest node")
    right.set_yscale("log")
    right.set_xticks(positions, [name.replace(" ", "\n") for name in names])
    label(right, title="Rounds against distance", xlabel="topology", ylabel="rounds / hops (log)")
    right.legend(fontsize=8, loc="upper left")
    fig.suptitle(f"{mode} anti-entropy, fanout {fanout}, {n:,} nodes, loss {loss:.0%}, "
                 f"churn {churn:.0%} per round")
    return fig


def run_modes(n: int = 2000, *, fanout: int = 1, loss: float = 0.0,
              seeds: Sequence[int] = (1, 2, 3), max_rounds: int = 40
              ) -> dict[str, list[GossipResult]]:
    """Push, pull and push-pull on the complete graph, a few seeds each."""
    peers = topology_peers("complete", n)
    return {mode: [run_gossip(n, mode=mode, fanout=fanout, loss=loss, seed=seed,
                              max_rounds=max_rounds, peers=peers) for seed in seeds]
            for mode in MODES}


def draw_modes(n: int = 2000, *, fanout: int = 1, loss: float = 0.0,
               seeds: Sequence[int] = (1, 2, 3)) -> Figure:
    """Push vs pull vs push-pull against the mean-field curves (complete graph)."""
    runs = run_modes(n, fanout=fanout, loss=loss, seeds=seeds)
    fig, (left, right) = subplots(1, 2, width=10, height=4.0)
    for mode, results in runs.items():
        for index, result in enumerate(results):
            left.plot(np.arange(len(result.informed)), result.informed, color=MODE_COLORS[mode],
                      alpha=0.5, label=f"{mode}, simulated" if index == 0 else None)
            right.semilogy(np.arange(len(result.informed)), _missing(result.informed),
                           color=MODE_COLORS[mode], alpha=0.5)
        theory = mean_field(n, mode, fanout, loss, rounds=40)
        left.plot(np.arange(len(theory)), theory, color=MODE_COLORS[mode], linestyle="--",
                  linewidth=1.2, label=f"{mode}, theory")
        right.semilogy(np.arange(len(theory)), _missing(theory, 0.5 / n),
                       color=MODE_COLORS[mode], linestyle="--", linewidth=1.2)
    label(left, title="Informed, complete graph", xlabel="round", ylabel="fraction of nodes")
    left.set_xlim(0, 25)
    left.legend(fontsize=8, loc="lower right")
    label(right, title="The tail: who is still missing it", xlabel="round",
          ylabel="fraction of nodes not informed (log)")
    right.set_xlim(0, 25)
    right.axhline(1 / n, color="grey", linewidth=0.8, linestyle=":")
    right.text(0.5, 1.3 / n, "one node", fontsize=8, color="grey")
    fig.suptitle(f"{n:,} nodes, fanout {fanout}, loss {loss:.0%}: simulation (solid) and "
                 "mean-field theory (dashed)")
    return fig


def _missing(informed: np.ndarray, floor: float = 0.0) -> np.ndarray:
    """Fraction not informed, NaN once (almost) nobody is missing (a log axis has no 0)."""
    missing = 1.0 - informed
    return np.where(missing > floor, missing, np.nan)


def rounds_table(sizes: Sequence[int] = (100, 1000, 10000), *,
                 seeds: Sequence[int] = (1, 2, 3, 4, 5)) -> str:
    """Rounds until every node is informed: simulation (mean over seeds) beside theory."""
    body = []
    for n in sizes:
        peers = topology_peers("complete", n)
        row: list[object] = [n]
        for mode in ("push", "push-pull"):
            runs = [run_gossip(n, mode=mode, seed=seed, peers=peers).rounds_to_all
                    for seed in seeds]
            row.append(round(float(np.mean([r for r in runs if r is not None])), 1))
            row.append(mean_field_rounds(n, mode))
        row.insert(3, round(math.log2(n) + math.log(n), 1))
        row.append(round(math.log(n, 3) + math.log(math.log(n)), 1))
        body.append(row)
    return format_table(["nodes", "push: sim", "push: mean field", "log2 n + ln n",
                         "push-pull: sim", "push-pull: mean field", "log3 n + ln ln n"], body)


def arrival_comparison(n: int = 1000, *, seeds: Sequence[int] = (1, 2, 3, 4, 5)) -> str:
    """Push-pull rounds to reach every node: synchronous, answering on arrival, mean field."""
    peers = topology_peers("complete", n)
    body = []
    for name, synchronous in (("synchronous (as of the round's start)", True),
                              ("answering on arrival", False)):
        runs = [run_gossip(n, peers=peers, seed=seed, synchronous=synchronous)
                for seed in seeds]
        rounds = [r.rounds_to_all for r in runs if r.rounds_to_all is not None]
        body.append((name, round(float(np.mean(rounds)), 1), min(rounds), max(rounds)))
    body.append(("mean field", mean_field_rounds(n, "push-pull"), "-", "-"))
    return format_table([f"push-pull, {n:,} nodes, {len(seeds)} seeds", "mean rounds",
                         "fewest", "most"], body)


def describe_model() -> str:
    """The model's fixed settings, read from the defaults of :func:`run_gossip` and
    :func:`topology_peers` (so that prose quoting them stays true)."""
    run = {name: p.default for name, p in inspect.signature(run_gossip).parameters.items()}
    graph = {name: p.default for name, p in inspect.signature(topology_peers).parameters.items()}
    low, high = run["latency"]
    latency = f"{low * 1000:g} ms" if low == high else f"{low * 1000:g}-{high * 1000:g} ms"
    return "\n".join([
        f"round: every {run['period']:g} s on every node that is up",
        f"message latency: {latency} (lost with probability `loss`)",
        f"churn: a crashed node comes back with probability {run['recovery']:g} per round",
        f"random regular graph: {graph['degree']} neighbours per node",
        f"small world: ring lattice of {graph['degree']} neighbours, each link rewired "
        f"with probability {graph['rewire']:g}",
        "ring: 2 neighbours per node",
    ])


# ============================================================================ rumours


@dataclass(frozen=True)
class RumourVariant:
    """One way to monger a rumour: what makes a node lose interest, and when a contact is
    judged (see :func:`run_gossip`'s ``synchronous``)."""

    feedback: bool
    loss_of_interest: LossOfInterest
    reset_on_news: bool = False
    synchronous: bool = True
    """True: a contact is judged against what the recipient knew when the round began."""


RUMOUR_VARIANTS: dict[str, RumourVariant] = {
    # Demers et al.'s Table 1: synchronous cycles, a counter that news resets.
    "feedback, counter": RumourVariant(True, LossOfInterest.COUNTER, reset_on_news=True),
    # The library's plain counter on a network where contacts are judged as they land: the
    # second of two nodes pushing to the same node in a round hears "I knew that".
    "feedback, counter, on arrival": RumourVariant(True, LossOfInterest.COUNTER,
                                                   synchronous=False),
    # Judged on arrival, like the differential equation it is compared with (one contact
    # at a time): s = exp(-(k + 1)(1 - s)).
    "feedback, coin": RumourVariant(True, LossOfInterest.COIN, synchronous=False),
    "blind, counter": RumourVariant(False, LossOfInterest.COUNTER),
    "blind, coin": RumourVariant(False, LossOfInterest.COIN),
}
"""The variants the notebook compares, by name."""


def _variant(variant: str) -> RumourVariant:
    if variant not in RUMOUR_VARIANTS:
        raise ValueError(f"variant must be one of {tuple(RUMOUR_VARIANTS)}, got {variant!r}")
    return RUMOUR_VARIANTS[variant]


def rumour_config(variant: str, k: int, anti_entropy_every: int = 0) -> RumourMongering:
    """The library's :class:`RumourMongering` for ``variant`` (a key of
    :data:`RUMOUR_VARIANTS`); run it with ``synchronous=RUMOUR_VARIANTS[variant].synchronous``
    or through :func:`run_rumour`."""
    chosen = _variant(variant)
    return RumourMongering(k=k, feedback=chosen.feedback,
                           loss_of_interest=chosen.loss_of_interest,
                           anti_entropy_every=anti_entropy_every,
                           reset_on_news=chosen.reset_on_news)


def run_rumour(variant: str, k: int, *, n: int = 1000, seed: int = 1,
               anti_entropy_every: int = 0,
               peers: Sequence[PeerSampler] | None = None) -> GossipResult:
    """One push rumour (fanout 1, complete graph) from node 0, until no node spreads it."""
    if peers is None:
        peers = topology_peers("complete", n)
    return run_gossip(n, mode="push", rumour=rumour_config(variant, k, anti_entropy_every),
                      synchronous=_variant(variant).synchronous, seed=seed, peers=peers,
                      max_rounds=200)


def run_rumours(variant: str, ks: Sequence[int] = (1, 2, 3, 4, 5), *, n: int = 1000,
                seeds: Sequence[int] = (1, 2, 3, 4, 5)) -> dict[int, list[GossipResult]]:
    """:func:`run_rumour` for each ``k``, several seeds."""
    peers = topology_peers("complete", n)
    return {k: [run_rumour(variant, k, n=n, seed=seed, peers=peers) for seed in seeds]
            for k in ks}


def rumour_table(variant: str, runs: Mapping[int, list[GossipResult]]) -> str:
    """Residue beside theory and beside ``exp(-m)``, traffic and rounds, per ``k``."""
    chosen = _variant(variant)
    body = []
    for k, results in runs.items():
        residue = float(np.mean([r.residue for r in results]))
        traffic = float(np.mean([r.traffic for r in results]))
        theory = (rumour_residue_theory(k, feedback=chosen.feedback)
                  if chosen.loss_of_interest is LossOfInterest.COIN else None)
        body.append((k, round(residue, 3), "-" if theory is None else round(theory, 3),
                     round(math.exp(-traffic), 3), round(traffic, 2),
                     round(float(np.mean([r.rounds for r in results])), 1)))
    return format_table(["k", "residue s (sim)", "s (theory)", "exp(-m)",
                         "traffic m (msgs/node)", "rounds"], body)


# --- Demers et al. (1987), Table 1


DEMERS_TABLE_1: dict[int, tuple[str, str, str]] = {
    1: ("0.176", "1.74", "16.8"),
    2: ("0.037", "3.30", "16.9"),
    3: ("0.011", "4.53", "17.4"),
    4: ("0.0036", "5.64", "17.5"),
    5: ("0.0012", "6.68", "17.7"),
}
"""Demers et al., "Epidemic algorithms for replicated database maintenance" (PODC 1987),
Table 1: push rumour mongering with feedback and counters on 1,000 sites, averages of
simulation runs. ``k -> (residue s, traffic m, t_last)`` as printed: the number of digits
says how precisely (``t_last``: the cycle in which the last site got the update)."""

_DEMERS_FIGURES: tuple[str, ...] = ("residue", "traffic", "last_informed_round")


@dataclass(frozen=True)
class Replicated:
    """A figure averaged over runs: its mean and the standard error of that mean."""

    mean: float
    se: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Replicated:
        if len(values) < 2:
            raise ValueError(f"values must hold at least 2 runs, got {len(values)}")
        data = np.asarray(values, dtype=float)
        return cls(float(data.mean()), float(data.std(ddof=1) / math.sqrt(len(data))))

    def agrees_with(self, printed: str, *, z: float = 4.0) -> bool:
        """Whether a published figure, as printed, lies within ``z`` standard errors of the
        mean (plus half a unit of its last printed digit, the rounding of the paper)."""
        decimals = len(printed.partition(".")[2])
        return abs(self.mean - float(printed)) <= z * self.se + 0.5 * 10.0 ** -decimals


@dataclass(frozen=True)
class RumourStats:
    """One variant at one ``k``: residue, traffic and ``t_last`` over several seeds."""

    variant: str
    k: int
    runs: int
    residue: Replicated
    traffic: Replicated
    last_informed_round: Replicated

    def agrees_with_demers(self, *, z: float = 4.0) -> bool:
        """Whether all three figures of Table 1's row ``k`` agree (each as in
        :meth:`Replicated.agrees_with`)."""
        printed = DEMERS_TABLE_1[self.k]
        return all(getattr(self, name).agrees_with(figure, z=z)
                   for name, figure in zip(_DEMERS_FIGURES, printed, strict=True))


def rumour_stats(variant: str, k: int, *, n: int = 1000,
                 seeds: Sequence[int] = tuple(range(1, 21))) -> RumourStats:
    """:func:`run_rumour` over ``seeds``: mean and standard error of each figure."""
    runs = run_rumours(variant, (k,), n=n, seeds=seeds)[k]
    return RumourStats(variant, k, len(runs),
                       Replicated.of([r.residue for r in runs]),
                       Replicated.of([r.traffic for r in runs]),
                       Replicated.of([r.last_informed_round for r in runs]))


def demers_comparison(ks: Sequence[int] = (1, 2, 3), *,
                      variants: Sequence[str] = ("feedback, counter",
                                                 "feedback, counter, on arrival"),
                      seeds: Sequence[int] = tuple(range(1, 11))) -> list[RumourStats]:
    """:func:`rumour_stats` of each variant at each ``k`` (n = 1000, as in Table 1)."""
    return [rumour_stats(variant, k, seeds=seeds) for variant in variants for k in ks]


def demers_table(stats: Sequence[RumourStats], *, z: float = 4.0) -> str:
    """Table 1 beside the model: mean +- standard error, and whether the row agrees."""
    def cell(figure: Replicated, digits: int) -> str:
        return f"{figure.mean:.{digits}f} ± {figure.se:.{digits}f}"

    runs = sorted({row.runs for row in stats})
    note = (f"model: mean ± standard error over {' or '.join(map(str, runs))} runs; agrees: "
            f"every figure within {z:g} standard errors (plus the rounding of the paper's)")

    body = []
    for row in stats:
        paper = DEMERS_TABLE_1[row.k]
        body.append((row.variant, row.k, paper[0], cell(row.residue, 4), paper[1],
                     cell(row.traffic, 2), paper[2], cell(row.last_informed_round, 1),
                     "yes" if row.agrees_with_demers(z=z) else "no"))
    return note + "\n\n" + format_table(["model", "k", "s: paper", "s: model", "m: paper",
                                         "m: model", "t_last: paper", "t_last: model",
                                         "agrees"], body)


@functools.lru_cache(maxsize=16)
def rumour_sweep(variant: str, n: int = 1000, seed: int = 1
                 ) -> tuple[tuple[int, float, float], ...]:
    """(k, traffic m, residue s) for k = 1..5 of one variant; cached, so that the explorer's
    k and anti-entropy sliders redraw without re-running the sweep."""
    return tuple((k, results[0].traffic, results[0].residue)
                 for k, results in run_rumours(variant, n=n, seeds=(seed,)).items())


def draw_rumours(variant: str = "feedback, counter", k: int = 2, *, n: int = 1000,
                 anti_entropy_every: int = 0, seed: int = 1) -> Figure:
    """One rumour over time (informed, still hot) and residue against traffic for k = 1..5."""
    fig, (left, right) = subplots(1, 2, width=10, height=4.0)
    one = run_rumour(variant, k, n=n, seed=seed, anti_entropy_every=anti_entropy_every)
    rounds = np.arange(len(one.informed))
    left.plot(rounds, one.informed, color="#1f77b4", label="informed")
    left.plot(rounds, one.hot, color="#ff7f0e", label="still spreading (hot)")
    left.set_ylim(-0.02, 1.02)
    label(left, title=f"{variant}, k = {k}: residue {one.residue:.1%}",
          xlabel="round (1 round = 1 s)", ylabel="fraction of nodes")
    left.legend(fontsize=8)
    traffic = np.linspace(0.0, 7.0, 100)
    right.semilogy(traffic, np.exp(-traffic), color="black", linestyle="--", linewidth=1,
                   label="s = exp(-m) (Demers et al.)")
    for kk, m, s in rumour_sweep(variant, n, seed):
        right.semilogy([m], [max(s, 0.5 / n)], "o", color="#d62728" if kk == k else "#1f77b4")
        right.annotate(f"k={kk}", (m, max(s, 0.5 / n)), textcoords="offset points",
                       xytext=(5, 4), fontsize=8)
    label(right, title="Residue against traffic", xlabel="rumour messages per node (m)",
          ylabel="fraction never reached (s, log)")
    right.legend(fontsize=8)
    return fig


# ============================================================================ explorers

NODE_CHOICES: dict[str, int] = {"300": 300, "2,000": 2000, "10,000": 10000}


def convergence_explorer() -> Explorer:
    """Topology, mode, fanout, loss, churn and size; 10,000 nodes is one click away."""

    def draw(topology: str, mode: str, fanout: int, loss: float, churn: float,
             nodes: str) -> Figure:
        n = NODE_CHOICES[nodes]
        result = run_gossip(n, topology=topology, mode=mode, fanout=fanout, loss=loss,
                            churn=churn, max_rounds=60)
        fig, (left, right) = subplots(1, 2, width=10, height=4.0)
        plot_informed({topology: result}, left, TOPOLOGY_COLORS)
        theory = mean_field(n, mode, fanout, loss, rounds=60)
        left.plot(np.arange(len(theory)), theory, color="black", linestyle="--", linewidth=1,
                  label="theory, complete graph")
        left.legend(loc="lower right", fontsize=8)
        plot_messages({topology: result}, right, TOPOLOGY_COLORS)
        fig.suptitle(f"{n:,} nodes: {result.messages:,} messages, {result.events:,} events")
        return fig

    return Explorer(draw, {
        "topology": choice("topology", TOPOLOGIES),
        "mode": choice("mode", MODES, "push-pull"),
        "fanout": int_slider("fanout (peers/round)", 1, 1, 6),
        "loss": float_slider("message loss", 0.0, 0.0, 0.6, 0.05),
        "churn": float_slider("churn (crash prob./round)", 0.0, 0.0, 0.3, 0.02),
        "nodes": choice("nodes", tuple(NODE_CHOICES), "300"),
    }, large_runs={"nodes": ("2,000", "10,000")})


def rumour_explorer() -> Explorer:
    """Rumour mongering: variant, k, and the anti-entropy that repairs the residue."""

    def draw(variant: str, k: int, anti_entropy_every: int) -> Figure:
        return draw_rumours(variant, k, n=1000, anti_entropy_every=anti_entropy_every)

    for variant in RUMOUR_VARIANTS:  # the right panel's sweeps, once, so that a redraw is light
        rumour_sweep(variant, 1000, 1)

    return Explorer(draw, {
        "variant": choice("variant", tuple(RUMOUR_VARIANTS)),
        "k": int_slider("k", 2, 1, 5),
        "anti_entropy_every": int_slider("anti-entropy every (rounds, 0 = never)", 0, 0, 10),
    })


def messages_per_round(result: GossipResult) -> float:
    """Messages per node in the last round of a run."""
    return float(result.messages_per_node[-1] - result.messages_per_node[-2])


def scale_run(n: int = 10_000, *, seed: int = 1) -> GossipResult:
    """The large run of the notebook and the benchmark: push-pull on the complete graph."""
    return run_gossip(n, seed=seed)


def draw_guide_cost(rows: Sequence[GuideComparison]) -> Figure:
    """Messages per sync interval against the number of nodes: the guide's half-of-all-peers
    broadcast (measured, and ``n * ceil((n - 1) / 2)`` extended) beside fanout-k push-pull."""
    fig, (left, right) = subplots(1, 2, width=10, height=4.0)
    sizes = np.array([row.guide.n for row in rows])
    extended = np.array([50, 100, 1000, 10_000, 100_000])
    left.loglog(sizes, [row.guide.messages_per_round for row in rows], "o", color="#d62728",
                label="guide, simulated")
    left.loglog(extended, extended * np.ceil((extended - 1) / 2), color="#d62728",
                linestyle="--", linewidth=1, label="guide: n * ceil((n-1)/2)")
    fanouts = list(rows[0].gossip)
    shades = ["#1f77b4", "#17becf", "#9467bd", "#2ca02c"]
    for k, shade in zip(fanouts, shades, strict=False):
        per_round = np.array([messages_per_round(row.gossip[k]) for row in rows])
        left.loglog(sizes, per_round * sizes, "o", color=shade,
                    label=f"push-pull, fanout {k}, simulated")
        left.loglog(extended, float(per_round.mean()) * extended, color=shade,
                    linestyle="--", linewidth=1, label=f"about {per_round.mean():.1f} n")
    label(left, title="Cost of one sync interval", xlabel="nodes",
          ylabel="messages per interval")
    left.legend(fontsize=8)
    width = 0.8 / (1 + len(fanouts))
    positions = np.arange(len(rows))
    right.bar(positions - 0.4 + width / 2, [row.guide.messages_to_all / row.guide.n
                                            for row in rows],
              width, color="#d62728", label="guide (half of all peers)")
    for index, (k, shade) in enumerate(zip(fanouts, shades, strict=False), start=1):
        right.bar(positions - 0.4 + width * (index + 0.5),
                  [row.gossip[k].messages / row.gossip[k].n for row in rows], width,
                  color=shade, label=f"push-pull, fanout {k}")
    right.set_xticks(positions, [f"{row.guide.n}" for row in rows])
    right.set_yscale("log")
    label(right, title="Until every node has the update", xlabel="nodes",
          ylabel="messages per node (log)")
    right.legend(fontsize=8)
    return fig
