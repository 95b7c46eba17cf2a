"""The manager's Prometheus metrics (DESIGN.md §9), refreshed from the database."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Gauge

from ..repositories.stats import StatsRepository


class ManagerMetrics:
    def __init__(self, stats: StatsRepository) -> None:
        self._stats = stats
        self.registry = CollectorRegistry()
        self.replicas = Gauge(
            "backendai_replicas",
            "replicas by actor and status",
            ["actor", "status"],
            registry=self.registry,
        )
        self.desired = Gauge(
            "backendai_replicas_desired",
            "replicas wanted per actor",
            ["actor"],
            registry=self.registry,
        )
        self.agents = Gauge(
            "backendai_agents", "agents by status", ["status"], registry=self.registry
        )
        self.slots_total = Gauge(
            "backendai_slots_total",
            "slots offered by alive agents",
            ["slot"],
            registry=self.registry,
        )
        self.slots_used = Gauge(
            "backendai_slots_used", "slots allocated to replicas", ["slot"], registry=self.registry
        )
        self.leader = Gauge(
            "backendai_scheduler_leader",
            "1 when this manager is the scheduling leader",
            registry=self.registry,
        )

    async def refresh(self, *, is_leader: bool) -> None:
        stats = await self._stats.read()
        self.leader.set(1 if is_leader else 0)
        for gauge in (self.replicas, self.desired, self.agents, self.slots_total, self.slots_used):
            gauge.clear()
        for (actor, status), count in stats.replicas.items():
            self.replicas.labels(actor=actor, status=status).set(count)
        for actor, count in stats.desired.items():
            self.desired.labels(actor=actor).set(count)
        for status, count in stats.agents.items():
            self.agents.labels(status=status).set(count)
        for slot, amount in stats.slots_total.items():
            self.slots_total.labels(slot=slot).set(float(amount))
        for slot, amount in stats.slots_used.items():
            self.slots_used.labels(slot=slot).set(float(amount))
