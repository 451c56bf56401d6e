"""Events for waiting streams, the hub that routes them, and the effects of a transaction.

Use cases collect what should happen after their transaction in an `Effects`; only once the
transaction has committed does the dispatcher publish the events, log the state changes and
trigger matching (`Dispatcher.apply`). A rolled-back transaction therefore tells nobody
anything.

Other replicas learn of changes through hints (ids only) sent with the commit: `a:<agent>`,
`h:<handoff>`, `q` (the queue moved), `r` (the routing policies changed) and `p` (something
else about the pool changed: a log-in, a log-out, a profile; sent only when no other hint
goes). A hint makes a stream compare itself with the store: an agent stream reconciles the
offers and status it has shown with the store's, a handoff watch reloads its handoff. Each
stream remembers what it has said (`AgentChannel.admit`), so an event heard twice, directly
and through a hint, is sent once.

Agent streams read from an `AgentChannel`; bots' WatchHandoff streams from a `HandoffWatch`.
Handoff watches receive every post-transition snapshot of their handoff in order, and notice
queue movement (positions and waits shifting) through a version counter they check at their
own pace, so a busy queue costs O(1) per change, not O(watchers). WatchPoolStatus streams
hear of every committed change here and every hint from elsewhere through `on_change`
(`service.pool_watch.PoolFeed`, one reader for all of them).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from humanline.domain.errors import DomainError
from humanline.domain.model import (
    AgentStatus,
    Handoff,
    HandoffState,
    Interaction,
    Offer,
    RescindReason,
    StatusChangeReason,
)

# --- events on an agent's stream -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OfferMade:
    """A new offer for the agent."""

    offer: Offer
    handoff: Handoff


@dataclass(frozen=True, slots=True)
class OfferWithdrawn:
    """An offer was taken back (expired, declined, cancelled, session ended, agent away)."""

    offer_id: str
    reason: RescindReason
    command_id: str = ""


@dataclass(frozen=True, slots=True)
class AssignmentMade:
    """The agent's accept took effect."""

    interaction: Interaction
    command_id: str = ""


@dataclass(frozen=True, slots=True)
class StatusUpdated:
    """The agent's status changed."""

    status: AgentStatus
    reason: StatusChangeReason
    command_id: str = ""


@dataclass(frozen=True, slots=True)
class HeartbeatAck:
    """The answer to the app's heartbeat."""

    server_time: datetime
    command_id: str = ""


@dataclass(frozen=True, slots=True)
class CommandFailed:
    """A command on the stream failed; the stream stays open."""

    error: DomainError
    command_id: str = ""


@dataclass(frozen=True, slots=True)
class Draining:
    """This replica is stopping: the agent should resume elsewhere before `resume_before`
    (None: the hand-over could not be recorded; the drop that follows starts the grace)."""

    resume_before: datetime | None


@dataclass(frozen=True, slots=True)
class StreamClosing:
    """The stream must end: `why` is one of the `CLOSE_*` constants."""

    why: str


@dataclass(frozen=True, slots=True)
class Reconcile:
    """Something about the agent changed elsewhere: compare the stream with the store."""


CLOSE_REPLACED = "replaced"
CLOSE_SHUTDOWN = "shutdown"
CLOSE_HEARTBEAT = "heartbeat_timeout"
CLOSE_CLIENT = "client_closed"
CLOSE_LOST = "connection_lost"
CLOSE_DETACHED = "session_detached"  # the store no longer gives the session to this stream
CLOSE_DRAINING = "draining"  # this replica handed the session over (`AgentSessions.drain`)

# How many ended offers a stream remembers. Events of one offer arrive out of order by at most
# the time one transaction waits to publish (its commit's answer; a look at the store), well
# under what this many offers take to reach one agent.
ENDED_MEMORY = 256

AgentEvent = (
    OfferMade
    | OfferWithdrawn
    | AssignmentMade
    | StatusUpdated
    | HeartbeatAck
    | CommandFailed
    | Draining
    | StreamClosing
    | Reconcile
)


