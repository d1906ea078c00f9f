"""Reviewer labels on access events (table ``event_labels``, migration 0011).

A reviewer (auditor or admin key) says what really happened at the door: the decision was
``correct``; the face was another enrolled person (``wrong_person``, naming them); a ``stranger``
(nobody enrolled); or a ``spoof``. One label per event; a later review replaces it. The caller
records the change as an admin action in the same transaction (``app.audit.log``).

The export joins each label with its event: ids, door, decision and the people involved; never a
face, a template or a photo.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, TextIO

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.store.models import (
    LABEL_KINDS,
    AccessEvent,
    EnrolmentPhoto,
    EventLabel,
    EventSnapshot,
    Person,
    utcnow,
)

# Rows fetched per round trip by the export.
_BATCH = 1000

ExportFormat = Literal["jsonl", "csv"]


def check_label(label: str, true_person_id: int | None) -> None:
    """Raise ValueError unless the pair is consistent: ``wrong_person`` names the right person,
    every other label names none (``stranger`` is the label for "nobody enrolled")."""
    if label not in LABEL_KINDS:
        raise ValueError(f"label must be one of {', '.join(LABEL_KINDS)}, got {label!r}")
    if label == "wrong_person" and true_person_id is None:
        raise ValueError(
            "a wrong_person label names the right person (true_person_id); use stranger for nobody"
        )
    if label != "wrong_person" and true_person_id is not None:
        raise ValueError(f"true_person_id is only for wrong_person labels, not {label}")


def get_label(session: Session, event_id: int) -> EventLabel | None:
    return session.scalars(select(EventLabel).where(EventLabel.event_id == event_id)).one_or_none()


def set_label(
    session: Session, event_id: int, label: str, true_person_id: int | None, reviewer_key_id: int | None
) -> tuple[EventLabel, bool]:
    """Create or replace the event's label (flushed, not committed); returns (label, created).

    Two reviewers labelling one event at once: the unique ``event_id`` lets one insert win; the
    other's insert fails and becomes an update of the winner's row (last writer wins)."""
    check_label(label, true_person_id)
    row = get_label(session, event_id)
    created = row is None
    now = utcnow()
    if row is None:
        row = EventLabel(
            event_id=event_id,
            label=label,
            true_person_id=true_person_id,
            reviewer_key_id=reviewer_key_id,
            created_at=now,
            updated_at=now,
        )
        try:
            with session.begin_nested():
                session.add(row)
        except IntegrityError:
            existing = get_label(session, event_id)
            if existing is None:  # not the unique constraint: the event itself is gone
                raise
            row, created = existing, False
    if not created:
        row.label = label
        row.true_person_id = true_person_id
        row.reviewer_key_id = reviewer_key_id
        row.updated_at = now
    session.flush()
    return row, created


@dataclass(frozen=True)
class LabelledEvent:
    """One export row: the event's decision beside the reviewer's verdict."""

    event_id: int
    event_time: datetime
    door_id: int
    decision: str
    reason: str
    predicted_person_id: int | None
    label: str
    true_person_id: int | None  # who really stood there: None for strangers and spoofs
    reviewer_key_id: int | None
    labelled_at: datetime
    model_version: str

    @staticmethod
    def columns() -> Sequence[str]:
        return tuple(LabelledEvent.__dataclass_fields__)


def true_person(label: str, predicted: int | None, named: int | None) -> int | None:
    """The person who really stood at the door, as the label says: the predicted person for a
    correct decision (None when a stranger was rightly denied), the named one for wrong_person."""
    if label == "correct":
        return predicted
    if label == "wrong_person":
        return named
    return None


def iter_labelled_events(session: Session, since_event_id: int = 0) -> Iterator[LabelledEvent]:
    """Every labelled event in event id order, read in batches (keyset on the event id)."""
    last = since_event_id
    while True:
        rows = session.execute(
            select(AccessEvent, EventLabel)
            .join(EventLabel, EventLabel.event_id == AccessEvent.id)
            .where(AccessEvent.id > last)
            .order_by(AccessEvent.id)
            .limit(_BATCH)
        ).all()
        for event, label in rows:
            yield LabelledEvent(
                event_id=event.id,
                event_time=event.created_at,
                door_id=event.door_id,
                decision=event.decision,
                reason=event.reason,
                predicted_person_id=event.person_id,
                label=label.label,
                true_person_id=true_person(label.label, event.person_id, label.true_person_id),
                reviewer_key_id=label.reviewer_key_id,
                labelled_at=label.updated_at,
                model_version=event.model_version,
            )
        if len(rows) < _BATCH:
            return
        last = rows[-1][0].id


def _cell(value: object) -> object:
    if value is None:
        return ""
    return value.isoformat() if isinstance(value, datetime) else value


def write_labels(rows: Iterator[LabelledEvent], out: TextIO, fmt: ExportFormat) -> int:
    """Write the rows as JSON lines or CSV (header first); returns how many were written."""
    columns = LabelledEvent.columns()
    writer = csv.writer(out) if fmt == "csv" else None
    if writer is not None:
        writer.writerow(columns)
    count = 0
    for row in rows:
        values = {name: getattr(row, name) for name in columns}
        if writer is not None:
            writer.writerow([_cell(values[name]) for name in columns])
        else:
            out.write(json.dumps({k: _cell(v) if isinstance(v, datetime) else v for k, v in values.items()}))
            out.write("\n")
        count += 1
    return count


@dataclass(frozen=True)
class TrainingFace:
    """One face picture of a known person, for training: a kept enrolment photo, or the face crop
    of an event whose label says who it was (correct with a person, or wrong_person)."""

    person_id: int
    source: Literal["enrolment", "event"]
    source_id: int  # the enrolment photo's id or the event's id
    jpeg: bytes


def iter_training_faces(session: Session) -> Iterator[TrainingFace]:
    """Every kept enrolment photo of a current person, then every labelled event's face crop
    (snapshot) whose true person is known and still enrolled. Stranger and spoof labels give no
    identity and are left out. Reads one row at a time (pictures can be large)."""
    people = set(session.scalars(select(Person.id)))
    for photo in session.scalars(select(EnrolmentPhoto).order_by(EnrolmentPhoto.id)).yield_per(64):
        yield TrainingFace(photo.person_id, "enrolment", photo.id, photo.image)
    rows = session.execute(
        select(
            AccessEvent.id,
            AccessEvent.person_id,
            EventLabel.label,
            EventLabel.true_person_id,
            EventSnapshot.face_jpeg,
        )
        .join(EventLabel, EventLabel.event_id == AccessEvent.id)
        .join(EventSnapshot, EventSnapshot.event_id == AccessEvent.id)
        .where(EventLabel.label.in_(("correct", "wrong_person")))
        .order_by(AccessEvent.id)
        .execution_options(yield_per=64)
    )
    for event_id, predicted, label, named, jpeg in rows:
        who = true_person(label, predicted, named)
        if who is not None and who in people:
            yield TrainingFace(who, "event", event_id, jpeg)


def event_snapshot(session: Session, event_id: int) -> bytes | None:
    """The event's face crop (JPEG), None when it has none (or it was purged)."""
    return session.scalars(select(EventSnapshot.face_jpeg).where(EventSnapshot.event_id == event_id)).first()
