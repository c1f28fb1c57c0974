"""Gossip replication of CRDT state (guide section 1.3, 数据传播与状态同步).

A :class:`GossipNode` is the protocol only: it decides whom to contact and what to send,
and answers what it receives, but it never opens a socket, sleeps or reads a clock.
``tick()`` starts one gossip round and returns the messages to send; ``receive(message)``
merges what arrived and returns the replies. A thin driver moves the messages: the
asyncio one here (:class:`AsyncGossipDriver`), a SimPy one in ``simulations.gossip``, or
your own RPC layer. The replicated state is any state-based CRDT (see
:mod:`patterns.dataflow.crdt`): something with ``merge(other) -> bool`` (join in place,
True when the state changed) and ``copy()``. Joining makes every exchange safe to repeat,
reorder or lose, which is what lets gossip work over an unreliable network.

Two ways to spread, after Demers et al., "Epidemic algorithms for replicated database
maintenance" (PODC 1987):

* **Anti-entropy** (the default): every round each node exchanges its whole state with
  ``fanout`` random peers, by push, pull or push-pull. Slow-ish and chatty, but it never
  stops, so it repairs anything: lost messages, nodes that were down.
* **Rumour mongering** (:class:`RumourMongering`): a local update becomes a *hot rumour*;
  hot rumours are sent to ``fanout`` peers each round, and a node loses interest in a
  rumour after ``k`` unnecessary contacts (counter) or with probability ``1/k`` at each
  (coin), judged on the recipient's feedback ("I knew that") or blindly after every
  send. Cheap and fast, but it leaves a residue of nodes that never heard; an occasional
  anti-entropy exchange (``anti_entropy_every``) repairs it. ``reset_on_news=True`` gives
  Demers et al.'s counter, which a contact that was news resets.

A node answers what it receives with what it knows when the message arrives, so in one
round news can travel two hops (a node told early in the round passes it on to a later
caller). ``GossipConfig(synchronous=True)`` answers as of the start of the node's round
instead: the synchronous rounds of the epidemic theory, in which all contacts of a round
happen at once (Demers et al.'s simulations, Karp et al.'s push-pull).

What the guide's sketch (``StateReplication``) gets wrong, and what this module does:

* ``gossip_factor = 0.5`` sends the full state to half of all peers every interval:
  ``n * n / 2`` messages per interval, forever, whether anything changed or not. Here
  each node contacts a constant ``fanout`` peers, so a round costs ``O(n)`` messages and an
  update reaches everyone in ``O(log n)`` rounds.
* ``receive_state`` hands a full state to ``apply_delta``: a state is not a delta, and
  applying it as one overwrites or double-counts. Here every received state or delta is
  *joined* with ``merge``, which is idempotent and order-insensitive.
* Only push: a node that missed an update waits until somebody happens to push to it.
  Pull and push-pull let the uninformed ask, which is what finishes an epidemic quickly.
* Every state is sent to every selected peer even when both already agree; push-pull here
  answers only when the reply would teach the sender something.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import random
import threading
from collections.abc import Awaitable, Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any, Generic, NamedTuple, Protocol, Self, TypeAlias, TypeVar, cast

from patterns._validation import (
    require_finite_non_negative,
    require_finite_positive,
    require_int_at_least,
    require_positive,
    require_rng,
    require_unit_interval,
)
from patterns.events import Listeners

__all__ = [
    "AsyncGossipDriver",
    "Feedback",
    "GossipConfig",
    "GossipEvent",
    "GossipMetrics",
    "GossipNode",
    "LocalAsyncNetwork",
    "LossOfInterest",
    "LostInterest",
    "Mergeable",
    "Message",
    "Mode",
    "PeerList",
    "PeerSampler",
    "Rumour",
    "RumourMongering",
    "Rumours",
    "Send",
    "StateChanged",
    "StatePush",
    "StateReply",
    "StateRequest",
]

_log = logging.getLogger(__name__)

NodeId: TypeAlias = Hashable
RumourId: TypeAlias = tuple[Hashable, int]
"""A rumour is named by the node that published it and that node's sequence number."""


