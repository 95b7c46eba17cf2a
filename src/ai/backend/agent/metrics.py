"""The agent's Prometheus metrics, read from its state when scraped."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ai.backend.common.dto.agent import ReplicaReport, ReplicaStatus
from ai.backend.common.types.slots import ResourceSlot

GPU_SLOTS = ("cuda.device", "cuda.shares")


class AgentMetrics(Collector):
    def __init__(
        self, *, reports: Callable[[], list[ReplicaReport]], slots_total: ResourceSlot
    ) -> None:
        self._reports = reports
        self._slots_total = slots_total
        self.heartbeat_failures = 0
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)

    def collect(self) -> Iterator[Metric]:
        reports = self._reports()
        by_status = Counter(report.status for report in reports)
        replicas = GaugeMetricFamily(
            "backend_agent_replicas", "replicas on this agent by status", labels=["status"]
        )
        for status in ReplicaStatus:
            replicas.add_metric([status.value], by_status.get(status, 0))
        yield replicas
        restarts = GaugeMetricFamily(
            "backend_agent_replica_restarts", "process restarts of the current replicas"
        )
        restarts.add_metric([], sum(report.restarts for report in reports))
        yield restarts
        failures = CounterMetricFamily(
            "backend_agent_heartbeat_failures", "heartbeats without a usable answer"
        )
        failures.add_metric([], self.heartbeat_failures)
        yield failures
        gpus = GaugeMetricFamily(
            "backend_agent_gpu_slots_total", "GPU slots this agent offers", labels=["slot"]
        )
        for slot in GPU_SLOTS:
            gpus.add_metric([slot], float(self._slots_total.amount(slot)))
        yield gpus

    def render(self) -> bytes:
        return generate_latest(self.registry)
