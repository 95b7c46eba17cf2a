"""Background duties that keep every job moving toward an end, on any gateway replica (each
step is safe to run on several at once):

* a job past its stored ``deadline_at`` is failed with a ``timeout`` error (through the job's
  end guard in Redis, so it races fairly with the job's own end), also after a restart;
* a job whose first envelope was not confirmed published is published again, or, past its
  deadline, left to the step above."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

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
        """Fail open jobs whose deadline passed; returns how many this call ended."""
        ended = 0
        for job in await self._jobs.overdue(limit=BATCH):
            deadline = job.deadline_at.isoformat() if job.deadline_at else "?"
            error = JobError(
                code=ErrorCode.TIMEOUT,
                message=f"the job did not finish by its deadline {deadline}",
                reason="timeout",
            )
            result = await self._data_plane.fail(
                job.id,
                error.model_dump(mode="json", exclude_none=True),
                {"envelope_id": job.id},
                keep=skip_for(job.deadline_at),
            )
            if not result.ended:
                continue  # it ended in the data plane first: that event is on its way
            event = JobEvent(job_id=job.id, kind=JobEventKind.FAILED, error=error)
            await self._ingestor.apply_local([IncomingEvent(event)])
            ended += 1
        return ended

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