class Mergeable(Protocol):
    """What gossip needs of a replicated state: a join and a copy (every state CRDT).

    States should also compare by value (``==``): a push-pull callee answers only when its
    state differs from the caller's, and with identity comparison it always answers (correct,
    but one reply per exchange more). The CRDTs of :mod:`patterns.dataflow.crdt` do.
    """

    def merge(self, other: Self) -> bool:
        """Join ``other`` into this state; True if and only if this state changed."""
        ...

    def copy(self) -> Self:
        """An independent copy (sent in a message, so later local changes do not leak)."""
        ...


S = TypeVar("S", bound=Mergeable)


class PeerSampler(Protocol):
    """Chooses the peers of one round."""

    def sample(self, count: int, rng: random.Random) -> Sequence[NodeId]:
        """Up to ``count`` distinct peers, uniformly at random."""
        ...


def _rng_or_new(rng: random.Random | None) -> random.Random:
    """``rng``, or a fresh one if it is None (and only then: a falsy rng is an error)."""
    return random.Random() if rng is None else cast(random.Random, require_rng("rng", rng))


class PeerList:
    """Peers from a fixed list (a node's neighbours in a graph, or every other node)."""

    __slots__ = ("_peers",)

    def __init__(self, peers: Iterable[NodeId]) -> None:
        if isinstance(peers, str) or not isinstance(peers, Iterable):
            raise TypeError(f"peers must be an iterable of node ids, got {peers!r}")
        self._peers: tuple[NodeId, ...] = tuple(peers)

    @property
    def peers(self) -> tuple[NodeId, ...]:
        return self._peers

    def sample(self, count: int, rng: random.Random) -> Sequence[NodeId]:
        """Up to ``count`` (an int >= 0) distinct peers, uniformly at random."""
        require_int_at_least("count", count, 0)
        require_rng("rng", rng)
        peers = self._peers
        if count == 1 and peers:
            return (peers[int(rng.random() * len(peers))],)
        if count >= len(peers):
            return peers
        return rng.sample(peers, count)

    def __len__(self) -> int:
        return len(self._peers)

    def __repr__(self) -> str:
        return f"PeerList({len(self._peers)} peers)"


class Mode(Enum):
    """Who sends state to whom when two nodes talk."""

    PUSH = "push"
    """The caller sends what it has."""
    PULL = "pull"
    """The caller asks; the callee sends what it has."""
    PUSH_PULL = "push-pull"
    """The caller sends; the callee merges and answers when it has more."""


class LossOfInterest(Enum):
    """How a rumour monger decides to stop spreading a rumour after an unnecessary contact."""

    COUNTER = "counter"
    """Stop after ``k`` unnecessary contacts."""
    COIN = "coin"
    """Stop with probability ``1/k`` at each unnecessary contact."""


@dataclass(frozen=True, slots=True)
class RumourMongering:
    """Spread updates as rumours instead of exchanging whole states every round.

    ``feedback=True``: a contact counts as unnecessary when the recipient says it already
    knew the rumour. ``feedback=False`` ("blind"): every send counts, and no reply is sent.
    ``anti_entropy_every=m`` adds one anti-entropy push-pull exchange every ``m`` rounds to
    repair the rumour's residue (0: never).

    ``reset_on_news=True`` (feedback with a counter only): the recipient also reports the
    rumours that were news to it, and such a contact resets the rumour's count, so a node
    loses interest after ``k`` unnecessary contacts with no necessary one in between. This
    is the counter of Demers et al. (1987, Table 1); it spends more messages than the plain
    count and leaves a smaller residue. It costs one reply per contact instead of one per
    unnecessary contact.
    """

    k: int = 2
    feedback: bool = True
    loss_of_interest: LossOfInterest = LossOfInterest.COUNTER
    anti_entropy_every: int = 0
    reset_on_news: bool = False

    def __post_init__(self) -> None:
        require_int_at_least("k", self.k, 1)
        if not isinstance(self.feedback, bool):
            raise TypeError(f"feedback must be a bool, got {self.feedback!r}")
        if not isinstance(self.loss_of_interest, LossOfInterest):
            raise TypeError(
                f"loss_of_interest must be a LossOfInterest, got {self.loss_of_interest!r}")
        require_int_at_least("anti_entropy_every", self.anti_entropy_every, 0)
        if not isinstance(self.reset_on_news, bool):
            raise TypeError(f"reset_on_news must be a bool, got {self.reset_on_news!r}")
        if self.reset_on_news and not (
                self.feedback and self.loss_of_interest is LossOfInterest.COUNTER):
            raise ValueError(
                f"reset_on_news=True needs feedback=True and a COUNTER (only a counter "
                f"told about news can reset), got feedback={self.feedback!r}, "
                f"loss_of_interest={self.loss_of_interest}")


