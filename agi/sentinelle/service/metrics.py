"""Prometheus metrics for `sentinelle serve` ([metrics] listen in config).

A PBX team watches the guard like any other service: what it decides and
why, how fast, whether the ARI stream is up, and the two slow-burning risks
that turn into fines if nobody looks: a Bloctel snapshot going stale (R-10
then blocks every prospecting call) and consents reaching their maximum age
(R-11). Those two are read from the store at scrape time, on the scrape
thread's own connection, so the call path never pays for them.

`/health` on the same listener answers 200 "ok" when the store can be read,
else 503 with the reason (the reason every check is blocked with): a
monitor or a load balancer sees why the guard blocks, not just that it does.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable, Iterator
from datetime import datetime
from http.server import ThreadingHTTPServer
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Gauge
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.exposition import MetricsHandler
from prometheus_client.registry import Collector

from sentinelle import logs
from sentinelle.config import Config
from sentinelle.core.model import PARIS
from sentinelle.service.tallies import Tallies
from sentinelle.store import StoreError, is_postgres, open_store
from sentinelle.store import space as disk_space

if TYPE_CHECKING:
    from sentinelle.pbx.listener import Listener

log = logging.getLogger("sentinelle.metrics")

CONSENT_HORIZON_DAYS = 30

# Documented in README ("Metrics"); a test scrapes every one of them.
METRIC_NAMES = (
    "sentinelle_decisions_total",
    "sentinelle_check_seconds",
    "sentinelle_inflight_requests",
    "sentinelle_ari_connected",
    "sentinelle_ari_connects_total",
    "sentinelle_ari_auth_failed",
    "sentinelle_bloctel_snapshot_age_days",
    "sentinelle_consents_expiring",
    "sentinelle_store_up",
    "sentinelle_store_problem",
    "sentinelle_store_disk_free_bytes",
    "sentinelle_store_wal_bytes",
    "sentinelle_store_disk_refusals_total",
)


class Metrics:
    """The metrics endpoint of one `serve` (its only or first worker).
    Decisions, latency and requests in flight come from `tallies`, shared
    with every worker when there are several."""

    def __init__(self, config: Config, clock: Callable[[], datetime],
                 tallies: Tallies | None = None) -> None:
        self.config = config
        self.clock = clock
        self.tallies = tallies if tallies is not None else Tallies(1)
        self.registry = CollectorRegistry()
        self.ari_connected = Gauge("sentinelle_ari_connected",
                                   "1 while the ARI event stream is connected.",
                                   registry=self.registry)
        self.ari_connects = Gauge("sentinelle_ari_connects_total",
                                  "ARI connections made since start (reconnects = this - 1).",
                                  registry=self.registry)
        self.ari_auth_failed = Gauge(
            "sentinelle_ari_auth_failed",
            "1 while Asterisk refuses the ARI credentials (HTTP 401/403): nothing is followed "
            "over ARI until they are fixed.", registry=self.registry)
        self.registry.register(_TalliesCollector(self.tallies))
        self.registry.register(_StoreCollector(self))
        self._server: ThreadingHTTPServer | None = None

    def bind_listener(self, listener: Listener) -> None:
        self.ari_connected.set_function(lambda: 1.0 if listener.client.connected.is_set() else 0.0)
        self.ari_connects.set_function(lambda: float(listener.client.connects))
        self.ari_auth_failed.set_function(lambda: 1.0 if listener.client.auth_failed else 0.0)

    def start(self) -> tuple[str, int]:
        host, _, port = self.config.metrics.listen.rpartition(":")
        server = _start_server(host.strip("[]"), int(port), self)
        self._server = server
        bound = server.server_address[:2]
        logs.event(log, "metrics listening", host=bound[0], port=bound[1])
        return str(bound[0]), int(bound[1])

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def store_problem(self) -> str | None:
        """Why the store cannot be read right now (None: it can), on a fresh
        connection of the calling thread, as a check would open it."""
        try:
            store = open_store(self.config.store, busy_timeout_ms=200, pool_size=1)
        except StoreError as exc:
            return str(exc)
        try:
            store.count("meta")
        except StoreError as exc:
            return str(exc)
        finally:
            store.close()
        return None


def _start_server(host: str, port: int, metrics: Metrics) -> ThreadingHTTPServer:
    """prometheus-client's handler for /metrics, plus /health."""
    base: type[MetricsHandler] = MetricsHandler.factory(metrics.registry)

    class Handler(base):  # type: ignore[valid-type,misc]
        def do_GET(self) -> None:
            if self.path.split("?", 1)[0] != "/health":
                super().do_GET()
                return
            problem = metrics.store_problem()
            body = ("ok\n" if problem is None else f"store: {problem}\n").encode()
            self.send_response(200 if problem is None else 503)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    family = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM,
                                flags=socket.AI_PASSIVE)[0][0]

    class Server(ThreadingHTTPServer):
        address_family = family
        daemon_threads = True

    server = Server((host, port), Handler)
    threading.Thread(target=server.serve_forever, name="sentinelle-metrics", daemon=True).start()
    return server


