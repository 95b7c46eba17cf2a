"""The scheduling leader among managers: ``ai.backend.common.db.leader`` with the scheduler's
lock key."""

from ai.backend.common.db.leader import SCHEDULER_LOCK_KEY, LeaderElection, asyncpg_dsn

__all__ = ["SCHEDULER_LOCK_KEY", "LeaderElection", "asyncpg_dsn"]
