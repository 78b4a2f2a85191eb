"""Aliases: durable names that point at a model, stored beside the jobs (table `aliases`).

A model is a succeeded train job; an alias names one by its id. Moving an alias is one
short transaction, so the next request that resolves it sees the new model. Setting an
alias and retiring (deleting) a model both lock the model's job row first, so an alias can
never be left pointing at a deleted model, and a model with an alias is never deleted.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from pydantic import BaseModel
from sqlalchemy import Engine, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from core.job_records import JobNotFound, JobState, utcnow
from core.job_tables import AliasRow, JobRow

# The mark a deleted model leaves in its job's `result` (the job record itself stays).
DELETED_AT = "deleted_at"


class AliasNotFound(LookupError):
    """No alias of that name."""


class AliasConflict(RuntimeError):
    """The alias cannot be set: its name is a job id, or the model is being deleted."""


class ModelAliased(RuntimeError):
    """The model cannot be deleted: aliases point at it."""


class Alias(BaseModel):
    alias: str
    model: str


class AliasList(BaseModel):
    aliases: list[Alias]


class Aliases:
    """Reads and writes of the `aliases` table; every method is one short transaction."""

    def __init__(self, engine: Engine) -> None:
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    @contextmanager
    def _session(self) -> Iterator[Session]:
        with self._sessions.begin() as session:
            yield session

    def resolve(self, alias: str) -> str | None:
        """The model id `alias` points at, or None when there is no such alias."""
        with self._session() as session:
            row = session.get(AliasRow, alias)
            return row.model if row is not None else None

    def all(self) -> AliasList:
        query = select(AliasRow).order_by(AliasRow.alias)
        with self._session() as session:
            rows = session.scalars(query)
            return AliasList(aliases=[Alias(alias=r.alias, model=r.model) for r in rows])

    def of_models(self) -> dict[str, list[str]]:
        """Every model that has aliases, with its aliases sorted."""
        found: dict[str, list[str]] = {}
        for entry in self.all().aliases:
            found.setdefault(entry.model, []).append(entry.alias)
        return found

    def set(self, alias: str, model_id: str) -> Alias:
        """Point `alias` at model `model_id` (created, or moved from another model).

        The caller has checked that `model_id` is a model; here it is checked again under
        the job row's lock that it was not deleted meanwhile.
        """
        for attempt in range(2):
            try:
                with self._session() as session:
                    self._lock_model(session, model_id)
                    if session.get(JobRow, alias) is not None:
                        raise AliasConflict(f"alias {alias!r} is a job id; choose another name")
                    row = session.get(AliasRow, alias, with_for_update=True)
                    if row is None:
                        session.add(AliasRow(alias=alias, model=model_id, updated_at=utcnow()))
                    else:
                        row.model = model_id
                        row.updated_at = utcnow()
                return Alias(alias=alias, model=model_id)
            except IntegrityError:  # created by a concurrent request in between: move it
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def delete(self, alias: str) -> None:
        with self._session() as session:
            row = session.get(AliasRow, alias, with_for_update=True)
            if row is None:
                raise AliasNotFound(f"no alias named {alias[:80]!r}")
            session.delete(row)

    def retire_model(self, model_id: str) -> None:
        """Mark model `model_id` deleted in its job's result (its files go next).

        Raises:
            ModelAliased: An alias points at it.
        """
        with self._session() as session:
            job = self._lock_model(session, model_id)
            names = session.scalars(select(AliasRow.alias).where(AliasRow.model == model_id))
            aliases = sorted(names)
            if aliases:
                raise ModelAliased(
                    f"model {model_id} has aliases {aliases}; move or delete them first"
                )
            job.result = {**(job.result or {}), DELETED_AT: utcnow().isoformat() + "Z"}

    @staticmethod
    def _lock_model(session: Session, model_id: str) -> JobRow:
        job = session.get(JobRow, model_id, with_for_update=True)
        if job is None:
            raise JobNotFound(model_id)
        if job.kind != "train" or job.state != JobState.SUCCEEDED.value:
            raise AliasConflict(f"job {model_id} is not a model")
        if DELETED_AT in (job.result or {}):
            raise AliasConflict(f"model {model_id} has been deleted")
        return job