class AgentChannel:
    """The outbound queue of one agent stream (one connection of one session)."""

    def __init__(self, agent_id: str, session_id: str) -> None:
        self.agent_id = agent_id
        self.session_id = session_id
        self.connection_id = str(uuid.uuid4())
        self._queue: asyncio.Queue[AgentEvent] = asyncio.Queue()
        self.shown_offers: set[str] = set()  # pending offers the app has been told about
        # Offers this stream knows have ended (taken back, answered), the latest ENDED_MEMORY:
        # an event or a look at the store that began before the end may arrive after it, and
        # must not show the offer again.
        self._ended: dict[str, None] = {}
        self.status: AgentStatus | None = None  # the status the app was last told
        self.handing_over = False  # a drain is handing the session over: it ends soon
        self._reconcile_queued = False

    def admit(self, event: AgentEvent) -> bool:
        """Whether to send `event`, given what the stream has said so far; records it. Answers
        to commands always go out; news the app already has does not, nor an offer this stream
        has seen end: published out of commit order, or read by a look that began before it
        ended, its news comes late (shown again, it was taken back twice)."""
        match event:
            case OfferMade(offer=offer):
                if offer.id in self.shown_offers or offer.id in self._ended:
                    return False
                self.shown_offers.add(offer.id)
            case OfferWithdrawn(offer_id=offer_id, command_id=command_id):
                self._end(offer_id)
                if offer_id not in self.shown_offers and not command_id:
                    return False
                self.shown_offers.discard(offer_id)
            case AssignmentMade(interaction=interaction):
                self._end(interaction.offer.id)
                self.shown_offers.discard(interaction.offer.id)
            case StatusUpdated(status=status, command_id=command_id):
                if status is self.status and not command_id:
                    return False
                self.status = status
        return True

    def _end(self, offer_id: str) -> None:
        self._ended[offer_id] = None
        if len(self._ended) > ENDED_MEMORY:
            del self._ended[next(iter(self._ended))]  # the oldest: its stragglers are long in

    def put(self, event: AgentEvent) -> None:
        """Queues an event for the stream. A `Reconcile` already waiting covers a new one: its
        look at the store begins after both were asked for (hints come with every change to
        the agent made elsewhere; queued one each, a busy agent's stream fell behind them)."""
        if isinstance(event, Reconcile):
            if self._reconcile_queued:
                return
            self._reconcile_queued = True
        self._queue.put_nowait(event)

    async def get(self) -> AgentEvent:
        """The next event for the stream."""
        event = await self._queue.get()
        if isinstance(event, Reconcile):
            self._reconcile_queued = False  # from now on a hint needs a new look
        return event

    def close(self, why: str) -> None:
        """Asks the stream to end."""
        self.put(StreamClosing(why))


class ServiceClosing(Exception):
    """The service is shutting down; streams should end and clients reconnect later."""


class HandoffWatch:
    """What one WatchHandoff stream sees: its handoff's snapshots and queue movement."""

    def __init__(self, hub: EventHub, handoff_id: str) -> None:
        self.handoff_id = handoff_id
        self._hub = hub
        self._snapshots: asyncio.Queue[Handoff | None] = asyncio.Queue()
        self._seen_moves = hub.queue_version

    def push(self, handoff: Handoff | None) -> None:
        """Delivers a post-transition snapshot, or None: reload, it changed elsewhere."""
        self._snapshots.put_nowait(handoff)

    async def next(self, interval: float) -> Handoff | None:
        """The next snapshot of the handoff, or None when it should be reloaded: it changed
        on another replica, or the queue has moved since the last call (checked every
        `interval` seconds). Raises ServiceClosing on shutdown."""
        while True:
            try:
                async with asyncio.timeout(interval):
                    return await self._snapshots.get()
            except TimeoutError:
                if self._hub.closing:
                    raise ServiceClosing() from None
                if self._hub.queue_version != self._seen_moves:
                    self._seen_moves = self._hub.queue_version
                    return None


