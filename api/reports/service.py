"""Building the trial report: gather the study's data under the requester's scope, run every
section of the registry, render one self-contained HTML page, print it to PDF, store both in the
artefact store and audit the run (the caller commits).

Examples
--------
>>> out = build(session, study, actor, settings, ReportIn())  # doctest: +SKIP
>>> out.html_url  # doctest: +SKIP
'/studies/1/reports/runs/3f…/report.html'
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlmodel import Session

from analysis.trialreport import Section, render_document
from api.artifacts import ArtifactStore
from api.audit.service import record
from api.auth.service import Actor
from api.config import Settings
from api.release import provenance
from api.reports import forwhom, jointdisplays, sections
from api.reports.gather import ReportData, gather
from api.reports.pdf import PdfError, print_pdf
from api.reports.schemas import ReportIn, ReportRead, ReportSection
from api.studies.models import Study

HTML_NAME, PDF_NAME = "report.html", "report.pdf"
DESIGNS = {
    "rct": "Randomised controlled trial",
    "cluster_rct": "Cluster randomised trial",
    "cohort": "Cohort study",
    "realist_trial": "Realist trial",
}


def command(study: Study, req: ReportIn) -> str:
    """The command line that regenerates this report."""
    parts = ["peerlens report", str(study.id)]
    for s in req.sites or ():
        parts += ["--site", s]
    if not req.pdf:
        parts.append("--no-pdf")
    return " ".join(parts)


def render(
    session: Session, study: Study, actor: Actor, settings: Settings, req: ReportIn
) -> tuple[str, list[Section], ReportData]:
    """The report's HTML, its sections and the data read (nothing is written)."""
    data = gather(session, study, actor, sites=req.sites, secret=settings.secret_key)
    data.extra["provenance"] = provenance(session.connection())
    data.extra["data_hash"] = data.data_hash()
    data.extra["command"] = command(study, req)
    # What works for whom and the joint displays read the context and transcripts domains as
    # their routes do for this reader, restricted to the report's participants.
    data.extra["realist"] = forwhom.collect(session, study, data, data.extra["long_raw"])
    data.extra["joint"] = jointdisplays.collect(session, study, data, settings)
    built = []
    for spec in sections.SECTIONS:
        body, present = spec.build(data)
        built.append(Section(spec.key, spec.title, body, present))
    generated = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    meta = {
        "Design": DESIGNS.get(study.design, study.design),
        "Participants allocated": str(len(data.people)),
        "Arms": ", ".join(data.arms) + (" (neutral labels: blinded)" if data.masked else ""),
        "Sites": "every site" if data.sites is None else (", ".join(data.sites) or "none"),
        "Analysis plan": (
            f"version {data.plan.version}, locked {data.plan.locked_at}"
            if data.plan is not None
            else "no analysis plan recorded"
        ),
        "Blinding": (
            "arms shown as neutral labels (blinded)"
            if data.masked
            else ("unblinded " + str(data.unblinded_at) if data.unblinded_at is not None else "arms named")
        ),
        "Generated": generated,
    }
    html = render_document(
        f"{study.title}: trial report",
        built,
        meta=meta,
        subtitle="CONSORT 2010 flow, baseline characteristics, outcomes, harms and retention",
    )
    return html, built, data


def build(session: Session, study: Study, actor: Actor, settings: Settings, req: ReportIn) -> ReportRead:
    """Render the report, store ``report.html`` (and ``report.pdf``), audit ``report.generate``."""
    html, built, data = render(session, study, actor, settings, req)
    covered, data_hash = data.sites, data.extra["data_hash"]
    run = ArtifactStore.from_settings(settings).new_run(
        "reports",
        study.id,
        {
            "kind": "trial_report",
            "created_at": datetime.now(UTC).isoformat(),
            "sites": covered,
            "actor_role": actor.role,
            "data_hash": data_hash,
        },
    )
    html_path = run.folder / HTML_NAME
    html_path.write_text(html, encoding="utf-8")
    pdf_url, pdf_error = None, None
    if req.pdf:
        try:
            print_pdf(html_path, run.folder / PDF_NAME)
            pdf_url = run.url(PDF_NAME)
        except PdfError as exc:
            pdf_error = str(exc)
    record(
        session,
        actor,
        "report.generate",
        "report_run",
        run.run_id,
        study_id=study.id,
        after={
            "sites": covered,
            "data_hash": data_hash,
            "pdf": pdf_url is not None,
            "sections": {s.key: s.present for s in built},
        },
    )
    return ReportRead(
        run_id=run.run_id,
        html_url=run.url(HTML_NAME),
        pdf_url=pdf_url,
        pdf_error=pdf_error,
        data_hash=data_hash,
        sections=[ReportSection(key=s.key, title=s.title, present=s.present) for s in built],
    )