@dataclass(frozen=True, slots=True)
class GossipConfig:
    """How a node gossips: ``mode`` and ``fanout`` (peers contacted per round),
    ``rumour_mongering`` (None: anti-entropy every round) and ``synchronous``.

    ``synchronous=False`` (the default): a node answers with what it knows when a message
    arrives. ``synchronous=True``: within a round (from one ``tick()`` to the next) it
    answers as it was when the round began: a push-pull or pull reply carries the state it
    held at its last ``tick()``, a rumour it learned during the round is still news to every
    sender of the round, and it hands out only the rumours it held then. That is the
    synchronous round of the epidemic theory, where every contact of a round happens at
    once; a driver that delivers each round's messages before the next ``tick()`` then
    runs exactly that model. It costs a copy of the state in each round the state changes.
    """

    mode: Mode = Mode.PUSH_PULL
    fanout: int = 1
    rumour_mongering: RumourMongering | None = None
    synchronous: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.mode, Mode):
            raise TypeError(f"mode must be a Mode, got {self.mode!r}")
        require_int_at_least("fanout", self.fanout, 1)
        if self.rumour_mongering is not None and not isinstance(
                self.rumour_mongering, RumourMongering):
            raise TypeError(
                f"rumour_mongering must be a RumourMongering or None, "
                f"got {self.rumour_mongering!r}")
        if not isinstance(self.synchronous, bool):
            raise TypeError(f"synchronous must be a bool, got {self.synchronous!r}")


# --- messages -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StatePush(Generic[S]):
    """Anti-entropy: the sender's whole state; ``reply`` asks for the callee's when it has more."""

    sender: NodeId
    state: S
    reply: bool


@dataclass(frozen=True, slots=True)
class StateRequest:
    """Anti-entropy pull: "send me your state"."""

    sender: NodeId


@dataclass(frozen=True, slots=True)
class StateReply(Generic[S]):
    """Anti-entropy: the answer to a pull or a push-pull."""

    sender: NodeId
    state: S


@dataclass(frozen=True, slots=True)
class Rumour(Generic[S]):
    """One update being spread: its id and the delta that carries it."""

    id: RumourId
    delta: S


@dataclass(frozen=True, slots=True)
class Rumours(Generic[S]):
    """Rumour mongering: the sender's hot rumours (possibly none).

    ``wants_feedback``: answer with the ids you already knew. ``wants_rumours``: answer
    with your own hot rumours (a pull). ``wants_news``: with ``wants_feedback``, answer
    also with the ids that were news to you (for a counter that news resets).
    """

    sender: NodeId
    rumours: tuple[Rumour[S], ...]
    wants_feedback: bool
    wants_rumours: bool
    wants_news: bool = False


@dataclass(frozen=True, slots=True)
class Feedback:
    """Rumour mongering: the rumours the sender of this message already knew, and (when
    asked with ``Rumours.wants_news``) those that were news to it."""

    sender: NodeId
    known: tuple[RumourId, ...]
    news: tuple[RumourId, ...] = ()


Message: TypeAlias = "StatePush[Any] | StateRequest | StateReply[Any] | Rumours[Any] | Feedback"
"""Any gossip message (the payload type is the CRDT's)."""
_MESSAGES: tuple[type, ...] = (StatePush, StateRequest, StateReply, Rumours, Feedback)


def _unhashable(value: object) -> bool:
    try:
        hash(value)
    except TypeError:
        return True
    return False


class Send(NamedTuple):
    """One message to deliver: to whom, and what."""

    to: NodeId
    message: Message


# --- events and metrics -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StateChanged:
    """A node's state changed by merging what ``source`` sent (or a local publish)."""

    node: NodeId
    source: NodeId
    round: int


@dataclass(frozen=True, slots=True)
class LostInterest:
    """A rumour monger stopped spreading a rumour."""

    node: NodeId
    rumour: RumourId
    round: int


GossipEvent: TypeAlias = StateChanged | LostInterest


@dataclass(frozen=True, slots=True)
class GossipMetrics:
    """Counts since the node was made."""

    rounds: int
    sent: int
    received: int
    state_changes: int
    hot_rumours: int


