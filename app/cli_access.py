"""`facegate access ...`: access groups, grants, schedules, holidays and people's validity from the
command line, on the database directly (each change is an audit record with no key: the local CLI,
run by whoever can reach the database). The same rules as the API (app/services/access.py)."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date, datetime
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

from app.settings import get_settings

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

access_cli = typer.Typer(
    no_args_is_help=True,
    help="Access rules: groups of people, their grants at doors, weekly schedules, holidays, validity.",
)
groups_cli = typer.Typer(no_args_is_help=True, help="Access groups, their members and their grants at doors.")
schedules_cli = typer.Typer(no_args_is_help=True, help="Weekly schedules in the site's time zone.")
holidays_cli = typer.Typer(no_args_is_help=True, help="Holidays: scheduled grants are closed on them.")
people_cli = typer.Typer(no_args_is_help=True, help="People's validity periods.")
access_cli.add_typer(groups_cli, name="groups")
access_cli.add_typer(schedules_cli, name="schedules")
access_cli.add_typer(holidays_cli, name="holidays")
access_cli.add_typer(people_cli, name="people")

T = TypeVar("T")


@contextmanager
def _session() -> Iterator[Session]:
    from app.store.db import check_schema, make_engine, make_session_factory

    logging.basicConfig(level="WARNING", stream=sys.stderr)
    engine = make_engine(get_settings().db_url)
    try:
        check_schema(engine)
        with make_session_factory(engine)() as session:
            yield session
    finally:
        engine.dispose()


def _change(action: Callable[[Session], T]) -> T:
    """Run one change and commit it with its audit record; a refusal exits 1 with its code, a bad
    database (not migrated) exits 2."""
    from app.services.access import AccessPolicyError
    from app.store.db import SchemaError

    try:
        with _session() as session:
            result = action(session)
            session.commit()
            return result
    except AccessPolicyError as exc:
        typer.echo(f"error: {exc.code}: {exc.message}", err=True)
        raise typer.Exit(1) from exc
    except SchemaError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc


@groups_cli.command("create")
def groups_create(name: Annotated[str, typer.Option(help="The group's name, e.g. 'Engineering'.")]) -> None:
    """Create an access group; prints its id."""
    from app.services import access

    group = _change(lambda s: access.create_group(s, None, name))
    typer.echo(f"created access group {group.id} ({name})")


@groups_cli.command("add-member")
def groups_add_member(
    group: Annotated[int, typer.Option("--group", help="The group's id.")],
    person: Annotated[int, typer.Option("--person", help="The person's id.")],
) -> None:
    """Add a person to a group (nothing changes when they already are a member)."""
    from app.services import access

    added = _change(lambda s: access.add_member(s, None, group, person))
    typer.echo(f"person {person} {'added to' if added else 'already in'} access group {group}")


@groups_cli.command("grant")
def groups_grant(
    group: Annotated[int, typer.Option("--group", help="The group's id.")],
    door: Annotated[int, typer.Option("--door", help="The door's id.")],
    schedule: Annotated[
        int | None, typer.Option("--schedule", help="Only within this schedule's windows (default: always).")
    ] = None,
) -> None:
    """Let a group's members pass a door. A door's first grant closes it to everyone else."""
    from app.services import access

    grant = _change(lambda s: access.create_grant(s, None, group, door, schedule))
    when = f"within schedule {schedule}" if schedule is not None else "at any time"
    typer.echo(f"created grant {grant.id}: access group {group} at door {door} {when}")


@schedules_cli.command("create")
def schedules_create(
    name: Annotated[str, typer.Option(help="The schedule's name, e.g. 'Office hours'.")],
    window: Annotated[
        list[str],
        typer.Option(
            "--window",
            help="DAYS HH:MM-HH:MM in site-local time, e.g. 'mon-fri 08:00-18:00' or 'fri 22:00-06:00' "
            "(an end at or before the start runs past midnight); repeat for more windows.",
        ),
    ],
    holidays: Annotated[
        bool, typer.Option("--holidays/--no-holidays", help="Also open on holidays (default: closed).")
    ] = False,
) -> None:
    """Create a weekly schedule; prints its id."""
    from app.access.schedule import parse_window
    from app.services import access

    try:
        windows = [parse_window(w) for w in window]
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    row = _change(lambda s: access.create_schedule(s, None, name, holidays, windows))
    typer.echo(
        f"created schedule {row.id} ({name}): {'; '.join(access.describe_window(w) for w in row.windows)}"
    )


@holidays_cli.command("add")
def holidays_add(
    day: Annotated[str, typer.Option("--date", help="The site-local date, YYYY-MM-DD.")],
    name: Annotated[str, typer.Option(help="e.g. 'Christmas Day'.")],
) -> None:
    """Add a holiday: scheduled grants are closed all day unless their schedule applies on holidays."""
    from app.services import access

    try:
        when = date.fromisoformat(day)
    except ValueError as exc:
        typer.echo(f"error: --date {day!r} is not YYYY-MM-DD", err=True)
        raise typer.Exit(2) from exc
    holiday = _change(lambda s: access.add_holiday(s, None, when, name))
    typer.echo(f"created holiday {holiday.id}: {when.isoformat()} ({name})")


def _when(option: str, text: str | None) -> datetime | None:
    if text is None or text.lower() == "none":
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError as exc:
        typer.echo(f"error: {option} {text!r} is not ISO 8601 (e.g. 2026-12-24T18:00:00+01:00)", err=True)
        raise typer.Exit(2) from exc
    if value.utcoffset() is None:
        typer.echo(f"error: {option} {text!r} needs a time zone (e.g. Z or +01:00)", err=True)
        raise typer.Exit(2)
    return value


@people_cli.command("validity")
def people_validity(
    person: Annotated[int, typer.Option("--person", help="The person's id.")],
    valid_from: Annotated[
        str | None, typer.Option("--from", help="ISO 8601 with a time zone; left out or 'none': no bound.")
    ] = None,
    valid_until: Annotated[
        str | None,
        typer.Option("--until", help="ISO 8601 with a time zone (exclusive); left out or 'none': no bound."),
    ] = None,
) -> None:
    """Set when a person may enter at all (both bounds at once): visitors, contractors."""
    from app.services import access

    start, end = _when("--from", valid_from), _when("--until", valid_until)
    _change(lambda s: access.set_validity(s, None, person, start, end))
    shown = [v.isoformat() if v is not None else "unbounded" for v in (start, end)]
    typer.echo(f"person {person} valid from {shown[0]} until {shown[1]}")
