"""Analyses and reports from the command line: joint displays, transcripts, analyses, the realist
table and the trial report."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    pass

from api.cli.core import _bad_parameter, _study_session, app


@app.command("joint-display")
def joint_display_cmd(
    study: int = typer.Argument(..., help="study id"),
    theme: list[str] = typer.Option(..., "--theme", help="code key or id; repeatable"),
    output: str = typer.Option(..., "-o", "--output", help="directory to write into"),
    scale: list[str] | None = typer.Option(None, "--scale", help="outcome scale; repeatable"),
    baseline: str | None = typer.Option(None, help="baseline wave (default: first observation)"),
    followup: str | None = typer.Option(None, help="follow-up wave (default: last observation)"),
    arm: str | None = typer.Option(None, help="restrict to one arm"),
    quotes: int = typer.Option(2, min=0, max=10, help="exemplar quotes per row"),
    plot_format: str = typer.Option("svg", "--plot-format", help="svg | png"),
) -> None:
    """Themes against outcome change: writes joint-display.csv, .json and a plot into OUTPUT.

    Runs with the analyst's view (de-identified outcomes and quotes).
    """
    import json as _json

    import qualitative
    from api.audit.service import record
    from api.auth.service import Actor
    from api.errors import ApiError
    from api.jsonable import records
    from api.transcripts.analysis import joint_table
    from api.transcripts.schemas import JointDisplayRequest

    if plot_format not in ("svg", "png"):
        raise typer.BadParameter("must be svg or png", param_hint="--plot-format")
    actor = Actor(user_id=None, role="analyst", source="system")
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    body = JointDisplayRequest(
        themes=theme,
        scales=scale or None,
        baseline=baseline,
        followup=followup,
        arm=arm,
        quotes=quotes,
        plot_format=plot_format,
    )
    with _study_session(study) as run:
        try:
            table, themes = joint_table(run.session, run.study, actor, body, run.settings)
        except ApiError as exc:
            raise _bad_parameter(exc) from None
        flat = table.assign(quotes=table["quotes"].map(lambda qs: " | ".join(qs)))
        flat.to_csv(out / "joint-display.csv", index=False)
        (out / "joint-display.json").write_text(_json.dumps(records(table), indent=2))
        qualitative.plot_joint_display(table, out / f"joint-display.{plot_format}")
        record(
            run.session,
            Actor.system(),
            "create",
            "joint_display",
            "cli",
            study_id=run.study.id,
            after={"themes": themes, "scales": scale or None, "rows": len(table)},
        )
        run.session.commit()
    typer.echo(f"{len(table)} row(s): {out / 'joint-display.csv'}, {out / f'joint-display.{plot_format}'}")


@app.command("import-transcript")
def import_transcript_cmd(
    study: int = typer.Argument(..., help="study id"),
    path: str = typer.Argument(..., help=".txt, .md, .vtt, .srt or .docx"),
    participant: list[str] = typer.Option(..., "--participant", help="study code; repeat for a focus group"),
    wave: str | None = typer.Option(None, help="wave code"),
    kind: str | None = typer.Option(None, help="interview | focus_group"),
    speaker_map: str | None = typer.Option(None, "--speaker-map", help='JSON {"label": "study code"}'),
) -> None:
    """Import a transcript file: de-identified with the participants' vault identifiers, then stored.

    Prints the transcript id, whether statistical NER ran, and counts of replaced identifiers.
    """

    from api.auth.service import Actor
    from api.errors import ApiError
    from api.transcripts import service

    if kind not in (None, "interview", "focus_group"):
        raise typer.BadParameter("must be interview or focus_group", param_hint="--kind")
    file = Path(path)
    if not file.is_file():
        raise typer.BadParameter("no such file", param_hint="PATH")
    with _study_session(study) as run:
        try:
            row, _ = service.upload_transcript(
                run.session,
                run.study,
                Actor.system(source="import"),
                data=file.read_bytes(),
                filename=file.name,
                participants=participant,
                wave=wave,
                kind=kind,
                fmt=None,
                title=None,
                interviewer_labels=None,
                speaker_map=service.parse_speaker_map(speaker_map),
                settings=run.settings,
            )
        except ApiError as exc:
            raise _bad_parameter(exc) from None
        run.session.commit()
    counts = ", ".join(f"{k} {v}" for k, v in row.replacement_counts.items()) or "none"
    typer.echo(f"transcript {row.id}: {len(row.turns)} turns, NER {row.ner}, replaced: {counts}")


# --- end qualitative


@app.command()
def analyze(
    study: int = typer.Argument(..., help="study id"),
    outdir: str | None = typer.Option(
        None, "--outdir", help="folder to write (default: PEERLENS_ARTIFACT_DIR/analyses/STUDY/<run id>)"
    ),
    outcome: list[str] | None = typer.Option(
        None,
        "--outcome",
        help="scale to model, e.g. pam13_activation; repeatable (default: the standard scales the study collects)",
    ),
    mcid: list[str] | None = typer.Option(
        None, "--mcid", help="SCALE=VALUE minimal important difference for a scale without a published one; repeatable"
    ),
    fmt: str = typer.Option("png", "--format", help="plot files: png | svg"),
    followup: str | None = typer.Option(
        None, "--followup", help="wave of the primary analysis, change and responders (default: the last wave)"
    ),
    imputations: int = typer.Option(20, "--imputations", help="imputations of the missing-data analysis (2-100)"),
) -> None:
    """Run the standard analyses on a study's current export (de-identified, as an analyst sees it) and
    write CSV tables, plots and report.md to a folder (same service as the API, no HTTP)."""

    from api.analyses.service import write_report
    from api.artifacts import ArtifactStore
    from api.auth.service import Actor
    from api.errors import ApiError

    if fmt not in ("png", "svg"):
        raise typer.BadParameter("must be png or svg", param_hint="--format")
    actor = Actor(user_id=None, role="analyst", source="system")
    with _study_session(study) as run:
        folder = Path(outdir) if outdir else ArtifactStore.from_settings(run.settings).new_run("analyses", study).folder
        try:
            written = write_report(
                run.session,
                run.study,
                actor,
                folder,
                outcomes=outcome,
                mcids=mcid,
                fmt=fmt,
                secret=run.settings.secret_key,
                followup=followup,
                imputations=imputations,
            )
        except ApiError as exc:
            hints = {"outcome": "--outcome", "mcid": "--mcid", "followup": "--followup", "imputations": "--imputations"}
            raise _bad_parameter(exc, hints) from None
        run.session.commit()
    tables = sum(1 for k in written if k.startswith("table:"))
    plots = sum(1 for k in written if k.startswith("plot:"))
    typer.echo(f"{tables} tables, {plots} plots and report.md written to {folder.resolve()}")


@app.command("realist-table")
def realist_table_cmd(
    study: int = typer.Argument(..., help="study id"),
    output: str = typer.Option(..., "-o", "--output", help="file to write (.csv or .json)"),
    fdr: float = typer.Option(0.05, "--fdr", help="false-discovery rate of the Benjamini-Hochberg step"),
    min_per_cell: int = typer.Option(5, "--min-per-cell", help="fewest participants per arm in and out of a context"),
    arm: str | None = typer.Option(None, "--arm", help="intervention arm (a neutral letter while blinded)"),
    reference: str | None = typer.Option(None, "--reference", help="comparison arm (a letter while blinded)"),
    longitudinal: bool = typer.Option(
        False, "--longitudinal", help="add the arm x time x context estimate over every wave (as ?longitudinal=true)"
    ),
) -> None:
    """Write the study's realist output table: every CMO configuration with its estimate and its
    qualitative evidence (de-identified, as an analyst sees it; same service as the API)."""
    import json as _json

    from api.auth.service import Actor
    from api.context.realist import study_realist_table, table_csv
    from api.errors import ApiError
    from api.jsonable import records

    actor = Actor(user_id=None, role="analyst", source="system")
    with _study_session(study) as run:
        try:
            table = study_realist_table(
                run.session, run.study, actor, run.settings.secret_key, arm, reference, fdr, min_per_cell, longitudinal
            )
        except ApiError as exc:
            raise _bad_parameter(exc) from None
    path = Path(output)
    if path.suffix == ".json":
        path.write_text(_json.dumps({"study_id": study, "rows": records(table)}, indent=1))
    else:
        path.write_text(table_csv(table))
    typer.echo(f"{len(table)} CMO configurations written to {path.resolve()}")


@app.command("report")
def report_cmd(
    study: int = typer.Argument(..., help="study id"),
    site: list[str] | None = typer.Option(None, "--site", help="site code to cover; repeatable (default: every site)"),
    pdf: bool = typer.Option(True, "--pdf/--no-pdf", help="also print the report to PDF (headless Chromium)"),
    outdir: str | None = typer.Option(None, "--outdir", help="also copy report.html (and report.pdf) to this folder"),
) -> None:
    """Write the trial report (CONSORT flow, Table 1, outcomes, harms, attrition, reproducibility) as one
    self-contained HTML file and its PDF, as an analyst sees the study (de-identified)."""
    import shutil

    from api.auth.service import Actor
    from api.errors import ApiError
    from api.reports.schemas import ReportIn
    from api.reports.service import build

    actor = Actor(user_id=None, role="analyst", source="system")
    with _study_session(study) as run:
        try:
            out = build(run.session, run.study, actor, run.settings, ReportIn(sites=site or None, pdf=pdf))
        except ApiError as exc:
            raise _bad_parameter(exc, {"sites": "--site"}) from None
        run.session.commit()
    folder = Path(run.settings.artifact_dir) / "reports" / str(study) / out.run_id
    files = [folder / "report.html"] + ([folder / "report.pdf"] if out.pdf_url else [])
    if outdir:
        target = Path(outdir)
        target.mkdir(parents=True, exist_ok=True)
        files = [Path(shutil.copy2(f, target / f.name)) for f in files]
    for f in files:
        typer.echo(f"written: {f.resolve()}")
    absent = [s.title for s in out.sections if not s.present]
    if absent:
        typer.echo("sections without data yet: " + "; ".join(absent))
    if out.pdf_error:
        typer.echo(f"no PDF: {out.pdf_error}", err=True)
    typer.echo(f"data snapshot sha256 {out.data_hash}")