class _Hot(Generic[S]):
    __slots__ = ("delta", "since", "unnecessary")

    def __init__(self, delta: S, since: int) -> None:
        self.delta = delta
        self.since = since
        """The node's round when the rumour became hot (it was learned after that tick)."""
        self.unnecessary = 0


# --- the node -----------------------------------------------------------------------


class GossipNode(Generic[S]):
    """One replica's side of the gossip protocol (guide 1.3 ``StateReplication``, fixed).

    ``state`` is the node's CRDT; the node owns it from now on (change it through
    :meth:`publish`). ``peers`` is a sequence of peer ids or a :class:`PeerSampler`.
    ``rng`` chooses peers and flips rumour coins (pass a seeded one for reproducible runs).
    Thread-safe: ``tick``, ``receive`` and ``publish`` may be called from different threads;
    listeners run outside the node's lock.
    """

    def __init__(
        self,
        node_id: NodeId,
        state: S,
        peers: Sequence[NodeId] | PeerSampler,
        config: GossipConfig | None = None,
        *,
        rng: random.Random | None = None,
    ) -> None:
        if not callable(getattr(state, "merge", None)) or not callable(
                getattr(state, "copy", None)):
            raise TypeError(f"state must have merge() and copy() (a CRDT), got {state!r}")
        if config is not None and not isinstance(config, GossipConfig):
            raise TypeError(f"config must be a GossipConfig, got {config!r}")
        if not isinstance(node_id, Hashable) or _unhashable(node_id):
            raise TypeError(f"node_id must be hashable, got {node_id!r}")
        self.node_id = node_id
        self.config = config or GossipConfig()
        self._sampler: PeerSampler
        if isinstance(peers, str) or not (hasattr(peers, "sample") or isinstance(peers, Sequence)):
            raise TypeError(f"peers must be a sequence of node ids or a PeerSampler, got {peers!r}")
        if isinstance(peers, Sequence):
            if node_id in peers:
                raise ValueError(
                    f"peers must not contain the node itself, got {node_id!r} in peers")
            self._sampler = PeerList(peers)
        else:
            self._sampler = peers
        self._rng = _rng_or_new(rng)
        self._state = state
        self._lock = threading.Lock()
        self._hot: dict[RumourId, _Hot[S]] = {}
        self._sequence = 0
        self._round = 0
        self._sent = 0
        self._received = 0
        self._changes = 0
        self.listeners: Listeners[GossipEvent] = Listeners()
        rumour = self.config.rumour_mongering
        self._rumour = rumour
        self._coin = rumour is not None and rumour.loss_of_interest is LossOfInterest.COIN
        self._synchronous = self.config.synchronous
        self._round_start: S | None = None
        """synchronous: the state at the last tick(), kept once it changes (None: unchanged)."""

    # -- reading -------------------------------------------------------------------

    @property
    def state(self) -> S:
        """The live state. Read it from the thread that drives the node, or use
        :meth:`snapshot` when other threads may be gossiping."""
        return self._state

    def snapshot(self) -> S:
        """A copy of the state, taken under the node's lock."""
        with self._lock:
            return self._state.copy()

    @property
    def changes(self) -> int:
        """How many times the state has changed (publishes and merges that taught something)."""
        return self._changes

    @property
    def hot_rumours(self) -> int:
        """Rumours this node is still spreading."""
        return len(self._hot)

    @property
    def round(self) -> int:
        return self._round

    def metrics(self) -> GossipMetrics:
        with self._lock:
            return GossipMetrics(self._round, self._sent, self._received, self._changes,
                                 len(self._hot))

    # -- local updates -------------------------------------------------------------

    def publish(self, delta: S) -> RumourId:
        """Apply a local update (a delta, or a whole state: both are joined) and start
        spreading it. Returns the rumour's id (used only by rumour mongering)."""
        if type(delta) is not type(self._state):
            raise TypeError(f"delta must be a {type(self._state).__name__} like the node's "
                            f"state, got {delta!r} ({type(delta).__name__})")
        with self._lock:
            self._sequence += 1
            rumour_id: RumourId = (self.node_id, self._sequence)
            self._keep_round_start(delta)
            changed = self._state.merge(delta)
            if changed:
                self._changes += 1
            if self._rumour is not None:
                self._hot[rumour_id] = _Hot(delta.copy(), self._round)
            current_round = self._round
        if changed and self.listeners:
            self.listeners.emit(StateChanged(self.node_id, self.node_id, current_round))
        return rumour_id

    # -- one round -----------------------------------------------------------------

    def tick(self) -> list[Send]:
        """Start the next round: the messages to send to this round's peers."""
        lost: list[LostInterest] = []
        with self._lock:
            self._round += 1
            self._round_start = None
            config = self.config
            rumour = self._rumour
            if rumour is None:
                peers = self._sampler.sample(config.fanout, self._rng)
                sends = self._anti_entropy(peers, config.mode)
            else:
                every = rumour.anti_entropy_every
                repair = every and self._round % every == 0
                if not (repair or self._hot or config.mode is not Mode.PUSH):
                    return []  # a push monger with nothing hot has nobody to call
                peers = self._sampler.sample(config.fanout, self._rng)
                sends = self._monger(peers, config.mode, rumour, lost)
                if repair:
                    sends.extend(self._anti_entropy(peers, Mode.PUSH_PULL))
            self._sent += len(sends)
        self._emit_lost(lost)
        return sends

    def _anti_entropy(self, peers: Sequence[NodeId], mode: Mode) -> list[Send]:
        me = self.node_id
        if mode is Mode.PULL:
            request = StateRequest(me)
            return [Send(peer, request) for peer in peers]
        push = StatePush(me, self._state.copy(), mode is Mode.PUSH_PULL)
        return [Send(peer, push) for peer in peers]

    def _monger(self, peers: Sequence[NodeId], mode: Mode, rumour: RumourMongering,
                lost: list[LostInterest]) -> list[Send]:
        wants_rumours = mode is not Mode.PUSH
        if mode is Mode.PULL or not self._hot:
            if not wants_rumours:
                return []
            ask: Rumours[S] = Rumours(self.node_id, (), False, True)
            return [Send(peer, ask) for peer in peers]
        hot = tuple(Rumour(rumour_id, entry.delta) for rumour_id, entry in self._hot.items())
        message = Rumours(self.node_id, hot, rumour.feedback, wants_rumours,
                          rumour.reset_on_news)
        if not rumour.feedback:
            for _ in peers:
                self._unnecessary([r.id for r in hot], lost)
        return [Send(peer, message) for peer in peers]

    def _unnecessary(self, rumour_ids: Iterable[RumourId], lost: list[LostInterest]) -> None:
        rumour = self._rumour
        assert rumour is not None
        for rumour_id in rumour_ids:
            entry = self._hot.get(rumour_id)
            if entry is None:
                continue
            if self._coin:
                stop = self._rng.random() * rumour.k < 1.0
            else:
                entry.unnecessary += 1
                stop = entry.unnecessary >= rumour.k
            if stop:
                del self._hot[rumour_id]
                lost.append(LostInterest(self.node_id, rumour_id, self._round))

    # -- receiving -----------------------------------------------------------------

    def receive(self, message: Message) -> list[Send]:
        """Merge what arrived; return the replies to send."""
        if not isinstance(message, _MESSAGES):
            raise TypeError(f"message must be a gossip message, got {message!r}")
        changed_by: NodeId | None = None
        lost: list[LostInterest] = []
        replies: list[Send] = []
        with self._lock:
            self._received += 1
            me = self.node_id
            if isinstance(message, StatePush):
                self._keep_round_start(message.state)
                if self._state.merge(message.state):
                    changed_by = message.sender
                if message.reply:
                    reply = self._push_pull_reply(message.state)
                    if reply is not None:
                        replies.append(Send(message.sender, StateReply(me, reply)))
            elif isinstance(message, StateReply):
                self._keep_round_start(message.state)
                if self._state.merge(message.state):
                    changed_by = message.sender
            elif isinstance(message, StateRequest):
                replies.append(Send(message.sender, StateReply(me, self._answer_state().copy())))
            elif isinstance(message, Rumours):
                changed_by = self._take_rumours(message, replies)
            elif isinstance(message, Feedback):
                if self._rumour is not None and self._rumour.feedback:
                    self._unnecessary(message.known, lost)
                    if self._rumour.reset_on_news:
                        self._reset(message.news)
            else:
                raise TypeError(f"message must be a gossip message, got {message!r}")
            if changed_by is not None:
                self._changes += 1
            self._sent += len(replies)
            current_round = self._round
        if changed_by is not None and self.listeners:
            self.listeners.emit(StateChanged(me, changed_by, current_round))
        self._emit_lost(lost)
        return replies

    def _keep_round_start(self, incoming: S) -> None:
        """synchronous: before the first change of a round, keep the state as it was (no
        copy when ``incoming`` equals the state: merging it cannot change anything)."""
        if self._synchronous and self._round_start is None and self._state != incoming:
            self._round_start = self._state.copy()

    def _answer_state(self) -> S:
        """The state this node answers with: now, or (synchronous) at its round's start."""
        start = self._round_start
        return self._state if start is None else start

    def _push_pull_reply(self, caller_state: S) -> S | None:
        """The callee's answer to a push-pull, or None when it would teach the caller nothing."""
        if not self._synchronous:  # merged already: differ iff the caller lacks something
            return self._state.copy() if self._state != caller_state else None
        answer = self._answer_state()
        if answer == caller_state:
            return None
        probe = caller_state.copy()
        return answer.copy() if probe.merge(answer) else None

    def _knew_at_round_start(self, delta: S) -> bool:
        """synchronous: whether ``delta`` (already in the state) was in it at the round's start."""
        start = self._round_start
        if start is None:
            return True
        return not start.copy().merge(delta)

    def _reset(self, rumour_ids: Iterable[RumourId]) -> None:
        for rumour_id in rumour_ids:
            entry = self._hot.get(rumour_id)
            if entry is not None:
                entry.unnecessary = 0

    def _take_rumours(self, message: Rumours[S], replies: list[Send]) -> NodeId | None:
        changed_by: NodeId | None = None
        known: list[RumourId] = []
        news: list[RumourId] = []
        fresh: set[RumourId] = set()
        synchronous = self._synchronous
        for rumour in message.rumours:
            if synchronous:
                self._keep_round_start(rumour.delta)
            if self._state.merge(rumour.delta):
                changed_by = message.sender
                fresh.add(rumour.id)
                news.append(rumour.id)
                if self._rumour is not None and rumour.id not in self._hot:
                    self._hot[rumour.id] = _Hot(rumour.delta, self._round)
            elif synchronous and not self._knew_at_round_start(rumour.delta):
                news.append(rumour.id)  # learned this round from another sender: still news
            else:
                known.append(rumour.id)
        me = self.node_id
        if message.wants_feedback and (known or (news and message.wants_news)):
            replies.append(Send(message.sender, Feedback(
                me, tuple(known), tuple(news) if message.wants_news else ())))
        if message.wants_rumours and self._hot:
            current = self._round
            sent_back = tuple(Rumour(rumour_id, entry.delta)
                              for rumour_id, entry in self._hot.items()
                              if rumour_id not in fresh
                              and not (synchronous and entry.since == current))
            if sent_back:
                mongering = self._rumour
                feedback = mongering is not None and mongering.feedback
                wants_news = mongering is not None and mongering.reset_on_news
                replies.append(Send(message.sender,
                                    Rumours(me, sent_back, feedback, False, wants_news)))
                if mongering is not None and not feedback:
                    self._unnecessary([r.id for r in sent_back], [])
        return changed_by

    def _emit_lost(self, lost: list[LostInterest]) -> None:
        if lost and self.listeners:
            for event in lost:
                self.listeners.emit(event)

    def __repr__(self) -> str:
        return (f"GossipNode({self.node_id!r}, round={self._round}, "
                f"hot_rumours={len(self._hot)}, config={self.config!r})")