class EventHub:
    """Routes events to the streams of this process."""

    def __init__(self) -> None:
        self._agents: dict[str, AgentChannel] = {}
        self._watches: dict[str, set[HandoffWatch]] = {}
        self.queue_version = 0
        self.closing = False
        self.draining = False
        self._outcome_listeners: list[Callable[[], None]] = []
        self._change_listeners: list[Callable[[], None]] = []
        self._policy_listeners: list[Callable[[], None]] = []
        self._shutdown_listeners: list[Callable[[], None]] = []
        self._no_agents = asyncio.Event()
        self._no_agents.set()

    def attach(self, channel: AgentChannel) -> None:
        """Makes `channel` the agent's stream; an older stream of the agent is told to end."""
        old = self._agents.get(channel.agent_id)
        self._agents[channel.agent_id] = channel
        self._no_agents.clear()
        if old is not None and old is not channel:
            old.close(CLOSE_REPLACED)
        if self.closing:  # a log-in that finished after shutdown began ends at once
            channel.close(CLOSE_SHUTDOWN)

    def detach(self, channel: AgentChannel) -> bool:
        """Removes `channel` if it is still the agent's stream; returns whether it was."""
        if self._agents.get(channel.agent_id) is channel:
            del self._agents[channel.agent_id]
            if not self._agents:
                self._no_agents.set()
            return True
        return False

    def is_current(self, channel: AgentChannel) -> bool:
        """True while `channel` is the agent's stream in this process."""
        return self._agents.get(channel.agent_id) is channel

    def to_agent(self, agent_id: str, event: AgentEvent, session_id: str | None = None) -> bool:
        """Delivers an event to the agent's stream (only if it belongs to `session_id`, when
        given); False if there is no such stream here."""
        channel = self._agents.get(agent_id)
        if channel is None or (session_id is not None and channel.session_id != session_id):
            return False
        channel.put(event)
        return True

    def close_session(self, agent_id: str, session_id: str, why: str) -> None:
        """Ends the agent's stream if it belongs to `session_id`."""
        channel = self._agents.get(agent_id)
        if channel is not None and channel.session_id == session_id:
            channel.close(why)

    def drain(self) -> list[AgentChannel]:
        """Starts the drain (the first step of a graceful stop): returns the agent streams
        attached now, for `AgentSessions.drain` to hand over. Log-ins that finish later are
        handed over by `AgentSessions` itself."""
        self.draining = True
        return list(self._agents.values())

    def shutdown(self) -> None:
        """Asks every stream to end: agent streams at once, handoff watches within their
        check interval."""
        self.closing = True
        for channel in list(self._agents.values()):
            channel.close(CLOSE_SHUTDOWN)
        for listener in self._shutdown_listeners:
            listener()

    @property
    def agent_streams(self) -> int:
        """Agent streams attached in this process."""
        return len(self._agents)

    async def agents_gone(self) -> None:
        """Waits until no agent stream is attached."""
        await self._no_agents.wait()

    @contextmanager
    def watch(self, handoff_id: str) -> Iterator[HandoffWatch]:
        """Subscribes to a handoff for the duration of the block."""
        watch = HandoffWatch(self, handoff_id)
        self._watches.setdefault(handoff_id, set()).add(watch)
        try:
            yield watch
        finally:
            watches = self._watches.get(handoff_id)
            if watches is not None:
                watches.discard(watch)
                if not watches:
                    del self._watches[handoff_id]

    def handoff_changed(self, handoff: Handoff) -> None:
        """Delivers a post-transition snapshot to the handoff's watchers; a completed one
        (done, or rated since) to those listening for outcomes."""
        for watch in self._watches.get(handoff.id, ()):
            watch.push(handoff)
        if handoff.state is HandoffState.COMPLETED:
            for listener in self._outcome_listeners:
                listener()

    def on_outcome(self, listener: Callable[[], None]) -> None:
        """Calls `listener` whenever a handoff is completed or rated on this replica (other
        replicas' are hinted by id only: the listener's own schedule must catch those)."""
        self._outcome_listeners.append(listener)

    def queue_moved(self) -> None:
        """Something entered or left the waiting queue: positions and waits may have shifted."""
        self.queue_version += 1
        self.pool_changed()

    def on_change(self, listener: Callable[[], None]) -> None:
        """Calls `listener` whenever the pool or the queue may have changed: after every
        transaction here that changed something, and on every hint from another replica."""
        self._change_listeners.append(listener)

    def on_policies_changed(self, listener: Callable[[], None]) -> None:
        """Calls `listener` whenever the routing policies may have changed: after a change
        here, on a hint of one elsewhere, and when hints may have been lost."""
        self._policy_listeners.append(listener)

    def policies_changed(self) -> None:
        """The routing policies changed, here or elsewhere."""
        for listener in self._policy_listeners:
            listener()

    def on_shutdown(self, listener: Callable[[], None]) -> None:
        """Calls `listener` when the service starts shutting down."""
        self._shutdown_listeners.append(listener)

    def pool_changed(self) -> None:
        """Agents or handoffs changed, here or elsewhere: tells the `on_change` listeners."""
        for listener in self._change_listeners:
            listener()

    # --- hints from other replicas ---------------------------------------------------------

    def hint_agent(self, agent_id: str) -> None:
        """The agent changed elsewhere: its stream here, if any, reconciles."""
        channel = self._agents.get(agent_id)
        if channel is not None:
            channel.put(Reconcile())
        self.pool_changed()

    def hint_handoff(self, handoff_id: str) -> None:
        """The handoff changed elsewhere: its watches here reload it."""
        for watch in self._watches.get(handoff_id, ()):
            watch.push(None)
        self.pool_changed()

    def reset(self) -> None:
        """Hints may have been lost: every stream here looks at the store again, and the
        routing policies are read again."""
        self.policies_changed()
        for channel in list(self._agents.values()):
            channel.put(Reconcile())
        for watches in list(self._watches.values()):
            for watch in watches:
                watch.push(None)
        self.queue_moved()

    def local_agents(self) -> set[str]:
        """Agents with a stream in this process."""
        return set(self._agents)

    def watched_handoffs(self) -> set[str]:
        """Handoffs watched from this process."""
        return set(self._watches)