class _TalliesCollector(Collector):
    """Every worker's decisions, latency and requests in flight, added up."""

    def __init__(self, tallies: Tallies) -> None:
        self.tallies = tallies

    def collect(self) -> Iterator[CounterMetricFamily | HistogramMetricFamily | GaugeMetricFamily]:
        decisions = CounterMetricFamily(
            "sentinelle_decisions", "Decisions by verdict and blocking rule id (rule=\"\" on "
            "allow), all workers.", labels=["verdict", "rule"])
        for verdict, rule, count in self.tallies.decisions():
            decisions.add_metric([verdict, rule], count)
        buckets, total = self.tallies.latency()
        latency = HistogramMetricFamily(
            "sentinelle_check_seconds", "FastAGI check time, headers received to verdict ready.",
            buckets=buckets, sum_value=total)
        inflight = GaugeMetricFamily("sentinelle_inflight_requests",
                                     "FastAGI connections being served, all workers.",
                                     value=self.tallies.inflight())
        yield from (decisions, latency, inflight)


class _StoreCollector(Collector):
    """Read at scrape time from the store (a fresh read-only connection)."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        config = self.metrics.config
        up = GaugeMetricFamily("sentinelle_store_up", "1 if the store could be read at scrape time.")
        problem = GaugeMetricFamily(
            "sentinelle_store_problem", "1 with the reason when the store could not be read at "
            "scrape time (the reason checks are blocked with, SYS-STORE); 0 with reason=\"\" "
            "when it could.",
            labels=["reason"])
        age = GaugeMetricFamily(
            "sentinelle_bloctel_snapshot_age_days",
            "Age of the current Bloctel snapshot per professional (R-10 blocks beyond "
            "policy.bloctel_max_age_days); absent when none was imported.", labels=["professional"])
        expiring = GaugeMetricFamily(
            "sentinelle_consents_expiring",
            f"Live consents reaching consent_max_age_days (R-11) within {CONSENT_HORIZON_DAYS} days.",
            labels=["professional"])
        # Two stat calls on paths, never a descriptor opened on the store
        # (closing one would drop SQLite's locks): asked even when the store
        # cannot be opened, a full disk being one reason it cannot.
        space = GaugeMetricFamily(
            "sentinelle_store_disk_free_bytes",
            "Free space on the store's file system (a full disk blocks every check, "
            "SYS-STORE).")
        wal = GaugeMetricFamily("sentinelle_store_wal_bytes",
                                "Size of the store's -wal file (checkpointed in the background).")
        # A disk that fills up is refused writes before it is full (store.space):
        # this counts them, in this process (a SQLite store has one serve).
        refusals = CounterMetricFamily(
            "sentinelle_store_disk_refusals",
            "Writes refused since start-up because the disk lacked room for the WAL "
            "checkpoint (each refused check is also a SYS-STORE block).")
        if not is_postgres(config.store):  # a SQLite file's; PostgreSQL is monitored as a server
            free = disk_space.free_bytes(config.store.path)
            if free is not None:
                space.add_metric([], float(free))
            wal.add_metric([], float(disk_space.wal_bytes(config.store.path)))
            refusals.add_metric([], float(disk_space.of(config.store.path).refusals))
        yield from (space, wal, refusals)
        now = self.metrics.clock()
        try:
            store = open_store(config.store, busy_timeout_ms=200, pool_size=1)
            try:
                snaps = store.snapshots()
                soon = store.consents_expiring(now, config.policy.consent_max_age_days,
                                               CONSENT_HORIZON_DAYS)
            finally:
                store.close()
        except StoreError as exc:
            up.add_metric([], 0.0)
            problem.add_metric([str(exc)], 1.0)
            yield from (up, problem)
            return
        up.add_metric([], 1.0)
        problem.add_metric([""], 0.0)
        today = now.astimezone(PARIS).date()
        for snap in snaps:
            age.add_metric([snap.professional], float((today - snap.snapshot_date).days))
        for name in config.professionals:
            expiring.add_metric([name], float(soon.get(name, 0)))
        yield from (up, problem, age, expiring)
