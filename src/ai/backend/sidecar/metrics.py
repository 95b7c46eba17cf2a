"""Prometheus metrics of one sidecar, served on ``/metrics`` when a port is configured."""

from __future__ import annotations

import bisect
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server
from prometheus_client.metrics_core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

PROCESSING_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)


class LoopCounter:
    """A counter that only the event loop's thread increments (a plain number: no lock on the
    hot path); the scrape reads it from the metrics server's thread."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def inc(self, amount: float = 1) -> None:
        self.value += amount


class LoopHistogram:
    """A histogram that only the event loop's thread observes (plain numbers, as
    :class:`LoopCounter`)."""

    __slots__ = ("bounds", "counts", "total", "count")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last one: above every bound
        self.total = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.total += value
        self.count += 1

    def buckets(self) -> list[tuple[str, float]]:
        """Cumulative ``(le, count)`` pairs, ``+Inf`` last."""
        cumulative, running = [], 0
        for bound, count in zip([*map(floatToGoString, self.bounds), "+Inf"], self.counts):
            running += count
            cumulative.append((bound, float(running)))
        return cumulative


class _LoopCounters(Collector):
    """Exposes loop counters and histograms as Prometheus metrics labelled by actor."""

    def __init__(self, actor: str) -> None:
        self.actor = actor
        self.counters: list[tuple[str, str, LoopCounter]] = []
        self.histograms: list[tuple[str, str, LoopHistogram]] = []

    def add(self, name: str, doc: str) -> LoopCounter:
        counter = LoopCounter()
        self.counters.append((name, doc, counter))
        return counter

    def add_histogram(self, name: str, doc: str, bounds: tuple[float, ...]) -> LoopHistogram:
        histogram = LoopHistogram(bounds)
        self.histograms.append((name, doc, histogram))
        return histogram

    def collect(self) -> Iterator[Metric]:
        for name, doc, counter in self.counters:
            family = CounterMetricFamily(name, doc, labels=["actor"])
            family.add_metric([self.actor], counter.value)
            yield family
        for name, doc, histogram in self.histograms:
            histogram_family = HistogramMetricFamily(name, doc, labels=["actor"])
            histogram_family.add_metric([self.actor], histogram.buckets(), histogram.total)
            yield histogram_family


class SidecarMetrics:
    def __init__(self, actor: str) -> None:
        self.actor = actor
        self.registry = CollectorRegistry()
        labels = ["actor"]
        counters = _LoopCounters(actor)
        counter = counters.add
        self.received = counter("bai_sidecar_received", "envelopes received")
        self.processed = counter("bai_sidecar_processed", "envelopes processed")
        self.failed = counter("bai_sidecar_failed", "calls that failed")
        self.retried = counter("bai_sidecar_retried", "envelopes scheduled again")
        self.dead_lettered = counter("bai_sidecar_dead_lettered", "envelopes sent to the DLQ")
        self.reclaimed = counter(
            "bai_sidecar_reclaimed", "entries taken over from a silent replica"
        )
        self.taken_over = counter(
            "bai_sidecar_taken_over",
            "entries in flight here that another replica reclaimed meanwhile",
        )
        self.delivery_limit = counter(
            "bai_sidecar_delivery_limit",
            "entries dead-lettered after retry.max_deliveries deliveries",
        )
        self.events_dropped = counter(
            "bai_sidecar_events_dropped", "job events dropped while Redis was unreachable"
        )
        self.redis_retries = counter(
            "bai_sidecar_redis_retries", "Redis calls tried again after a transient error"
        )
        self.registry.register(counters)
        self._errors = Counter(
            "bai_sidecar_errors",
            "unexpected failures of the sidecar's own tasks, by task (logged once each)",
            ["actor", "task"],
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "bai_sidecar_in_flight", "envelopes being processed", labels, registry=self.registry
        ).labels(actor)
        self.processing_seconds = counters.add_histogram(
            "bai_sidecar_processing_seconds",
            "time from receipt to committed outcome",
            PROCESSING_BUCKETS,
        )

    def count_error(self, task: str) -> None:
        """One unexpected failure of the sidecar's task ``task`` (which also logs it)."""
        self._errors.labels(self.actor, task).inc()

    def serve(self, port: int, host: str = "127.0.0.1") -> None:
        """Serve ``/metrics`` from a daemon thread (prometheus-client's own server)."""
        start_http_server(port, addr=host, registry=self.registry)
