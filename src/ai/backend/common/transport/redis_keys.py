"""Redis key layout (DESIGN.md §4.2); the prefix is configurable (default ``bai:``)."""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_PREFIX = "bai:"
# how long a job's branch state (counter, outcomes, done markers) outlives its last change
JOB_STATE_TTL_SECONDS = 24 * 3600


@dataclass(frozen=True, slots=True)
class RedisKeys:
    prefix: str = DEFAULT_PREFIX

    def actor_stream(self, actor: str) -> str:
        """Inbox of an actor; its consumer group is named after the actor."""
        return f"{self.prefix}actor:{actor}"

    def dead_letters(self, actor: str) -> str:
        return f"{self.prefix}actor:{actor}:dlq"

    @property
    def actor_stream_prefix(self) -> str:
        return f"{self.prefix}actor:"

    @property
    def retry(self) -> str:
        """Sorted set of delayed messages, scored by due time."""
        return f"{self.prefix}retry"

    @property
    def events(self) -> str:
        return f"{self.prefix}events"

    def reply(self, gateway_id: str) -> str:
        return f"{self.prefix}reply:{gateway_id}"

    @property
    def cancel(self) -> str:
        return f"{self.prefix}cancel"

    def job_branches(self, job_id: str) -> str:
        """Open branches of a job *minus one* (absent = one open branch): a fan-out into n adds
        n - 1, each branch that ends subtracts 1, and the one that takes it below 0 is last."""
        return f"{self.prefix}job:{job_id}:branches"

    def job_outcomes(self, job_id: str) -> str:
        """Hash of the finished branches' outcomes (field = branch position, zero-padded)."""
        return f"{self.prefix}job:{job_id}:outcomes"

    def branch_done(self, envelope_id: str, terminal: str) -> str:
        """Idempotency marker: this envelope's branch already ended as ``terminal``."""
        return f"{self.prefix}done:{envelope_id}:{terminal}"
