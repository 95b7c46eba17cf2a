"""The gateway's Prometheus metrics (DESIGN.md §9): jobs by status, events applied and ignored,
event lag, live streams."""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge

from ai.backend.common.dto.job_event import JobStatus

if TYPE_CHECKING:
    from .repositories.job_events import ApplyReport


class GatewayMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.jobs_created = Counter(
            "backendai_gateway_jobs_created", "jobs created", registry=self.registry
        )
        self.jobs = Gauge(
            "backendai_gateway_jobs", "jobs of record by status", ["status"], registry=self.registry
        )
        self.events_applied_total = Counter(
            "backendai_gateway_job_events_applied",
            "job events stored, by kind",
            ["kind"],
            registry=self.registry,
        )
        self.events_ignored = Counter(
            "backendai_gateway_job_events_ignored",
            "job events not applied: duplicate (entry or end seen before), after_end (a"
            " terminal state is immutable), unknown_job, coalesced (partials past the limit),"
            " malformed",
            ["reason"],
            registry=self.registry,
        )
        self.event_lag = Gauge(
            "backendai_gateway_job_events_lag",
            "job events not yet read by the gateways' group",
            registry=self.registry,
        )
        self.streams = Gauge(
            "backendai_gateway_event_streams",
            "open SSE streams and waiting calls on this replica",
            registry=self.registry,
        )
        self.errors = Counter(
            "backendai_gateway_errors",
            "errors of background work, by where",
            ["where"],
            registry=self.registry,
        )

    def events_applied(self, report: ApplyReport) -> None:
        for event in report.stored:
            self.events_applied_total.labels(kind=event.kind.value).inc()
        for reason in ("duplicate", "after_end", "unknown_job", "coalesced"):
            count = getattr(report, reason)
            if count:
                self.events_ignored.labels(reason=reason).inc(count)

    def event_ignored(self, reason: str) -> None:
        self.events_ignored.labels(reason=reason).inc()

    def count_error(self, where: str) -> None:
        self.errors.labels(where=where).inc()

    def set_jobs(self, counts: dict[JobStatus, int]) -> None:
        for status in JobStatus:
            self.jobs.labels(status=status.value).set(counts.get(status, 0))
