"""The job store's record of a shard job's shards: each shard's progress, and which
writer holds it now. Part of ``core.jobs.JobStore``."""

from __future__ import annotations

from contextlib import AbstractContextManager
from datetime import timedelta

from sqlalchemy import delete, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.job_records import utcnow
from core.job_tables import ShardClaimRow, ShardProgressRow


class ShardLedger:
    """The shard methods of ``JobStore``; every method is one short transaction."""

    def _session(self) -> AbstractContextManager[Session]:
        raise NotImplementedError

    def set_shard_progress(
        self, job_id: str, unit: int, done: int, total: int, finished: bool
    ) -> None:
        with self._session() as session:
            row = session.get(ShardProgressRow, (job_id, unit), with_for_update=True)
            if row is None:
                session.add(
                    ShardProgressRow(
                        job_id=job_id, unit=unit, done=done, total=total, finished=finished
                    )
                )
            else:
                row.done, row.total, row.finished = done, total, finished

    def shard_progress(self, job_id: str) -> list[tuple[int, int, int, bool]]:
        query = (
            select(ShardProgressRow)
            .where(ShardProgressRow.job_id == job_id)
            .order_by(ShardProgressRow.unit)
        )
        with self._session() as session:
            return [(u.unit, u.done, u.total, u.finished) for u in session.scalars(query)]

    def claim_shard(self, job_id: str, unit: int, owner: str, lease_seconds: int) -> str | None:
        """Take the lease on one shard; None when granted, else who holds it (alive)."""
        now = utcnow()
        expires = now + timedelta(seconds=lease_seconds)
        try:
            with self._session() as session:
                taken = session.execute(
                    update(ShardClaimRow)
                    .where(
                        ShardClaimRow.job_id == job_id,
                        ShardClaimRow.unit == unit,
                        or_(ShardClaimRow.owner == owner, ShardClaimRow.expires < now),
                    )
                    .values(owner=owner, expires=expires)
                ).rowcount  # type: ignore[attr-defined]  # an UPDATE gives a CursorResult
                if taken:
                    return None
                row = session.get(ShardClaimRow, (job_id, unit))
                if row is not None:
                    return row.owner
                session.add(ShardClaimRow(job_id=job_id, unit=unit, owner=owner, expires=expires))
        except IntegrityError:  # another writer inserted it first
            return "another writer"
        return None

    def renew_shard(self, job_id: str, unit: int, owner: str, lease_seconds: int) -> bool:
        """Extend this owner's lease on a shard; False if it is no longer this owner's."""
        with self._session() as session:
            return bool(
                session.execute(
                    update(ShardClaimRow)
                    .where(
                        ShardClaimRow.job_id == job_id,
                        ShardClaimRow.unit == unit,
                        ShardClaimRow.owner == owner,
                    )
                    .values(expires=utcnow() + timedelta(seconds=lease_seconds))
                ).rowcount  # type: ignore[attr-defined]
            )

    def release_shard(self, job_id: str, unit: int, owner: str) -> None:
        with self._session() as session:
            session.execute(
                delete(ShardClaimRow).where(
                    ShardClaimRow.job_id == job_id,
                    ShardClaimRow.unit == unit,
                    ShardClaimRow.owner == owner,
                )
            )

    def claimed_shards(self, job_id: str) -> set[int]:
        """The shards of a job that a live writer holds now."""
        query = select(ShardClaimRow.unit).where(
            ShardClaimRow.job_id == job_id, ShardClaimRow.expires >= utcnow()
        )
        with self._session() as session:
            return set(session.scalars(query))
