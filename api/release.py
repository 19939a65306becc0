"""The release: one version number, and the provenance block reports and exports carry.

The version is ``pyproject.toml``'s ``[project] version`` (Semantic Versioning 2.0.0), read from the
installed distribution's metadata; nothing else in the code base spells it. CHANGELOG.md says
what each release changes for coordinators, analysts and operators.

Examples
--------
>>> import re
>>> bool(re.fullmatch(r"\\d+\\.\\d+\\.\\d+", version()))
True
>>> info = provenance()
>>> info["peerlens"] == version() and info["schema_head"] == head_revision()
True
>>> provenance_markdown(info).splitlines()[0]
'## Appendix: software and data provenance'
"""

from __future__ import annotations

import platform
import re
import tomllib
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any

from api.migrate import current_revision, head_revision

DISTRIBUTION = "peerlens"
#: Libraries whose versions decide what an analysis computes (listed in the provenance block).
ANALYSIS_STACK = ("numpy", "pandas", "scipy", "statsmodels", "pingouin", "lifelines", "spacy", "sqlalchemy")


@lru_cache
def version() -> str:
    """The Peerlens version, e.g. ``"0.2.0"``.

    From the installed distribution's metadata; from ``pyproject.toml`` when running from a source
    tree that was never installed.
    """
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        pyproject = Path(__file__).resolve().parents[1] / "pyproject.toml"
        return tomllib.loads(pyproject.read_text())["project"]["version"]


def is_semver(text: str) -> bool:
    """Whether ``text`` is a Semantic Versioning 2.0.0 version.

    >>> is_semver("1.4.0"), is_semver("1.4"), is_semver("01.4.0"), is_semver("1.4.0-rc.1")
    (True, False, False, True)
    """
    core = r"(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    ident = r"(0|[1-9]\d*|\d*[A-Za-z-][0-9A-Za-z-]*)"
    pattern = rf"{core}(-{ident}(\.{ident})*)?(\+[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?"
    return re.fullmatch(pattern, text) is not None


def _package_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def provenance(connection=None) -> dict[str, Any]:
    """What produced a result: the Peerlens version, the schema revisions and the analysis stack.

    Parameters
    ----------
    connection : sqlalchemy.engine.Connection, optional
        When given, ``schema_revision`` is the revision of that database (else None).

    Returns
    -------
    dict
        ``peerlens``, ``schema_revision`` (the database's), ``schema_head`` (this code's),
        ``python`` and ``packages`` (name -> version, for :data:`ANALYSIS_STACK`).
    """
    return {
        "peerlens": version(),
        "schema_revision": current_revision(connection) if connection is not None else None,
        "schema_head": head_revision(),
        "python": platform.python_version(),
        "packages": {name: _package_version(name) for name in ANALYSIS_STACK},
    }


def provenance_markdown(info: dict[str, Any]) -> str:
    """The provenance block as a Markdown appendix (for reports)."""
    lines = [
        "## Appendix: software and data provenance",
        "",
        f"- Peerlens {info['peerlens']} (database schema {info.get('schema_revision') or 'not recorded'}"
        + (
            f"; this release's schema is {info['schema_head']})"
            if info.get("schema_revision") != info["schema_head"]
            else ")"
        ),
        f"- Python {info['python']}; "
        + ", ".join(f"{name} {v}" for name, v in info["packages"].items() if v is not None),
        "- Release notes: CHANGELOG.md of the Peerlens release named above.",
        "",
    ]
    return "\n".join(lines)
