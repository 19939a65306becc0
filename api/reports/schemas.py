"""Bodies and read models of the screening log and the trial report."""

from __future__ import annotations

from datetime import date
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from api.inputguard import SingleLine
from api.reports.models import OUTCOMES
from api.studies.dates import PlausibleDate

Outcome = Literal[OUTCOMES]  # type: ignore[valid-type]


class ScreeningIn(BaseModel):
    """One person assessed for eligibility. ``participant_id`` links an enrolled person (required
    when ``outcome`` is ``enrolled``, refused otherwise); the reason never names anyone."""

    model_config = ConfigDict(extra="forbid")

    site: str = Field(min_length=1, max_length=40, description="site code")
    screened_on: PlausibleDate = Field(description="not in the future, not before the study's plausible range")
    outcome: Outcome = Field(description="enrolled | not_eligible | declined | other")
    reason: SingleLine | None = Field(
        default=None,
        min_length=1,
        max_length=120,
        description='why not enrolled, as the CONSORT diagram lists it ("HbA1c below 7.5%"); no names',
    )
    participant_id: int | None = Field(default=None, ge=1, le=2**31 - 1)


class ScreeningRead(BaseModel):
    id: int
    site: str
    screened_on: date | None = Field(description="withheld (null) for de-identified readers")
    outcome: str
    reason: str | None
    participant: str | None = Field(description="the enrolled participant's study code")


class ScreeningSummary(BaseModel):
    assessed: int
    enrolled: int
    excluded: dict[str, int]
    reasons: dict[str, dict[str, int]]


class ReportIn(BaseModel):
    """Options of one trial report."""

    model_config = ConfigDict(extra="forbid")

    sites: list[str] | None = Field(default=None, max_length=200, description="site codes (default: every site)")
    pdf: bool = Field(default=True, description="also print the report to PDF (headless Chromium)")


class ReportSection(BaseModel):
    key: str
    title: str
    present: bool = Field(description="false when the section's data do not exist yet (the report says so)")


class ReportRead(BaseModel):
    run_id: str
    html_url: str
    pdf_url: str | None
    pdf_error: str | None = None
    data_hash: str
    sections: list[ReportSection]
