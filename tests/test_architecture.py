"""The layering and transaction rules of DESIGN.md, checked on the source itself.

- The libraries (``instruments``, ``analysis``, ``qualitative``) never import the service, a
  database or a web framework.
- The code that opens a session commits it: a function that is handed a ``session`` never calls
  ``session.commit()``, except a router (whose request session :func:`api.db.get_session` opened)
  and :func:`api.db.end_read` (which ends a read transaction and writes nothing).
- Routers stay thin: they build no queries (``select``/``update``/``delete`` live in services).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LIBRARIES = ("instruments", "analysis", "qualitative")
FORBIDDEN_IN_LIBRARIES = ("api", "sqlalchemy", "sqlmodel", "fastapi", "starlette", "psycopg", "httpx", "uvicorn")


def _modules(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def _imported(tree: ast.AST) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("package", LIBRARIES)
def test_libraries_import_no_service_database_or_web_code(package):
    bad = []
    for path in _modules(package):
        for name in _imported(ast.parse(path.read_text(encoding="utf-8"))):
            if name.split(".")[0] in FORBIDDEN_IN_LIBRARIES:
                bad.append(f"{path.relative_to(ROOT)} imports {name}")
    assert not bad, bad


def _commits_of_a_handed_session(source: str) -> list[tuple[str, int]]:
    """(function, line) of every ``x.commit()`` where ``x`` is a parameter of the function."""
    found = []
    for fn in ast.walk(ast.parse(source)):
        if not isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        params = {a.arg for a in fn.args.posonlyargs + fn.args.args + fn.args.kwonlyargs}
        for node in ast.walk(fn):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "commit"
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id in params
            ):
                found.append((fn.name, node.lineno))
    return found


def test_only_the_code_that_opens_a_session_commits_it():
    allowed = {("db.py", "end_read")}
    bad = [
        f"{path.relative_to(ROOT)}:{line} {name}() commits a session it was handed"
        for path in _modules("api")
        if not path.name.endswith("router.py")  # router.py, or a domain's second router (coding_router.py)
        for name, line in _commits_of_a_handed_session(path.read_text(encoding="utf-8"))
        if (path.name, name) not in allowed
    ]
    assert not bad, "\n".join(bad)


def test_the_commit_checker_tells_a_handed_session_from_an_opened_one():
    source = (
        "def service(session, x):\n    session.add(x)\n    session.commit()\n\n"
        "def command(engine):\n    with Session(engine) as session:\n        session.commit()\n"
    )
    assert _commits_of_a_handed_session(source) == [("service", 3)]


def test_routers_build_no_queries():
    bad = []
    for path in sorted((ROOT / "api").rglob("*router.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module in ("sqlmodel", "sqlalchemy"):
                used = {a.name for a in node.names} & {"select", "update", "delete", "insert", "text"}
                if used:
                    bad.append(f"{path.relative_to(ROOT)} imports {sorted(used)} from {node.module}")
    assert not bad, bad


def test_library_names_load_on_first_use_and_functions_keep_their_names():
    import subprocess
    import sys

    code = (
        "import sys, analysis, qualitative\n"
        "assert not [m for m in sys.modules if m.startswith(('analysis.', 'qualitative.'))]\n"
        "assert 'matplotlib' not in sys.modules and callable(analysis.plots.plot_km) and 'matplotlib' in sys.modules\n"
        "import analysis.reliability, qualitative.agreement  # a submodule loaded directly first\n"
        "assert callable(analysis.reliability) and callable(qualitative.agreement)\n"
        "assert analysis.reliability.__module__ == 'analysis.reliability'\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.stdout.strip() == "ok", out.stderr
