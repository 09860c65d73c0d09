"""The ARI listener: what became of each allowed call, and did the callee refuse?

FastAGI decides before the call; this module watches the call afterwards,
because R-31 hinges on something only the call reveals: a refusal blocks the
callee for 60 days and (fr-2026) revokes their consent. It records, per
attempt, whether the callee answered, when, when the call ended, the hangup
cause and an outcome, and it turns refusals into the same store operation as
`sentinelle refusal add`:

1. DTMF: the agent keys `ari.refusal_dtmf` (default ``*9``) during the
   answered call, each digit within `ari.dtmf_gap_s` of the previous one.
   Asterisk reports the digits of channels outside Stasis as
   ChannelDtmfReceived (SIP INFO and RFC 4733 alike).
2. Agent disposition: the feature codes of dialplan/features_sentinelle.conf
   emit ``UserEvent(SentinelleDisposition, attempt: N, code: C)``.
   refused -> refusal; do-not-call -> refusal and internal opposition list
   (R-12); callback and wrong-number are only kept with the attempt.
3. The CLI (`sentinelle refusal add`) for dispositions entered in a CRM.

All three end in `Store.add_refusal`, idempotent per attempt: the same event
twice, or a DTMF refusal and a disposition for the same call, is one refusal.

How channels are tied to attempts, without ChannelVarset (which would be most
of the event stream): the dialplan's ``UserEvent(SentinelleAttempt, ...)`` is
emitted on the channel that ran the check (the agent's, "origin"); every
``Dial`` event from that channel adds the dialled channel ("leg", the callee
side). After every (re)connect the listener asks Asterisk for the channels
that exist (GET /channels) and their ``SENTINELLE_ATTEMPT`` variable, and
closes the attempts whose channels vanished while it was away as "unknown".

The hangup cause is read from ChannelDestroyed (ChannelHangupRequest says 16
even for a cause-21 rejection), preferring the callee leg's: that is what the
carrier answered (17 busy, 19 no answer, 16 normal clearing).
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from sentinelle import logs
from sentinelle.config import Config, validate_for_listening
from sentinelle.core.clock import Clock
from sentinelle.core.model import Outcome
from sentinelle.pbx import channelvars as agivars
from sentinelle.pbx import recording
from sentinelle.pbx.ari import AriClient, Event
from sentinelle.pbx.outcomes import outcome_of
from sentinelle.store import Backend, StoreError
from sentinelle.store.handle import StoreHandle

log = logging.getLogger("sentinelle.listener")

T = TypeVar("T")

# Event types the listener reads (the ARI event filter lets only these through).
ALLOWED_EVENTS = (
    "ChannelUserevent",
    "Dial",
    "ChannelStateChange",
    "ChannelDtmfReceived",
    "ChannelDestroyed",
)

ANSWERED, NO_ANSWER, BUSY, FAILED, UNKNOWN = (
    Outcome.ANSWERED, Outcome.NO_ANSWER, Outcome.BUSY, Outcome.FAILED, Outcome.UNKNOWN)
REFUSED, DO_NOT_CALL, CALLBACK, WRONG_NUMBER = "refused", "do-not-call", "callback", "wrong-number"
DISPOSITIONS = frozenset({REFUSED, DO_NOT_CALL, CALLBACK, WRONG_NUMBER})

_DTMF = re.compile(r"^[0-9*#A-D]{1,16}$")
# Attempts recorded this long before the stream dropped may not have been
# announced to us yet: they are checked too after a reconnect.
RESYNC_MARGIN = timedelta(seconds=5)
STORE_RETRIES = 3
PROBE_CONCURRENCY = 8


@dataclass
class Watch:
    """One allowed call being followed, keyed by its attempt id."""

    attempt_id: int
    origin: str | None = None  # the channel that ran the check (agent side)
    legs: set[str] = field(default_factory=set)  # channels it dialled (callee side)
    live: set[str] = field(default_factory=set)  # channels not destroyed yet
    # Other channels whose keys are the agent's: they carry SENTINELLE_ATTEMPT
    # (ARI channelvars) without being a dialled leg, e.g. the queue member's
    # channel in the dialer topology, where the origin is a Local channel.
    agents: set[str] = field(default_factory=set)
    answered: bool = False
    answered_at: datetime | None = None
    dialstatus: str = ""
    leg_cause: tuple[int | None, str | None] | None = None
    leg_up: bool = False  # leg_cause comes from a leg that was answered
    origin_cause: tuple[int | None, str | None] | None = None
    digits: list[tuple[str, datetime]] = field(default_factory=list)

    def outcome(self) -> str:
        """answered / busy / no-answer / failed, from what the callee side did."""
        return outcome_of(answered=self.answered, dialstatus=self.dialstatus,
                          cause=self.cause()[0], dialled=bool(self.legs))

    def cause(self) -> tuple[int | None, str | None]:
        return self.leg_cause or self.origin_cause or (None, None)


def attempt_id_of(value: Any) -> int | None:
    """SENTINELLE_ATTEMPT as the dialplan passes it: digits, maybe blank."""
    text = str(value or "").strip()
    return int(text) if text.isdigit() and int(text) > 0 else None


def channel_id_of(channel: Any) -> str:
    """An event's channel id; "" (which no watched channel has) when absent."""
    return str((channel or {}).get("id") or "")


