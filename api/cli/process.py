"""Safety monitoring, process evaluation, the statistical analysis plan and unblinding."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    pass

from api.cli.core import _bad_parameter, _fail, _study_session, app

safety_app = typer.Typer(help="Safety monitoring: what needs attention, alerts for answers stored earlier.")
app.add_typer(safety_app, name="safety")


@safety_app.command("status")
def safety_status(study: int = typer.Argument(..., help="study id")) -> None:
    """Open and overdue alerts, overdue serious events, undelivered messages and set-up warnings;
    exits 1 when there is a warning (for a cron check)."""
    from api.auth.service import Actor
    from api.db import utcnow
    from api.safety.reports import status

    with _study_session(study) as run:
        out = status(run.session, run.study, Actor.system(), utcnow())
        run.session.rollback()  # a read
    for key, value in out.items():
        if key != "warnings":
            typer.echo(f"{key}: {value}")
    for w in out["warnings"]:
        typer.echo(f"warning: {w}")
    if out["warnings"]:
        raise typer.Exit(code=1)


@safety_app.command("backfill")
def safety_backfill(
    study: int = typer.Argument(..., help="study id"),
    dry_run: bool = typer.Option(False, "--dry-run", help="count the alerts, raise none"),
) -> None:
    """Raise alerts for stored answers that meet the rules in force now (answers stored before an
    upgrade or before a study rule was added); each alert is audited and its contacts are told."""
    from api.auth.service import Actor
    from api.safety.backfill import backfill

    with _study_session(study) as run:
        counts = backfill(run.session, run.study, Actor.system(source="system"))
        if dry_run:
            run.session.rollback()
        else:
            run.session.commit()
    verb = "would raise" if dry_run else "raised"
    typer.echo(f"{counts['responses']} responses checked; {verb} {counts['alerts']} alert(s)")


# --- delivery: forum-activity import and dose (same services as the API) ------------------------

delivery_app = typer.Typer(help="Process evaluation: forum-activity import, dose per participant.")
app.add_typer(delivery_app, name="delivery")


@delivery_app.command("import-forum")
def delivery_import_forum(
    study: int = typer.Argument(..., help="study id"),
    csv_path: str = typer.Argument(
        ..., metavar="CSV", help="study_code, week_start (a Monday), posts, replies, logins"
    ),
) -> None:
    """Import weekly forum activity (all or nothing; audited as one event)."""

    from api.auth.service import Actor
    from api.delivery.sessions import import_forum
    from api.errors import ApiError
    from api.inputguard import decode_upload

    with _study_session(study) as run:
        try:
            text = decode_upload(Path(csv_path).read_bytes(), ["body", "file"])
            out = import_forum(run.session, run.study, text, Actor.system(source="import"))
        except ApiError as exc:
            err = exc.errors[0]
            where = ", ".join(str(x) for x in err["loc"] if x != "body")
            _fail(f"{csv_path}: {where}: {err['msg']}" if where else f"{csv_path}: {err['msg']}")
        run.session.commit()
    typer.echo(f"{out.rows} rows: {out.created} new weeks, {out.updated} replaced")


@delivery_app.command("dose")
def delivery_dose(
    study: int = typer.Argument(..., help="study id"),
    by_wave: bool = typer.Option(False, "--by-wave", help="one row per participant and wave interval"),
) -> None:
    """Dose and adherence per participant as CSV on standard output (derived from the records)."""
    import csv
    import sys

    from api.delivery.dose import COLUMNS, participant_dose

    with _study_session(study) as run:
        rows = participant_dose(run.session, run.study.id, by_wave=by_wave)
        run.session.rollback()  # a read
    w = csv.DictWriter(sys.stdout, fieldnames=list(COLUMNS), lineterminator="\n")
    w.writeheader()
    w.writerows(rows)


# --- the statistical analysis plan and unblinding (same services as the API) -----------------------

sap_app = typer.Typer(help="The statistical analysis plan: draft, lock (hash recorded), show with deviations.")
app.add_typer(sap_app, name="sap")


def _plan_json(row) -> str:
    import json

    return json.dumps(
        {
            "version": row.version,
            "status": row.status,
            "content_hash": row.content_hash,
            "locked_at": row.locked_at.isoformat() if row.locked_at else None,
            "content": row.content,
        },
        indent=2,
        sort_keys=True,
    )


@sap_app.command("draft")
def sap_draft(
    study: int = typer.Argument(..., help="study id"),
    file: str = typer.Argument(..., help="the plan as JSON (the body of POST /studies/{id}/analysis-plans)"),
    version: int | None = typer.Option(None, help="replace this draft version instead of drafting a new one"),
) -> None:
    """Draft a new version of the plan, or replace a draft (``--version``)."""
    import json

    from pydantic import ValidationError

    from api.auth.service import Actor
    from api.errors import ApiError
    from api.sap import service
    from api.sap.schemas import PlanContent

    try:
        content = PlanContent.model_validate(json.loads(Path(file).read_text(encoding="utf-8")))
    except (OSError, ValueError) as exc:
        if isinstance(exc, ValidationError):
            e = exc.errors()[0]
            raise typer.BadParameter(f"{'.'.join(map(str, e['loc']))}: {e['msg']}", param_hint="FILE") from None
        raise typer.BadParameter(f"cannot read the plan: {exc}", param_hint="FILE") from None
    with _study_session(study) as run:
        actor = Actor.system(source="system")
        try:
            if version is None:
                row = service.create_draft(run.session, run.study, content, actor)
            else:
                row = service.update_draft(run.session, run.study, version, content, actor)
        except ApiError as exc:
            raise _bad_parameter(exc, {"version": "--version"}) from None
        out = _plan_json(row)
        run.session.commit()
    typer.echo(out)


@sap_app.command("lock")
def sap_lock(
    study: int = typer.Argument(..., help="study id"),
    version: int | None = typer.Option(None, help="the draft to lock (default: the open draft)"),
    confirm_hash: str | None = typer.Option(None, "--hash", help="refuse unless the draft still hashes to this"),
) -> None:
    """Lock a draft: its SHA-256 is recorded (and printed) and it can no longer change."""
    from api.auth.service import Actor
    from api.errors import ApiError
    from api.sap import service

    with _study_session(study) as run:
        if version is None:
            drafts = [p.version for p in service.list_plans(run.session, run.study) if p.status == "draft"]
            if not drafts:
                _fail("the study has no draft analysis plan to lock (peerlens sap draft STUDY FILE)")
            version = drafts[-1]
        try:
            row = service.lock(run.session, run.study, version, Actor.system(source="system"), confirm_hash)
        except ApiError as exc:
            raise _bad_parameter(exc, {"version": "--version", "confirm_hash": "--hash"}) from None
        digest, locked_at = row.content_hash, row.locked_at
        run.session.commit()
    typer.echo(f"analysis plan version {version} locked at {locked_at.isoformat() if locked_at else ''}")
    typer.echo(f"sha256 {digest}")


@sap_app.command("show")
def sap_show(
    study: int = typer.Argument(..., help="study id"),
    version: int | None = typer.Option(None, help="a version (default: the locked plan, else the latest)"),
) -> None:
    """Print a version of the plan with its hash, and its deviations from the locked plan."""
    from api.errors import ApiError
    from api.sap import blinding, service

    with _study_session(study) as run:
        plans = service.list_plans(run.session, run.study)
        if not plans:
            _fail("the study has no analysis plan yet (peerlens sap draft STUDY FILE)")
        locked = service.current_plan(run.session, run.study.id)
        chosen = version or (locked.version if locked else plans[-1].version)
        try:
            row = service.get_plan(run.session, run.study, chosen)
            devs = service.version_deviations(run.session, run.study, chosen)
        except ApiError as exc:
            raise _bad_parameter(exc, {"version": "--version"}) from None
        text = _plan_json(row)
        versions = ", ".join(f"{p.version} ({p.status})" for p in plans)
        unblinded = blinding.unblinding(run.session, run.study.id)
        when = unblinded.unblinded_at.isoformat() if unblinded else None
        run.session.rollback()  # a read
    typer.echo(text)
    typer.echo(f"versions: {versions}")
    typer.echo(f"locked plan: version {locked.version}, sha256 {locked.hash}" if locked else "locked plan: none")
    for d in devs["deviations"]:
        typer.echo(f"deviation: {d['field']}: planned {d['planned']!r}, now {d['actual']!r}")
    typer.echo(f"unblinded at {when}" if when else "blinded: analysts read arms as A, B, C…")


@app.command("unblind")
def unblind(
    study: int = typer.Argument(..., help="study id"),
    reason: str = typer.Option(..., help="why the study is unblinded now (recorded in the audit trail)"),
    yes: bool = typer.Option(False, "--yes", help="confirm: unblinding cannot be undone"),
) -> None:
    """Unblind the study: analysts see the real arms from now on (audited, irreversible)."""
    from api.auth.service import Actor
    from api.errors import ApiError
    from api.sap import blinding
    from api.studies.models import Arm
    from api.studies.service import list_children

    if not yes:
        _fail("unblinding cannot be undone; add --yes to confirm")
    if not reason.strip() or "\n" in reason or "\r" in reason:
        raise typer.BadParameter("a reason on one line is required", param_hint="--reason")
    with _study_session(study) as run:
        try:
            row = blinding.unblind(run.session, run.study, Actor.system(source="system"), reason.strip())
        except ApiError as exc:
            raise _bad_parameter(exc) from None
        at = row.unblinded_at
        key = blinding.neutral_labels(run.session, run.study.id)
        codes = {a.id: a.code for a in list_children(run.session, Arm, run.study, Actor.system())}
        run.session.commit()
    typer.echo(f"study {study} unblinded at {at.isoformat()}")
    for arm_id, label in sorted(key.items(), key=lambda kv: kv[1]):
        typer.echo(f"{label} = {codes.get(arm_id)}")
