"""The one entry point that turns a dialled number into a logged decision.

Both the FastAGI handler and `sentinelle check` come through here, so the
AGI path and the CLI path cannot drift apart. The order is: resolve the
campaign, parse the number (R-01, R-00), then let the store run the pure
rules inside its atomic check-and-record transaction (R-30). Any failure on
the way is a BLOCK with a SYS-* rule (fail closed), logged with its reason.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sentinelle import logs
from sentinelle.config import Config, ConfigError
from sentinelle.core.model import Call, Campaign, Decision, History, Professional
from sentinelle.core.numbers import Kind, Number, NumberError, parse
from sentinelle.core.rules import SYS_CONFIG, SYS_ERROR, SYS_STORE, decide, fail_closed
from sentinelle.store import Backend, StoreBusy, StoreError

log = logging.getLogger("sentinelle.decision")


@dataclass(frozen=True, slots=True)
class Request:
    dialled: str
    at: datetime
    campaign: str | None = None
    caller_id: str | None = None
    masked: bool = False
    record: bool = False
    source: str = "cli"
    context: tuple[tuple[str, str], ...] = ()  # e.g. AGI channel/uniqueid, kept as evidence


def check(config: Config, store: Backend | None, req: Request,
          store_error: str | None = None, busy_raises: bool = False) -> Decision:
    """Decide and (with `record`) count the call. Never raises, except
    StoreBusy with `busy_raises` (nothing was written nor logged: the caller
    retries where it may wait for the lock; the FastAGI fast path does)."""
    try:
        decision = _check(config, store, req, store_error, busy_raises)
    except StoreBusy:
        if busy_raises:
            raise
        return fault(config, req, SYS_STORE, "store busy")
    except Exception as exc:  # the last line of defence on the call path
        log.exception("internal error while checking", extra={"fields": {"dialled": req.dialled}})
        return fault(config, req, SYS_ERROR, f"{type(exc).__name__}: {exc}")
    _emit(decision, req)
    return decision


def fault(config: Config, req: Request, rule: str, reason: str,
          level: int = logging.INFO) -> Decision:
    """A decision for a fault of sentinelle's own (SYS-*), logged like any
    other: blocked, unless the request's campaign opted for fail-open."""
    decision = fail_closed(resolve_call(config, req), rule, reason, config.policy)
    _emit(decision, req, level)
    return decision


def resolve_call(config: Config, req: Request) -> Call:
    """The Call of a request; an unknown campaign becomes a placeholder so
    that a fail-closed decision can still be built and logged."""
    try:
        campaign: Campaign | None = config.campaign(req.campaign)
    except ConfigError:
        campaign = None
    return _call(config, req, campaign)


def _check(config: Config, store: Backend | None, req: Request, store_error: str | None,
           busy_raises: bool = False) -> Decision:
    try:
        campaign = config.campaign(req.campaign)
    except ConfigError as exc:
        return _log_only(store, fail_closed(_call(config, req, None), SYS_CONFIG, str(exc),
                                            config.policy), req, busy_raises)
    call = _call(config, req, campaign)
    try:
        callee: Number | NumberError = parse(req.dialled, config.policy.outside_prefix)
    except NumberError as exc:
        callee = exc
    if isinstance(callee, NumberError) or callee.kind is Kind.SHORT:
        # need no history: decide without touching the store.
        return _log_only(store, decide(call, callee, History(), config.policy), req, busy_raises)
    if store is None:
        return fail_closed(call, SYS_STORE, store_error or "store unavailable", config.policy,
                           callee=callee)
    number = callee
    try:
        return store.check_and_record(
            campaign.professional, number.e164, req.at,
            lambda history: decide(call, number, history, config.policy),
            record=req.record, source=req.source, inputs=_inputs(config, req),
        )
    except StoreError as exc:
        if busy_raises and isinstance(exc, StoreBusy):
            raise
        return fail_closed(call, SYS_STORE, str(exc), config.policy, callee=callee)


def _call(config: Config, req: Request, campaign: Campaign | None) -> Call:
    if campaign is None:
        name = req.campaign or "?"
        campaign, professional = Campaign(name, "?"), Professional("?")
    else:
        professional = config.professional_of(campaign)
    return Call(dialled=req.dialled, at=req.at, campaign=campaign, professional=professional,
                caller_id=req.caller_id, masked=req.masked)


def _inputs(config: Config, req: Request) -> dict[str, Any]:
    p = config.policy
    return {
        "dialled": req.dialled, "caller_id": req.caller_id, "masked": req.masked,
        "campaign": req.campaign, "context": dict(req.context),
        "policy": {"regime": p.regime, "consent_max_age_days": p.consent_max_age_days,
                   "foreign": p.foreign, "cautious_alsace": p.cautious_alsace,
                   "bloctel_max_age_days": p.bloctel_max_age_days},
    }


def _log_only(store: Backend | None, decision: Decision, req: Request,
              busy_raises: bool = False) -> Decision:
    """Decisions taken without the history still go to the decision log."""
    if req.record and store is not None:
        try:
            store.log_decision(decision, req.source, {"dialled": req.dialled,
                                                      "context": dict(req.context)})
        except StoreError as exc:
            if busy_raises and isinstance(exc, StoreBusy):
                raise
            logs.event(log, "decision not persisted", logging.ERROR, error=str(exc))
    return decision


def _emit(d: Decision, req: Request, level: int = logging.INFO) -> None:
    logs.event(
        log, "decision", level,
        verdict=d.verdict.value, rules=list(d.rules), reasons=list(d.reasons), regime=d.regime,
        notes=list(d.notes),
        campaign=d.campaign, professional=d.professional, dialled=req.dialled,
        e164=d.callee.e164 if d.callee else None, caller_id=req.caller_id,
        attempt=d.attempt_id, source=req.source, record=req.record,
        retry_at=d.retry_at.isoformat() if d.retry_at else None, **dict(req.context),
    )
