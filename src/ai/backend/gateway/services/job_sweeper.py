"""Background duties that keep every job moving toward an end, on any gateway replica (each
step is safe to run on several at once):

* a job past its stored ``deadline_at`` is failed with a ``timeout`` error (through the job's
  end guard in Redis, so it races fairly with the job's own end), also after a restart;
* a job whose first envelope was not confirmed published is published again, or, past its
  deadline, left to the step above."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta

from ai.backend.common.aio import Backoff
from ai.backend.common.dto.gateway_api import JobInfo
from ai.backend.common.dto.job_event import ErrorCode, JobError, JobEvent, JobEventKind, JobStatus
from ai.backend.common.log import BraceStyleAdapter

from ..clients.data_plane import DataPlaneClient
from ..metrics import GatewayMetrics
from ..repositories.job_events import IncomingEvent
from ..repositories.jobs import JobRepository
from .event_ingestor import EventIngestor
from .jobs import first_envelope, skip_for

log = BraceStyleAdapter(logging.getLogger(__spec__.name))

BATCH = 500
# how long after its deadline a job that ended in the data plane may wait for its event
LOST_END_GRACE = timedelta(minutes=10)
LOST_END_REASON = "the job ended in the data plane but its event never reached the gateway"


def _lost_end(job_id: str, ended_as: str) -> JobEvent:
    if ended_as == JobEventKind.FAILED.value:
        error = JobError(code=ErrorCode.PROCESSING_ERROR, message=LOST_END_REASON, reason="lost")
        return JobEvent(job_id=job_id, kind=JobEventKind.FAILED, error=error)
    known = ended_as in ("succeeded", "cancelled")
    kind = JobEventKind(ended_as) if known else JobEventKind.CANCELLED
    return JobEvent(job_id=job_id, kind=kind, data={"reason": LOST_END_REASON})


class JobSweeper:
    def __init__(
        self,
        *,
        jobs: JobRepository,
        data_plane: DataPlaneClient,
        ingestor: EventIngestor,
        metrics: GatewayMetrics,
        interval: float,
        publish_retry_after: float,
    ) -> None:
        self._jobs = jobs
        self._data_plane = data_plane
        self._ingestor = ingestor
        self._metrics = metrics
        self._interval = interval
        self._publish_retry_after = publish_retry_after

    async def fail_overdue(self) -> int:
        """Fail open jobs whose deadline passed (every one of them, page by page); returns how
        many this call ended."""
        ended = 0
        after: tuple[datetime, str] | None = None
        while page := await self._jobs.overdue(limit=BATCH, after=after):
            for job in page:
                ended += await self._fail_overdue(job)
            last = page[-1]
            assert last.deadline_at is not None
            after = (last.deadline_at, last.id)
            if len(page) < BATCH:
                break
        return ended

    async def _fail_overdue(self, job: JobInfo) -> int:
        assert job.deadline_at is not None
        error = JobError(
            code=ErrorCode.TIMEOUT,
            message=f"the job did not finish by its deadline {job.deadline_at.isoformat()}",
            reason="timeout",
        )
        result = await self._data_plane.fail(
            job.id,
            error.model_dump(mode="json", exclude_none=True),
            {"envelope_id": job.id},
            keep=skip_for(job.deadline_at),
        )
        if result.ended:
            event = JobEvent(job_id=job.id, kind=JobEventKind.FAILED, error=error)
        elif datetime.now(UTC) - job.deadline_at > LOST_END_GRACE:
            # it ended in the data plane long ago, and its event never reached the jobs of
            # record (refused, or lost): record the end the data plane knows, once
            event = _lost_end(job.id, result.ended_as)
        else:
            return 0  # it ended in the data plane first: that event is on its way
        await self._ingestor.apply_local([IncomingEvent(event)])
        return 1

    async def publish_unconfirmed(self) -> int:
        """Publish again the pending jobs whose publish was never confirmed."""

        async def publish(jobs: list[JobInfo]) -> None:
            now = datetime.now(UTC)
            await self._data_plane.publish(
                [
                    (
                        job.route[0],
                        first_envelope(job.id, job.route, job.arguments, job.deadline_at),
                    )
                    for job in jobs
                    if job.status is JobStatus.PENDING
                    and job.deadline_at is not None
                    and job.deadline_at > now
                ]
            )

        count = await self._jobs.republish_unconfirmed(
            older_than=self._publish_retry_after, limit=BATCH, publish=publish
        )
        if count:
            log.info("published {} jobs again (their publish was not confirmed)", count)
        return count

    async def run(self) -> None:
        backoff = Backoff(maximum=5.0)
        while True:
            try:
                await self.fail_overdue()
                await self.publish_unconfirmed()
                backoff.reset()
                await asyncio.sleep(self._interval)  # a period, not synchronisation
            except asyncio.CancelledError:
                raise
            except Exception as e:
                log.warning("sweeping jobs failed ({}); retrying", e)
                self._metrics.count_error("sweep")
                await backoff.wait()
