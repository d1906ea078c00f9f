"""`facegate lockdown on|off|status`: site lockdown from the command line (registered in app/cli.py).

Run by whoever can reach the database: recorded in the audit chain with no key id (like the other
local commands), exactly as the API's PUT/DELETE /v1/lockdown record theirs.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from app.settings import get_settings

lockdown_cli = typer.Typer(no_args_is_help=True, help="Site lockdown: deny every door at once.")


def _as_dict(lockdown: Any) -> dict[str, Any]:
    return {
        "id": lockdown.id,
        "active": lockdown.active == 1,
        "mode": lockdown.mode,
        "allowed_group_ids": list(lockdown.allowed_group_ids),
        "note": lockdown.note,
        "started_at": lockdown.started_at.isoformat(),
        "started_by_key_id": lockdown.started_by_key_id,
        "lifted_at": lockdown.lifted_at.isoformat() if lockdown.lifted_at else None,
        "lifted_by_key_id": lockdown.lifted_by_key_id,
    }


@lockdown_cli.command("on")
def lockdown_on(
    group: Annotated[
        list[int] | None,
        typer.Option("--group", min=1, help="An access group still let in (repeat it); none: deny everyone."),
    ] = None,
    note: Annotated[str | None, typer.Option(help="Why, for the record.")] = None,
) -> None:
    """Put the site in lockdown: every door denies everyone (reason 'lockdown'), or everyone outside
    the --group groups. Replaces a lockdown already in force."""
    from sqlalchemy.exc import IntegrityError

    from app.audit.log import record_admin_action
    from app.cli import _checked_engine, _setup_logging
    from app.store import second_factor_queries as sfq
    from app.store.db import SchemaError, make_session_factory

    _setup_logging("WARNING")
    groups = sorted(set(group or []))
    mode = "all_but" if groups else "all"
    if note is not None and not 1 <= len(note) <= 500:
        typer.echo("error: --note takes 1 to 500 characters", err=True)
        raise typer.Exit(2)
    try:
        with _checked_engine(get_settings()) as engine, make_session_factory(engine)() as session:
            missing = sfq.missing_groups(session, groups)
            if missing:
                raise ValueError(f"no access group {', '.join(str(g) for g in missing)}")
            lockdown, previous = sfq.start_lockdown(
                session, mode=mode, allowed_group_ids=groups, note=note, key_id=None
            )
            if previous is not None:
                record_admin_action(
                    session, None, "lockdown.lift", {"lockdown_id": previous.id, "replaced": True}
                )
            target = {"lockdown_id": lockdown.id, "mode": mode, "allowed_group_ids": groups, "note": note}
            record_admin_action(session, None, "lockdown.start", target)
            session.commit()
            shown = _as_dict(lockdown)
    except (SchemaError, ValueError, IntegrityError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    who = "everyone" if mode == "all" else f"everyone outside groups {groups}"
    typer.echo(f"lockdown {shown['id']} in force: every door denies {who}", err=True)
    typer.echo(json.dumps(shown))


@lockdown_cli.command("off")
def lockdown_off() -> None:
    """Lift the lockdown in force (exit 1 when there is none)."""
    from app.audit.log import record_admin_action
    from app.cli import _checked_engine, _setup_logging
    from app.store import second_factor_queries as sfq
    from app.store.db import SchemaError, make_session_factory

    _setup_logging("WARNING")
    try:
        with _checked_engine(get_settings()) as engine, make_session_factory(engine)() as session:
            lifted = sfq.lift_lockdown(session, None)
            if lifted is not None:
                record_admin_action(session, None, "lockdown.lift", {"lockdown_id": lifted.id})
                session.commit()
                shown = _as_dict(lifted)
    except SchemaError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    if lifted is None:
        typer.echo("no lockdown is in force", err=True)
        raise typer.Exit(1)
    typer.echo(f"lockdown {shown['id']} lifted", err=True)
    typer.echo(json.dumps(shown))


@lockdown_cli.command("status")
def lockdown_status() -> None:
    """Print the lockdown in force as JSON ({"active": false} when none); exit 0 either way."""
    from app.cli import _checked_engine, _setup_logging
    from app.store import second_factor_queries as sfq
    from app.store.db import SchemaError, make_session_factory

    _setup_logging("WARNING")
    try:
        with _checked_engine(get_settings()) as engine, make_session_factory(engine)() as session:
            current = sfq.active_lockdown(session)
            shown = {"active": current is not None, "lockdown": _as_dict(current) if current else None}
    except SchemaError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    typer.echo(json.dumps(shown))