# --- asyncio ------------------------------------------------------------------------


SendFunction: TypeAlias = Callable[[NodeId, Message], Awaitable[None]]


class AsyncGossipDriver(Generic[S]):
    """Runs a :class:`GossipNode` in asyncio: a round every ``interval`` seconds.

    ``send(to, message)`` is your transport (an RPC, a UDP datagram, a queue). A failed
    send is logged and forgotten: gossip tolerates lost messages by design, the next
    rounds repair them. Feed received messages to :meth:`deliver`.
    """

    def __init__(self, node: GossipNode[S], send: SendFunction, interval: float) -> None:
        if not isinstance(node, GossipNode):
            raise TypeError(f"node must be a GossipNode, got {node!r}")
        if not callable(send):
            raise TypeError(f"send must be an async function (to, message), got {send!r}")
        self.node = node
        self._send = send
        self.interval = require_finite_positive("interval", interval)
        self._task: asyncio.Task[None] | None = None

    async def _transmit(self, sends: list[Send]) -> None:
        for to, message in sends:
            try:
                sending = self._send(to, message)
            except Exception:  # a lost message is ordinary in gossip
                _log.warning("gossip message from %r to %r failed", self.node.node_id, to,
                             exc_info=True)
                continue
            if not inspect.isawaitable(sending):  # a misuse, not a lost message
                raise TypeError(f"send must be an async function (to, message): it "
                                f"returned {sending!r}, not an awaitable")
            try:
                await sending
            except Exception:  # a lost message is ordinary in gossip
                _log.warning("gossip message from %r to %r failed", self.node.node_id, to,
                             exc_info=True)

    async def round(self) -> None:
        """Run one round now."""
        await self._transmit(self.node.tick())

    async def deliver(self, message: Message) -> None:
        """Hand an incoming message to the node and send its replies."""
        await self._transmit(self.node.receive(message))

    async def run(self) -> None:
        """Gossip until cancelled."""
        while True:
            await self.round()
            await asyncio.sleep(self.interval)

    def start(self) -> asyncio.Task[None]:
        """Start :meth:`run` as a task on the running loop."""
        if self._task is not None and not self._task.done():
            raise RuntimeError(f"driver of node {self.node.node_id!r} is already running")
        self._task = asyncio.get_running_loop().create_task(self.run())
        return self._task

    async def stop(self) -> None:
        """Cancel the running task and wait for it to end."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


class LocalAsyncNetwork(Generic[S]):
    """An in-process asyncio network for examples and tests: nodes by id, messages
    delivered as tasks after ``latency`` seconds, each lost with probability ``loss``."""

    def __init__(self, *, latency: float = 0.0, loss: float = 0.0,
                 rng: random.Random | None = None) -> None:
        self.latency = require_finite_non_negative("latency", latency)
        self.loss = require_unit_interval("loss", loss)
        self._rng = _rng_or_new(rng)
        self.drivers: dict[NodeId, AsyncGossipDriver[S]] = {}
        self.sent = 0
        self.lost = 0
        self._pending: set[asyncio.Task[None]] = set()

    def add(self, node: GossipNode[S], interval: float) -> AsyncGossipDriver[S]:
        """Put ``node`` on the network, gossiping every ``interval`` seconds."""
        if not isinstance(node, GossipNode):
            raise TypeError(f"node must be a GossipNode, got {node!r}")
        require_finite_positive("interval", interval)
        if node.node_id in self.drivers:
            raise ValueError(f"node_id {node.node_id!r} is already on the network")
        driver = AsyncGossipDriver(node, self.send, interval)
        self.drivers[node.node_id] = driver
        return driver

    async def send(self, to: NodeId, message: Message) -> None:
        self.sent += 1
        driver = self.drivers.get(to)
        if driver is None or self._rng.random() < self.loss:
            self.lost += 1
            return
        task = asyncio.get_running_loop().create_task(self._later(driver, message))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _later(self, driver: AsyncGossipDriver[S], message: Message) -> None:
        if self.latency:
            await asyncio.sleep(self.latency)
        await driver.deliver(message)

    async def quiesce(self) -> None:
        """Wait until no message is in flight."""
        while self._pending:
            await asyncio.gather(*list(self._pending), return_exceptions=True)

    async def run_until(self, done: Callable[[], object], *, timeout: float,
                        check_every: float = 0.005) -> bool:
        """Start every node's rounds, wait until ``done()`` is true or ``timeout`` seconds
        have passed, then stop them and let the messages in flight land. Returns whether
        ``done()`` held. ``timeout`` may be ``inf`` (wait for ``done()`` only);
        ``check_every`` must be finite."""
        if not callable(done):
            raise TypeError(f"done must be callable, got {done!r}")
        require_positive("timeout", timeout)
        require_finite_positive("check_every", check_every)
        for driver in self.drivers.values():
            driver.start()
        loop = asyncio.get_running_loop()
        give_up = loop.time() + timeout
        try:
            while not done() and loop.time() < give_up:
                await asyncio.sleep(check_every)
        finally:
            for driver in self.drivers.values():
                await driver.stop()
            await self.quiesce()
        return bool(done())