# --- effects of a transaction ---------------------------------------------------------------


@dataclass
class Effects:
    """What a transaction wants done once it has committed."""

    agent_events: list[tuple[str, AgentEvent, str | None]] = field(default_factory=list)
    closed_sessions: list[tuple[str, str, str]] = field(default_factory=list)
    detached_agents: set[str] = field(default_factory=set)
    handoffs: list[Handoff] = field(default_factory=list)
    queue_moved: bool = False
    policies: bool = False  # the routing policies changed
    match_handoffs: list[str] = field(default_factory=list)
    match_agents: list[str] = field(default_factory=list)
    wake_at: list[datetime] = field(default_factory=list)
    logs: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def to_agent(self, agent_id: str, event: AgentEvent, session_id: str | None = None) -> None:
        """Sends an event to the agent's stream (of `session_id` only, when given)."""
        self.agent_events.append((agent_id, event, session_id))

    def close_session(self, agent_id: str, session_id: str, why: str) -> None:
        """Ends the stream of a session."""
        self.closed_sessions.append((agent_id, session_id, why))

    def detached(self, agent_id: str) -> None:
        """The agent's session lost its stream by the store's account: a stream of it still
        open on another replica (one presumed dead and revived) must look at the store."""
        self.detached_agents.add(agent_id)

    def changed(self, handoff: Handoff, *, moved: bool = False) -> None:
        """Tells the handoff's watchers; `moved` if it entered or left the waiting queue."""
        self.handoffs.append(handoff)
        self.queue_moved = self.queue_moved or moved

    def policies_changed(self) -> None:
        """The routing policies changed: every replica reads them again."""
        self.policies = True

    def match_handoff(self, handoff_id: str) -> None:
        """Looks for an agent for a queued handoff."""
        self.match_handoffs.append(handoff_id)

    def match_agent(self, agent_id: str) -> None:
        """Looks for work for an agent that may have free capacity."""
        self.match_agents.append(agent_id)

    def wake(self, at: datetime) -> None:
        """Runs the sweeper at `at` (an offer expiry or a grace deadline)."""
        self.wake_at.append(at)

    def log(self, event: str, **fields: Any) -> None:
        """Logs a state change: snake_case event name, ids only, never customer text."""
        self.logs.append((event, fields))

    @property
    def changes_state(self) -> bool:
        """Whether the transaction changed anything others may see (every state change is
        logged, or tells a stream, or sets off matching)."""
        return bool(
            self.logs
            or self.agent_events
            or self.closed_sessions
            or self.detached_agents
            or self.handoffs
            or self.queue_moved
            or self.policies
            or self.match_handoffs
            or self.match_agents
        )

    def hints(self, origin: str) -> set[str]:
        """What other replicas should look at again, tagged with the sender's `origin`; at
        least `p` (the pool changed) when the transaction changed anything."""
        agents = {agent_id for agent_id, _, _ in self.agent_events}
        agents |= {agent_id for agent_id, _, _ in self.closed_sessions}
        agents |= self.detached_agents
        hints = {f"a:{a}" for a in agents} | {f"h:{h.id}" for h in self.handoffs}
        if self.queue_moved:
            hints.add("q")
        if self.policies:
            hints.add("r")
        if not hints and self.changes_state:
            hints.add("p")
        return {f"{origin}/{hint}" for hint in hints}
