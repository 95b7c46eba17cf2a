"""Redis key layout (DESIGN.md §4.2); the prefix is configurable (default ``bai:``)."""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_PREFIX = "bai:"
# how long an open job's branch state (counter, outcomes, ended branches) outlives its last change
JOB_STATE_TTL_SECONDS = 24 * 3600
# how long the end of a job that succeeded or failed is remembered: a duplicate that ends a
# branch later than this after the job's end could end the job again (sized for duplicates from
# reclaims and retries, which come within minutes; retry delays are capped well below it)
JOB_END_TTL_SECONDS = 3600
# how long a cancel is remembered (end guard and cancel set): a cancelled job's envelopes are not
# duplicates, they go on arriving until its backlog drains, so as long as an open job's state
CANCEL_TTL_SECONDS = JOB_STATE_TTL_SECONDS
# A reply stream (request-reply, DESIGN.md §4.2) is no work queue: its gateway reads and trims it
# as replies come, so these only bound what a gateway that is slow or gone leaves behind. Each
# write trims it to about REPLY_MAXLEN entries and renews its expiry.
REPLY_MAXLEN = 10_000
REPLY_TTL_SECONDS = 3600


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

    def reply(self, address: str) -> str:
        """Stream of the final outcomes of requests a gateway run waits for (header
        ``reply-to: <address>``, ``<gateway id>.<run>``), field ``ev``: terminal job events."""
        return f"{self.prefix}reply:{address}"

    @property
    def cancel(self) -> str:
        """Sorted set of cancelled job ids scored by when (Redis time); also the pub/sub channel
        that tells consumers of each new one."""
        return f"{self.prefix}cancel"

    # A job's keys share the hash tag {job_id}, so that a script touching them stays in one slot
    # of a Redis Cluster (DESIGN.md §11).

    def job_state(self, job_id: str) -> str:
        """Hash of an open job's branch accounting, deleted when the job ends:

        * ``open``: open branches *minus one* (absent = one open branch): a fan-out into n adds
          n - 1, each branch that ends subtracts 1, and the one that takes it below 0 is last;
        * ``f:<parent id>``: that parent's fan-out is counted (once);
        * ``d:<envelope id>``: that envelope's branch has ended (once);
        * ``o:<branch>``: a finished branch's outcome (``s`` + result or ``f`` + error JSON),
          by branch position, zero-padded, so that sorting the fields orders the results."""
        return f"{self.prefix}job:{{{job_id}}}:state"

    def job_end(self, job_id: str) -> str:
        """The job's end guard: its terminal kind, set by the first terminal write only."""
        return f"{self.prefix}job:{{{job_id}}}:end"
