"""Prometheus metrics of one sidecar, served on ``/metrics`` when a port is configured."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

PROCESSING_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)


class SidecarMetrics:
    def __init__(self, actor: str) -> None:
        self.actor = actor
        self.registry = CollectorRegistry()
        labels = ["actor"]

        def counter(name: str, doc: str) -> Counter:
            return Counter(name, doc, labels, registry=self.registry)

        self.received = counter("bai_sidecar_received", "envelopes received").labels(actor)
        self.processed = counter("bai_sidecar_processed", "envelopes processed").labels(actor)
        self.failed = counter("bai_sidecar_failed", "calls that failed").labels(actor)
        self.retried = counter("bai_sidecar_retried", "envelopes scheduled again").labels(actor)
        self.dead_lettered = counter(
            "bai_sidecar_dead_lettered", "envelopes sent to the DLQ"
        ).labels(actor)
        self.reclaimed = counter(
            "bai_sidecar_reclaimed", "entries taken over from a silent replica"
        ).labels(actor)
        self.taken_over = counter(
            "bai_sidecar_taken_over",
            "entries in flight here that another replica reclaimed meanwhile",
        ).labels(actor)
        self.delivery_limit = counter(
            "bai_sidecar_delivery_limit",
            "entries dead-lettered after retry.max_deliveries deliveries",
        ).labels(actor)
        self.events_dropped = counter(
            "bai_sidecar_events_dropped", "job events dropped while Redis was unreachable"
        ).labels(actor)
        self._errors = Counter(
            "bai_sidecar_errors",
            "unexpected failures of the sidecar's own tasks, by task (logged once each)",
            ["actor", "task"],
            registry=self.registry,
        )
        self.redis_retries = counter(
            "bai_sidecar_redis_retries", "Redis calls tried again after a transient error"
        ).labels(actor)
        self.in_flight = Gauge(
            "bai_sidecar_in_flight", "envelopes being processed", labels, registry=self.registry
        ).labels(actor)
        self.processing_seconds = Histogram(
            "bai_sidecar_processing_seconds",
            "time from receipt to committed outcome",
            labels,
            buckets=PROCESSING_BUCKETS,
            registry=self.registry,
        ).labels(actor)

    def count_error(self, task: str) -> None:
        """One unexpected failure of the sidecar's task ``task`` (which also logs it)."""
        self._errors.labels(self.actor, task).inc()

    def serve(self, port: int, host: str = "127.0.0.1") -> None:
        """Serve ``/metrics`` from a daemon thread (prometheus-client's own server)."""
        start_http_server(port, addr=host, registry=self.registry)
