"""What every connector promises, checked against its own fake: one class each connector's test module subclasses.

    class TestContract(ConnectorContract):
        @pytest.fixture
        def fake(self) -> Iterator[FakeThing]: ...      # the far side of the wire, running
        def connector(self, fake): ...                  # a connector configured against it
        def rename(self, fake): ...                     # rename one object at the source
        def remove(self, fake): ...                     # delete one object at the source
        def break_one(self, fake): ...                  # make one resource unreadable
        def heal(self, fake): ...                       # and readable again
        def secrets(self, fake): ...                    # the secret values of the connector's config

The promises: an object is known by its id at the source (a rename updates the
row, it does not create one); a resource that cannot be read makes the snapshot
incomplete and nothing is removed; only a complete answer removes what is gone;
a scope read completely removes what it no longer holds while another scope failed;
a detail that could not be read keeps its stored value and writes no change row;
a resync with no change writes nothing; no secret of the config reaches a record
or a stored row. The contract syncs into SQLite: the storage engines have their
own contract, and the point here is the connector.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from pydantic import SecretStr
from sqlalchemy import select

from inventory.connector import Connector
from inventory.errors import SourceError
from inventory.records import Snapshot
from inventory.storage.database import Database
from inventory.storage.models import OBJECT_MODELS, Change
from inventory.sync import sync_source

ROW_MODELS = OBJECT_MODELS


@dataclasses.dataclass(frozen=True)
class SourceObject:
    """One object as the source knows it: its object type ("host", "workload", "service"), kind and id."""

    object_type: str
    kind: str
    external_id: str


class ConnectorContract:
    # The outcome of a sync that could not read everything: "partial" (what was read is upserted), or
    # "failed" for a connector whose source is one unit (a static file that cannot be read fails it).
    incomplete_status = "partial"

    # -- what a connector's test module provides ---------------------------------------------------

    @pytest.fixture
    def fake(self) -> Any:  # pragma: no cover - every subclass provides its own
        raise NotImplementedError

    def connector(self, fake: Any) -> Connector:  # pragma: no cover
        raise NotImplementedError

    def rename(self, fake: Any) -> tuple[SourceObject, str]:  # pragma: no cover
        """Rename one object at the source; return it and its new name."""
        raise NotImplementedError

    def remove(self, fake: Any) -> SourceObject:  # pragma: no cover
        """Delete one object at the source; return it."""
        raise NotImplementedError

    def break_one(self, fake: Any) -> None:  # pragma: no cover
        """Make one resource of the source fail to read (until ``heal``)."""
        raise NotImplementedError

    def heal(self, fake: Any) -> None:  # pragma: no cover
        raise NotImplementedError

    def secrets(self, fake: Any) -> list[str]:  # pragma: no cover
        """The secret values in the connector's config (empty when its config model has no secret field)."""
        raise NotImplementedError

    def remove_beside_a_failed_scope(self, fake: Any) -> SourceObject | None:
        """Delete one object of a scope that stays readable and make another scope fail (until ``heal``).

        None: the connector declares no scopes (its snapshot is complete or not, as a whole).
        """
        return None

    def break_detail(self, fake: Any) -> tuple[SourceObject, str] | None:
        """Make one detail of one object unreadable (until ``heal``): the object and the field
        ("addresses", or a key as "attributes.kernel"). None: the connector reads no separate details.
        """
        return None

    @pytest.fixture
    def database_url(self, sqlite_url: str) -> str:
        return sqlite_url

    # -- the promises ------------------------------------------------------------------------------

    def test_a_renamed_object_is_the_same_row_updated(self, db: Database, fake: Any) -> None:
        connector = self.connector(fake)
        assert sync_source(db, connector).ok
        renamed, new_name = self.rename(fake)
        before = _live_row(db, renamed)

        outcome = sync_source(db, connector)

        assert outcome.ok and outcome.result is not None, outcome.error
        assert (outcome.result.created, outcome.result.removed) == (0, 0)
        assert outcome.result.updated >= 1
        after = _live_row(db, renamed)
        assert after is not None and before is not None
        assert (after.id, after.name) == (before.id, new_name)

    def test_a_resync_without_change_writes_nothing(self, db: Database, fake: Any) -> None:
        connector = self.connector(fake)
        first = sync_source(db, connector)
        assert first.ok and first.result is not None and first.result.created > 0, first.error

        again = sync_source(db, connector)

        assert again.ok and again.result is not None, again.error
        assert (again.result.created, again.result.updated, again.result.removed) == (0, 0, 0)

    def test_an_incomplete_answer_removes_nothing_and_a_complete_one_removes_what_is_gone(
        self, db: Database, fake: Any
    ) -> None:
        connector = self.connector(fake)
        assert sync_source(db, connector).ok
        gone = self.remove(fake)
        self.break_one(fake)

        incomplete = sync_source(db, connector)

        assert incomplete.status == self.incomplete_status, incomplete.error
        assert incomplete.result is None or incomplete.result.removed == 0
        assert _live_row(db, gone) is not None

        self.heal(fake)
        complete = sync_source(db, connector)

        assert complete.ok and complete.result is not None, complete.error
        assert complete.result.removed >= 1
        assert _live_row(db, gone) is None

    def test_a_complete_scope_removes_while_another_scope_failed(self, db: Database, fake: Any) -> None:
        connector = self.connector(fake)
        assert sync_source(db, connector).ok
        gone = self.remove_beside_a_failed_scope(fake)
        if gone is None:
            pytest.skip(f"the {connector.type_name} connector declares no scopes")

        outcome = sync_source(db, connector)

        assert outcome.status == "partial", outcome.error
        assert outcome.result is not None and outcome.result.removed >= 1
        assert _live_row(db, gone) is None

    def test_an_unread_detail_keeps_its_value_and_writes_no_change_row(self, db: Database, fake: Any) -> None:
        connector = self.connector(fake)
        assert sync_source(db, connector).ok
        broken = self.break_detail(fake)
        if broken is None:
            pytest.skip(f"the {connector.type_name} connector reads no separate details")
        obj, detail = broken
        before = _live_row(db, obj)
        assert before is not None and _detail(before, detail) not in (None, [], {}), f"{detail} of {obj} is empty"

        hiccup = sync_source(db, connector)
        during = _live_row(db, obj)
        self.heal(fake)
        recovered = sync_source(db, connector)
        after = _live_row(db, obj)

        assert hiccup.result is not None and recovered.result is not None, hiccup.error
        assert during is not None and after is not None
        assert _detail(during, detail) == _detail(before, detail)
        assert during.details_stale_since is not None and after.details_stale_since is None
        with db.session() as session:
            rows = session.scalars(
                select(Change).where(Change.object_id == before.id, Change.action == "updated")
            ).all()
        assert not [
            row.diff for row in rows if any(key == detail or key.startswith(f"{detail}.") for key in row.diff or {})
        ]

    def test_an_incomplete_snapshot_says_what_was_not_read(self, fake: Any) -> None:
        assert self.connector(fake).collect().complete
        self.break_one(fake)
        try:
            snapshot = self.connector(fake).collect()
        except SourceError as exc:  # a connector whose source is one unit fails it as a whole
            assert self.incomplete_status == "failed", f"{type(exc).__name__}: {exc}"
            return
        assert not snapshot.complete and snapshot.errors

    def test_no_secret_of_the_config_reaches_a_record_or_a_row(self, db: Database, fake: Any) -> None:
        connector = self.connector(fake)
        secrets = self.secrets(fake)
        secret_fields = [
            name for name, info in type(connector.config).model_fields.items() if _holds_secret(info.annotation)
        ]
        assert bool(secrets) == bool(secret_fields), (
            f"config fields holding secrets: {secret_fields}; secrets given: {len(secrets)}"
        )
        if not secrets:
            pytest.skip(f"the {connector.type_name} config has no secret field")

        snapshot = connector.collect()
        assert sync_source(db, connector).ok

        texts = [repr(dataclasses.asdict(record)) for record in _records(snapshot)]
        with db.session() as session:
            for model in ROW_MODELS.values():
                texts.extend(
                    repr({c.key: getattr(row, c.key) for c in model.__mapper__.column_attrs})
                    for row in session.scalars(select(model))
                )
        assert texts
        for secret in secrets:
            assert not [text for text in texts if secret in text]


def _records(snapshot: Snapshot) -> list[Any]:
    return [*snapshot.hosts, *snapshot.workloads, *snapshot.services]


def _holds_secret(annotation: Any) -> bool:
    return annotation is SecretStr or SecretStr in getattr(annotation, "__args__", ())


def _detail(row: Any, detail: str) -> Any:
    field, _, key = detail.partition(".")
    value = getattr(row, field)
    return value.get(key) if key else value


def _live_row(db: Database, obj: SourceObject) -> Any:
    model = ROW_MODELS[obj.object_type]
    with db.session() as session:
        query = select(model).where(
            model.kind == obj.kind, model.external_id == obj.external_id, model.removed_at.is_(None)
        )
        return session.scalars(query).one_or_none()
