"""Study data in and out: exports (cohort shapes, REDCap, CDISC ODM), date checks, REDCap imports and
licensed content."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    pass

from api.cli.core import _admin_change, _bad_parameter, _engine, _fail, _study_session, app

#: Export shapes beside the cohort shapes: the REDCap records file and the CDISC ODM 1.3.2 file.
OTHER_SHAPES = ("redcap", "odm")


@app.command("export")
def export_cmd(
    study: int = typer.Argument(..., help="study id"),
    shape: str = typer.Option(
        "long",
        "--shape",
        help="long | wide | items | safety | delivery shapes | fidelity | adaptations | redcap | odm (CDISC ODM 1.3.2)",
    ),
    fmt: str = typer.Option("csv", "--format", help="csv | json | parquet | dta | sav"),
    output: str = typer.Option(..., "-o", "--output", help="file to write"),
    waves: str | None = typer.Option(None, help="comma-separated wave codes"),
    instruments: str | None = typer.Option(None, help="comma-separated instrument codes"),
    sites: str | None = typer.Option(None, help="comma-separated site codes"),
    items: bool = typer.Option(False, "--items", help="wide: a column per item"),
    identified: bool = typer.Option(
        False, "--identified", help="staff export with identifiers (default: analyst view)"
    ),
    dictionary: bool = typer.Option(True, "--dictionary/--no-dictionary", help="also write FILE.dictionary.json"),
    keep_formulas: bool = typer.Option(
        False, "--keep-formulas", help="CSV: write cells starting with = + - @ verbatim (default: prefix ')"
    ),
    url: str | None = typer.Option(
        None,
        "--url",
        help="export from a running server (e.g. http://host:8000) as the --token user, verified against the "
        "export's receipt (bytes, SHA-256, complete) before the file is kept",
    ),
    token: str | None = typer.Option(None, "--token", envvar="PEERLENS_TOKEN", help="bearer token for --url"),
) -> None:
    """Export a study's cohort (same service as the API, no HTTP), with a progress bar.

    Without --identified the file is exactly what an analyst receives (de-identified). With --url
    the export is downloaded over HTTP and kept only if it matches the server's receipt. Either way
    the file appears under its name only once complete (it is written to FILE.part first).
    """
    import json as _json

    if url is not None:
        _export_over_http(url, token, study, shape, fmt, output, waves, instruments, sites, items, keep_formulas)
        return

    from sqlmodel import Session
    from tqdm import tqdm

    from api.auth.service import Actor
    from api.errors import ApiError
    from api.exports import service, writers
    from api.interop.redcap_export import csv_chunks

    if shape not in service.SHAPES + OTHER_SHAPES:
        raise typer.BadParameter(f"must be one of {', '.join(service.SHAPES + OTHER_SHAPES)}", param_hint="--shape")
    if shape == "odm":
        fmt = "xml"  # the one serialisation ODM has
    elif fmt not in writers.FORMATS:
        raise typer.BadParameter(f"must be one of {', '.join(writers.FORMATS)}", param_hint="--format")
    # The command runs as the system; --identified keeps staff rights, otherwise the analyst view.
    actor = Actor(user_id=None, role="system" if identified else "analyst", source="system")
    filters = service.ExportFilters(
        waves=[waves] if waves else None,
        instruments=[instruments] if instruments else None,
        sites=[sites] if sites else None,
        identifiers=identified,
        items=items,
        escape_formulas=not keep_formulas,
    )
    with _study_session(study) as run:
        session = run.session
        try:
            plan = service.plan_export(session, run.study, actor, filters, secret=run.settings.secret_key)
        except ApiError as exc:
            raise _bad_parameter(exc) from None
        bar = tqdm(total=service.participants_in(session, plan), unit="participant", desc=f"export {shape}")
        complete = False
        part = output + ".part"
        try:
            with open(part, "wb") as fh:
                if shape == "odm":
                    from api.interop import odm

                    for chunk in odm.chunks(session, plan):
                        fh.write(chunk)
                    bar.update(plan.rows)
                elif shape == "redcap":
                    for chunk in csv_chunks(
                        session, plan, progress=lambda batch: bar.update(len({r[0] for r in batch}))
                    ):
                        fh.write(chunk)
                else:

                    def counted():
                        for df in service.iter_shape(session, plan, shape):
                            bar.update(int(df["participant"].nunique()) if len(df) else 0)
                            yield df

                    cols = service.columns(plan, shape)
                    dd = service.dictionary(plan, shape)
                    for chunk in writers.write(fmt, counted(), cols, dd, escape_formulas=not keep_formulas):
                        fh.write(chunk)
                    if dictionary:
                        with open(output + ".dictionary.json", "w", encoding="utf-8") as dfh:
                            _json.dump(dd, dfh, ensure_ascii=False, indent=1, default=str)
            os.replace(part, output)
            complete = True
        finally:
            bar.close()
            if not complete and os.path.exists(part):
                os.remove(part)
            with Session(run.engine) as audit_session:
                service.audit_export(
                    audit_session, plan, shape=shape, fmt="csv" if shape == "redcap" else fmt, complete=complete
                )  # (odm: fmt is "xml")
                audit_session.commit()
    typer.echo(f"{plan.rows} rows written to {output}")


def _export_over_http(url, token, study, shape, fmt, output, waves, instruments, sites, items, keep_formulas):
    from urllib.parse import urlencode

    from api.exports.download import IncompleteExport, download

    params = {"format": fmt, "waves": waves, "instruments": instruments, "sites": sites}
    if items:
        params["items"] = "true"
    if keep_formulas:
        params["escape_formulas"] = "false"
    path = f"/studies/{study}/exports/{shape}"  # redcap and odm have routes of their own, without a format
    query = urlencode(
        {k: v for k, v in params.items() if v is not None and not (shape in OTHER_SHAPES and k == "format")}
    )
    try:
        got = download(f"{url.rstrip('/')}{path}?{query}", output, token)
    except IncompleteExport as exc:
        _fail(f"export not saved: {exc}")
    typer.echo(f"{got.rows} rows, {got.bytes} bytes (sha256 {got.sha256}) verified and written to {output}")


@app.command("check-dates")
def check_dates_cmd(study: int = typer.Argument(..., help="study id")) -> None:
    """List dates stored in a study that the date policy would refuse today (e.g. entered before
    it existed): participant, field, value and rule. Exit status 1 when there are any."""
    from api.studies import dates

    with _study_session(study) as run:
        found = dates.stored_problems(run.session, run.study)
        run.session.rollback()
    for f in found:
        typer.echo(f"{f['participant']}\t{f['field']}\t{f['value']}\t{f['type']}")
    if found:
        _fail(f"{len(found)} implausible date(s) in study {study}; correct them (the audit trail keeps the old value)")
    typer.echo(f"study {study}: every stored date is in the plausible range")


@app.command("import-redcap")
def import_redcap_cmd(
    study: int = typer.Argument(..., help="study id"),
    records: str = typer.Option(..., "--records", help="REDCap flat records export (CSV)"),
    dictionary: str | None = typer.Option(None, "--dictionary", help="REDCap data dictionary"),
    event: list[str] = typer.Option(..., "--event", help="EVENT=WAVE, e.g. baseline_arm_1=baseline; *=WAVE for all"),
    site: str | None = typer.Option(None, "--site", help="site of new records without a DAG"),
    dry_run: bool = typer.Option(False, "--dry-run", help="validate and report only"),
) -> None:
    """Import REDCap data into a study (one transaction; prints the JSON report)."""
    import json as _json
    from pathlib import Path

    from api.auth.service import Actor
    from api.interop.service import import_redcap

    mapping = {}
    for pair in event:
        ev, sep, wave = pair.partition("=")
        if not sep or not wave:
            raise typer.BadParameter("expected EVENT=WAVE", param_hint="--event")
        mapping[ev] = wave
    with _study_session(study) as run:
        report = import_redcap(
            run.session,
            run.study,
            Actor.system(source="import"),
            records_csv=Path(records).read_bytes(),
            event_map=mapping,
            dictionary_csv=Path(dictionary).read_bytes() if dictionary else None,
            dry_run=dry_run,
            default_site=site,
        )
        if report.committed:
            run.session.commit()
    typer.echo(_json.dumps(report.as_dict(), indent=1))
    if not report.ok:
        raise typer.Exit(code=1)


# --- safety: status and backfill (same services as the API) ---------------------------------------

licensed_app = typer.Typer(
    help="Licensed instrument content: the licensee's item wording (PAM-13, HLS-EU) and PAM-13's calibration table."
)
app.add_typer(licensed_app, name="licensed")


def _licensed_upload(kind: str, instrument: str, path: Path, scale: str | None) -> None:
    from api.auth.service import Actor
    from api.errors import ApiError
    from api.licensed.service import upload

    try:
        data = path.read_bytes()
    except OSError as exc:
        _fail(f"cannot read {path}: {exc.strerror}")

    def change(session):
        try:
            row = upload(session, instrument, kind, data, Actor.system(), scale=scale)
        except ApiError as exc:
            raise ValueError(exc.errors[0]["msg"]) from None
        return f"stored {kind} of {instrument} ({row.rows} rows, sha256 {row.sha256[:12]}…) as upload {row.id}"

    _admin_change(change)


@licensed_app.command("wording")
def licensed_wording(
    instrument: str = typer.Argument(..., help="instrument code: pam13, hls_eu_q16, hls_eu_q6"),
    path: Path = typer.Argument(..., help="CSV with the columns item_code,text (UTF-8)"),
) -> None:
    """Store and apply the licensee's item wording: the participant form shows it from then on."""
    _licensed_upload("wording", instrument, path, None)


@licensed_app.command("calibration")
def licensed_calibration(
    instrument: str = typer.Argument(..., help="instrument code, e.g. pam13"),
    path: Path = typer.Argument(..., help="CSV with a raw-score column and an activation-score column"),
    scale: str | None = typer.Option(None, "--scale", help="the lookup scale, when there are several"),
) -> None:
    """Store and apply the licensee's raw-to-score table: scoring yields the activation score from then on."""
    _licensed_upload("calibration", instrument, path, scale)


@licensed_app.command("list")
def licensed_list() -> None:
    """Uploaded licensed content (the newest of each instrument and kind applies)."""
    from sqlmodel import Session

    from api.auth.service import Actor
    from api.licensed.service import list_content

    engine = _engine()
    try:
        with Session(engine) as session:
            rows = list_content(session, Actor.system())
    finally:
        engine.dispose()
    for r in rows:
        typer.echo(f"{r.id:>4}  {r.instrument:<12} {r.kind:<12} {r.scale or '-':<18} {r.rows:>5} rows  {r.sha256[:12]}")
