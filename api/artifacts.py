"""The artefact store: every file the service generates lives here, under ``PEERLENS_ARTIFACT_DIR``.

Layout (one folder per run, a ``run.json`` manifest beside its files)::

    <artifact_dir>/analyses/<study id>/<run id>/        a run of /studies/{id}/analyses/{kind}
                                                        (and `peerlens analyze` without --outdir)
    <artifact_dir>/qualitative/<study id>/<run id>/     a joint display
    <artifact_dir>/reports/<study id>/<run id>/         a trial report (report.html, report.pdf)

Run ids are 32 hex digits, file names come from :func:`safe_name` and end in ``.png`` or ``.svg``
(a report's in ``.html`` or ``.pdf``),
and a resolved path must stay inside its run folder, so ``..``, an encoded slash or an absolute
path never leaves it. The manifest records which sites a run covered; an actor who sees only some
sites (a coordinator) is served a run's files only when it covered their own sites and nothing
else, and a run without a manifest is served to nobody. Anything refused is a 404, as if the file
did not exist.

Examples
--------
>>> import tempfile
>>> store = ArtifactStore(tempfile.mkdtemp())
>>> run = store.new_run("analyses", 3, {"kind": "power", "sites": None})
>>> run.folder.relative_to(store.root).parts[:2]
('analyses', '3')
>>> safe_name("km dropout/by arm")
'km_dropout_by_arm'
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from api.auth import policy
from api.auth.service import Actor
from api.errors import NotFound

AREAS = ("analyses", "qualitative", "reports")
RUN_ID = re.compile(r"^[0-9a-f]{32}$")
FILENAME = re.compile(r"^[A-Za-z0-9_\-]{1,150}\.(png|svg|html|pdf)$")
MANIFEST = "run.json"
MEDIA_TYPES = {"png": "image/png", "svg": "image/svg+xml", "html": "text/html; charset=utf-8", "pdf": "application/pdf"}
FIGURE_FORMATS = ("png", "svg")


def safe_name(name: str) -> str:
    """``name`` reduced to letters, digits, ``_`` and ``-`` (at most 140 characters), for file names."""
    return re.sub(r"[^A-Za-z0-9_\-]", "_", name)[:140]


@dataclass(frozen=True)
class Run:
    """A run's folder in the store: its id and where its files go."""

    area: str
    study_id: int
    run_id: str
    folder: Path

    def save_figure(self, fig: Any, name: str, fmt: str) -> str:
        """Write a matplotlib figure as ``<safe name>.<fmt>`` and return the file name."""
        if fmt not in FIGURE_FORMATS:
            raise ValueError(f"plot format must be one of {sorted(FIGURE_FORMATS)}")
        filename = f"{safe_name(name)}.{fmt}"
        fig.savefig(self.folder / filename, dpi=150, format=fmt)
        return filename

    def url(self, filename: str) -> str:
        """Where the API serves ``filename`` of this run."""
        return f"/studies/{self.study_id}/{self.area}/runs/{self.run_id}/{filename}"


class ArtifactStore:
    """Generated files under ``root`` (``Settings.artifact_dir``)."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    @classmethod
    def from_settings(cls, settings: Any) -> ArtifactStore:
        return cls(settings.artifact_dir)

    def _folder(self, area: str, study_id: int, run_id: str) -> Path:
        if area not in AREAS:
            raise ValueError(f"area must be one of {AREAS}")
        return self.root / area / str(int(study_id)) / run_id

    def new_run(self, area: str, study_id: int, manifest: Mapping[str, Any] | None = None) -> Run:
        """A new, empty run folder; ``manifest`` (with ``sites``: codes covered, None for all) is
        written first, so that the run's files can be served (without one, they never are)."""
        run_id = uuid.uuid4().hex
        folder = self._folder(area, study_id, run_id)
        folder.mkdir(parents=True, exist_ok=True)
        if manifest is not None:
            data = {"run_id": run_id, "study_id": int(study_id), **manifest}
            (folder / MANIFEST).write_text(json.dumps(data), encoding="utf-8")
        return Run(area, int(study_id), run_id, folder)

    def file(
        self, area: str, study_id: int, run_id: str, filename: str, actor: Actor, study_sites: Mapping[str, int]
    ) -> Path:
        """The file ``filename`` of a run, if ``actor`` may see it (404 otherwise).

        Parameters
        ----------
        study_sites : mapping
            Site code -> id of the study, to decide which of the run's sites ``actor`` sees.
        """
        if not RUN_ID.fullmatch(run_id):
            raise NotFound(["path", "run_id"], "run not found", "not_found")
        if not FILENAME.fullmatch(filename):
            raise NotFound(["path", "filename"], "file not found", "not_found")
        base = self._folder(area, study_id, run_id).resolve()
        path = (base / filename).resolve()
        try:
            manifest = json.loads((base / MANIFEST).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            raise NotFound(["path", "run_id"], "run not found", "not_found") from None
        if base not in path.parents or not path.is_file():
            raise NotFound(["path", "filename"], "file not found", "not_found")
        if not covers_only_own_sites(actor, manifest.get("sites"), study_sites):
            raise NotFound(["path", "run_id"], "run not found", "not_found")
        return path


def covers_only_own_sites(actor: Actor, covered: list[str] | None, study_sites: Mapping[str, int]) -> bool:
    """Whether ``actor`` may see a result that covered the sites ``covered`` (None: every site).

    Actors who see every site see every result; a site-scoped actor sees results of their own
    sites only, and never one computed over every site.
    """
    if not policy.site_scoped(actor):
        return True
    if not covered:
        return False
    own = {code for code, site_id in study_sites.items() if actor.sees_site(site_id)}
    return set(covered) <= own


def site_scope(actor: Actor, study_sites: Mapping[str, int], requested: list[str] | None = None) -> list[str] | None:
    """The site codes a result computed for ``actor`` covers: the ``requested`` ones, else the
    actor's own sites for a site-scoped actor, else None (every site)."""
    if requested is not None:
        return requested
    if policy.site_scoped(actor):
        return [code for code, site_id in study_sites.items() if actor.sees_site(site_id)]
    return None