def event_time(event: Event) -> datetime:
    """Asterisk's own timestamp of the event (e.g. 2026-11-29T09:24:43.714+0000)."""
    raw = event.get("timestamp")
    if isinstance(raw, str):
        try:
            value = datetime.fromisoformat(raw)
            if value.tzinfo is not None:
                return value
        except ValueError:
            pass
    return datetime.now(UTC)


class Listener:
    """Follows calls over ARI and writes outcomes and refusals to the store.

    `clock`: the service clock. Instants recorded are Asterisk's event
    timestamps shifted by (clock - real time) measured once at start, so that
    under `serve --at` (a frozen clock, demos and end-to-end tests) answer,
    end and refusal times tick on from the frozen instant instead of landing
    days away from the attempts they belong to. With the system clock the
    shift is zero.
    """

    def __init__(self, config: Config, clock: Clock | None = None, *,
                 client: AriClient | None = None) -> None:
        validate_for_listening(config)
        ari = config.ari
        self.config = config
        self.code = ari.refusal_dtmf
        self.gap = timedelta(seconds=ari.dtmf_gap_s)
        offset = (clock() - datetime.now(UTC)) if clock else timedelta(0)
        self.offset = offset if abs(offset) >= timedelta(seconds=1) else timedelta(0)
        self.client = client or AriClient(ari.url, ari.user, ari.password, ari.app,
                                          allowed_events=ALLOWED_EVENTS,
                                          recorder=recording.from_env())
        self.watches: dict[int, Watch] = {}
        self.channels: dict[str, int] = {}  # channel id -> attempt id
        self.connects = 0
        self.last_seen: datetime | None = None  # service time of the last event or resync
        self.refusals = 0
        self.outcomes = 0
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sentinelle-ari")
        self._store = StoreHandle(config.store)

    # -- lifecycle -------------------------------------------------------------

    async def run(self) -> None:
        """Until cancelled or `stop()`: the client reconnects forever."""
        logs.event(log, "ARI listener starting", url=self.client.endpoint.base,
                   app=self.client.app, refusal_dtmf=self.code)
        await self.client.run(self.handle, self.resync)

    async def close(self) -> None:
        await self.client.aclose()
        await asyncio.get_running_loop().run_in_executor(self._executor, self._store.close)
        self._executor.shutdown(wait=True)

    # -- the store, in its own thread (SQLite calls block) ------------------------

    async def _db(self, what: str, fn: Callable[[Backend], T], **fields: Any) -> T | None:
        """Run `fn(store)` in the listener's store thread; retry transient
        faults, then log everything needed to enter the fact by hand."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._db_sync, what, fn, fields)

    def _db_sync(self, what: str, fn: Callable[[Backend], T], fields: dict[str, Any]) -> T | None:
        error = ""
        for attempt in range(STORE_RETRIES):
            try:
                return self._store.run(fn)
            except StoreError as exc:
                error = str(exc)
                time.sleep(0.2 * (attempt + 1))
        logs.event(log, f"store write failed: {what}", logging.ERROR, error=error, **fields)
        return None

    # -- time ---------------------------------------------------------------------

    def when(self, event: Event) -> datetime:
        return event_time(event) + self.offset

    # -- events -------------------------------------------------------------------

    async def handle(self, event: Event) -> None:
        """One ARI event. Unknown types and channels are ignored."""
        kind = event.get("type")
        at = self.when(event)
        self.last_seen = at
        if kind != "ChannelDestroyed":
            self._adopt(event.get("channel"))
        if kind == "ChannelUserevent":
            await self._userevent(event, at)
        elif kind == "Dial":
            self._dial(event, at)
        elif kind == "ChannelStateChange":
            self._state(event, at)
        elif kind == "ChannelDtmfReceived":
            await self._dtmf(event, at)
        elif kind == "ChannelDestroyed":
            await self._destroyed(event, at)
        elif kind == "ApplicationReplaced":
            logs.event(log, "another client took over ARI app: check that one listener runs "
                            "per app name", logging.ERROR, app=self.client.app)

    def _watch(self, attempt_id: int) -> Watch:
        watch = self.watches.get(attempt_id)
        if watch is None:
            watch = self.watches[attempt_id] = Watch(attempt_id)
        return watch

    def _adopt(self, channel: Any) -> None:
        """A channel whose snapshot carries SENTINELLE_ATTEMPT (ari.conf
        `channelvars = SENTINELLE_ATTEMPT`) and is neither the origin nor a
        leg of a watched call: its keys count as the agent's for that
        attempt, e.g. the queue member's channel in the dialer topology. Not
        a dialled leg (AppDial: the callee side inherits the variable through
        Dial), and only attempts we watch: a stray value never opens a call.
        The call's end does not wait for such a channel (an agent's channel
        may outlive many calls, the attempt it carries changing with each)."""
        if not isinstance(channel, dict):
            return
        channel_id = channel_id_of(channel)
        attempt_id = attempt_id_of((channel.get("channelvars") or {}).get(agivars.ATTEMPT))
        current = self.channels.get(channel_id)
        if not channel_id or attempt_id is None or current == attempt_id:
            return
        old = self.watches.get(current) if current is not None else None
        if old is not None and (channel_id == old.origin or channel_id in old.legs):
            return
        watch = self.watches.get(attempt_id)
        if watch is None or (channel.get("dialplan") or {}).get("app_name") == "AppDial":
            return
        if old is not None:
            old.agents.discard(channel_id)
        watch.agents.add(channel_id)
        self.channels[channel_id] = attempt_id

    def _bind_origin(self, channel_id: str, attempt_id: int) -> Watch | None:
        """Tie the channel that ran the check to its attempt. Returns an older
        watch this channel belonged to if that one has nothing left to wait for."""
        previous = self.channels.get(channel_id)
        orphan = None
        if previous is not None and previous != attempt_id and previous in self.watches:
            # The same agent channel ran a second check (e.g. a retry to another
            # number): the first attempt no longer owns it.
            old = self.watches[previous]
            old.live.discard(channel_id)
            if old.origin == channel_id:
                old.origin = None
            orphan = old if not old.live else None
        watch = self._watch(attempt_id)
        watch.origin = watch.origin or channel_id
        watch.live.add(channel_id)
        self.channels[channel_id] = attempt_id
        return orphan

    async def _userevent(self, event: Event, at: datetime) -> None:
        name = event.get("eventname")
        payload = event.get("userevent") or {}
        channel_id = (event.get("channel") or {}).get("id")
        if name == agivars.EVENT_ATTEMPT:
            attempt_id = attempt_id_of(payload.get(agivars.FIELD_ATTEMPT))
            if attempt_id and channel_id:
                orphan = self._bind_origin(channel_id, attempt_id)
                if orphan is not None:
                    await self._finish(orphan, at)
        elif name == agivars.EVENT_DISPOSITION:
            attempt_id = attempt_id_of(payload.get(agivars.FIELD_ATTEMPT))
            if attempt_id is None and channel_id:
                attempt_id = self.channels.get(channel_id)
            code = str(payload.get(agivars.FIELD_CODE, "")).strip().lower()
            if attempt_id is None:
                logs.event(log, "disposition without an attempt id: ignored", logging.WARNING,
                           code=code, channel=channel_id)
                return
            if code not in DISPOSITIONS:
                logs.event(log, "unknown disposition code: ignored", logging.WARNING,
                           code=code, attempt=attempt_id)
                return
            await self.disposition(attempt_id, code, at)

    def _dial(self, event: Event, at: datetime) -> None:
        caller = (event.get("caller") or {}).get("id")
        peer = (event.get("peer") or {}).get("id")
        attempt_id = self.channels.get(caller) if caller else None
        if attempt_id is None or not peer or attempt_id not in self.watches:
            return
        watch = self.watches[attempt_id]
        if peer not in watch.legs:
            watch.legs.add(peer)
            watch.live.add(peer)
            self.channels[peer] = attempt_id
        status = str(event.get("dialstatus") or "")
        if status:
            watch.dialstatus = status
        if status == "ANSWER":
            self._answered(watch, at)

    def _state(self, event: Event, at: datetime) -> None:
        channel = event.get("channel") or {}
        channel_id = channel_id_of(channel)
        attempt_id = self.channels.get(channel_id)
        watch = self.watches.get(attempt_id) if attempt_id else None
        if watch and channel_id in watch.legs and channel.get("state") == "Up":
            self._answered(watch, at)

    @staticmethod
    def _answered(watch: Watch, at: datetime | None) -> None:
        if not watch.answered:
            watch.answered = True
            watch.answered_at = at

    async def _dtmf(self, event: Event, at: datetime) -> None:
        channel_id = channel_id_of(event.get("channel"))
        attempt_id = self.channels.get(channel_id)
        watch = self.watches.get(attempt_id) if attempt_id else None
        digit = str(event.get("digit", ""))
        # Only the agent's keys, and only once the callee answered: before
        # that there is nobody to refuse.
        agent = channel_id == watch.origin or channel_id in watch.agents if watch else False
        if watch is None or not agent or not watch.answered or len(digit) != 1:
            return
        pressed = event_time(event)
        if watch.digits and pressed - watch.digits[-1][1] > self.gap:
            watch.digits.clear()
        watch.digits.append((digit, pressed))
        del watch.digits[:-len(self.code)]
        if "".join(d for d, _ in watch.digits) == self.code:
            watch.digits.clear()
            await self.refuse(watch.attempt_id, "dtmf", at)

    async def _destroyed(self, event: Event, at: datetime) -> None:
        channel = event.get("channel") or {}
        channel_id = channel_id_of(channel)
        attempt_id = self.channels.pop(channel_id, None)
        watch = self.watches.get(attempt_id) if attempt_id else None
        if watch is None:
            return
        watch.live.discard(channel_id)
        cause = event.get("cause")
        info = (cause if isinstance(cause, int) else None, event.get("cause_txt"))
        if channel_id in watch.legs:
            # Keep the cause of the leg that answered, else of the last one to end.
            if channel.get("state") == "Up":
                self._answered(watch, watch.answered_at)
                watch.leg_cause, watch.leg_up = info, True
            elif not watch.leg_up:
                watch.leg_cause = info
        elif channel_id == watch.origin:
            watch.origin_cause = info
        if not watch.live:
            await self._finish(watch, at)

    async def _finish(self, watch: Watch, ended_at: datetime) -> None:
        self.watches.pop(watch.attempt_id, None)
        outcome = watch.outcome()
        cause, cause_txt = watch.cause()
        done = await self._db(
            "outcome", lambda s: s.record_outcome(
                watch.attempt_id, outcome=outcome, answered_at=watch.answered_at,
                ended_at=ended_at, cause=cause, cause_txt=cause_txt),
            attempt=watch.attempt_id, outcome=outcome)
        if done:
            self.outcomes += 1
        logs.event(log, "call outcome", attempt=watch.attempt_id, outcome=outcome, cause=cause,
                   cause_txt=cause_txt, dialstatus=watch.dialstatus,
                   answered_at=watch.answered_at.isoformat() if watch.answered_at else None,
                   ended_at=ended_at.isoformat(), recorded=bool(done))

    # -- refusals -----------------------------------------------------------------

    async def refuse(self, attempt_id: int, source: str, at: datetime) -> bool:
        """R-31 for the callee of this attempt; idempotent per attempt."""

        def write(store: Backend) -> tuple[bool, dict[str, Any] | None]:
            row = store.attempt(attempt_id)
            if row is None:
                return False, None
            new = store.add_refusal(row["professional"], row["campaign"], row["e164"], at,
                                    source, attempt_id)
            return new, row

        result = await self._db("refusal", write, attempt=attempt_id, source=source,
                                at=at.isoformat())
        if result is None:
            return False
        new, row = result
        if row is None:
            logs.event(log, "refusal for an unknown attempt: ignored", logging.WARNING,
                       attempt=attempt_id, source=source)
            return False
        if new:
            self.refusals += 1
        logs.event(log, "refusal recorded" if new else "refusal already recorded",
                   attempt=attempt_id, source=source, e164=row["e164"],
                   professional=row["professional"], campaign=row["campaign"], at=at.isoformat())
        return new

    async def disposition(self, attempt_id: int, code: str, at: datetime) -> None:
        """The agent's disposition key: kept with the attempt; refused and
        do-not-call are refusals, do-not-call also goes on the R-12 list."""
        logs.event(log, "disposition", attempt=attempt_id, code=code)
        # The legal effects first: they matter more than the bookkeeping.
        if code in (REFUSED, DO_NOT_CALL):
            await self.refuse(attempt_id, f"disposition:{code}", at)
        if code == DO_NOT_CALL:
            def optout(store: Backend) -> bool | None:
                row = store.attempt(attempt_id)
                if row is None:
                    return None
                return store.set_optout(row["professional"], row["e164"], True,
                                        source=f"disposition:attempt:{attempt_id}")

            added = await self._db("opt-out", optout, attempt=attempt_id)
            logs.event(log, "internal opposition list (R-12)", attempt=attempt_id,
                       added=bool(added))
        await self._db("disposition", lambda s: s.set_disposition(attempt_id, code),
                       attempt=attempt_id, code=code)

    # -- after every (re)connect ----------------------------------------------------

    async def resync(self, client: AriClient) -> None:
        """Rebuild the view of live calls and close out those that ended unseen.

        Runs before any event of the new connection is handled. Channels we do
        not know yet are asked for SENTINELLE_ATTEMPT; watched calls whose
        channels are all gone ended during the gap: outcome "unknown" (what
        was learnt before the gap, e.g. the answer time, is kept). Attempts
        recorded while the stream was down that have no live channel are
        closed the same way.
        """
        self.connects += 1
        now = datetime.now(UTC) + self.offset
        channels = await client.channels()
        live = {c.get("id") for c in channels if c.get("id")}
        fresh = [c for c in channels if c.get("id") and c["id"] not in self.channels]
        sem = asyncio.Semaphore(PROBE_CONCURRENCY)

        async def probe(channel: Event) -> str | None:
            async with sem:
                return await client.channel_var(channel["id"], agivars.ATTEMPT)

        values = await asyncio.gather(*(probe(c) for c in fresh))
        for channel, value in zip(fresh, values, strict=True):
            attempt_id = attempt_id_of(value)
            if attempt_id is None:
                continue
            is_leg = (channel.get("dialplan") or {}).get("app_name") == "AppDial"
            if is_leg:
                watch = self._watch(attempt_id)
                watch.legs.add(channel["id"])
                watch.live.add(channel["id"])
                self.channels[channel["id"]] = attempt_id
                if channel.get("state") == "Up":
                    self._answered(watch, None)
            else:
                orphan = self._bind_origin(channel["id"], attempt_id)
                if orphan is not None:
                    self.watches.pop(orphan.attempt_id, None)  # closed below as unknown
                    await self._close_unknown(orphan.attempt_id, orphan.answered_at)
        closed = []
        for watch in list(self.watches.values()):
            for gone in watch.live - live:
                watch.live.discard(gone)
                self.channels.pop(gone, None)
            if not watch.live:
                self.watches.pop(watch.attempt_id, None)
                closed.append(watch)
        for watch in closed:
            await self._close_unknown(watch.attempt_id, watch.answered_at)
        since = self.last_seen - RESYNC_MARGIN if self.last_seen else None
        if since is not None:
            stale = await self._db("open attempts", lambda s: s.open_attempts(since)) or []
            for attempt_id in stale:
                if attempt_id not in self.watches:
                    await self._close_unknown(attempt_id, None)
        self.last_seen = now
        logs.event(log, "ARI resync", channels=len(channels), watched=len(self.watches),
                   closed_unknown=len(closed), connects=self.connects)

    async def _close_unknown(self, attempt_id: int, answered_at: datetime | None) -> None:
        done = await self._db("unknown outcome",
                              lambda s: s.close_attempt_unknown(attempt_id, answered_at=answered_at),
                              attempt=attempt_id)
        if done:
            self.outcomes += 1
            logs.event(log, "call outcome", attempt=attempt_id, outcome=UNKNOWN,
                       reason="its channels ended while ARI was disconnected")


async def run(config: Config, clock: Clock | None = None,
              ready: asyncio.Event | None = None) -> None:
    """`sentinelle listen`: the listener alone, until cancelled."""
    listener = Listener(config, clock)
    if ready is not None:
        ready.set()
    try:
        await listener.run()
    finally:
        await listener.close()
