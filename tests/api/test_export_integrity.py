"""A streamed export never ends truncated behind a 200 unnoticed: receipts, priming and the CLI check.

The server runs for real (uvicorn on loopback) so the failure mid-stream reaches the client as it
would in production.
"""

from __future__ import annotations

import hashlib
import os
import socket
import threading
import time
from datetime import date, timedelta

import httpx
import pytest
from typer.testing import CliRunner

from api.cli import app as cli
from api.exports import service, sqlpath
from tests.conftest import phq9_answers


@pytest.fixture(scope="module")
def server(app):
    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not srv.started:
        assert time.monotonic() < deadline and thread.is_alive(), "test server did not start"
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def study(make_study, enrol, client, admin):
    st = make_study(waves=(("baseline", 0, 0, 14, ["phq9"]),))
    for i in range(4):
        p = enrol(st, enrolled_on=str(date.today() - timedelta(days=3)))
        r = client.post(
            f"/participants/{p['id']}/responses",
            json={"wave": "baseline", "instrument": "phq9", "answers": phq9_answers(i % 3)},
            headers=admin.headers,
        )
        assert r.status_code == 201, r.text
    return st


def _failing_after(monkeypatch, n_batches: int):
    """Make the export fail after ``n_batches`` batches (one participant each) on either path: the
    batch path (SQLite) or the COPY blocks of the SQL path (PostgreSQL's CSV)."""
    real = service.iter_shape

    def failing(session, plan, shape, batch_size=service.DEFAULT_BATCH):
        for i, df in enumerate(real(session, plan, shape, batch_size=1)):
            if i == n_batches:
                raise RuntimeError("storage went away")
            yield df
        if n_batches >= 0:
            raise RuntimeError("storage went away")

    monkeypatch.setattr(service, "iter_shape", failing)
    real_blocks = sqlpath.copy_blocks

    def failing_blocks(raw, sql, block_size):
        for i, block in enumerate(real_blocks(raw, sql, 1)):  # one row per block
            if i == n_batches:
                raise RuntimeError("storage went away")
            yield block
        raise RuntimeError("storage went away")

    monkeypatch.setattr(sqlpath, "copy_blocks", failing_blocks)


def _receipt(client, headers, url):
    deadline = time.monotonic() + 10
    while True:
        r = client.get(url, headers=headers)
        if r.status_code == 200 or time.monotonic() > deadline:
            return r
        time.sleep(0.05)


def test_a_complete_export_matches_its_receipt(server, study, analyst):
    with httpx.Client(base_url=server) as c:
        r = c.get(f"/studies/{study.id}/exports/long", headers=analyst.headers)
        assert r.status_code == 200
        path = r.headers["Peerlens-Export-Receipt"]
        assert path == f"/studies/{study.id}/export-receipts/{r.headers['x-request-id']}"
        got = _receipt(c, analyst.headers, path)
    assert got.status_code == 200, got.text
    rec = got.json()
    assert rec["complete"] is True and rec["rows"] == 4
    assert rec["bytes"] == len(r.content) and rec["sha256"] == hashlib.sha256(r.content).hexdigest()


def test_a_failure_mid_stream_is_detected_by_the_client(server, study, admin, monkeypatch):
    _failing_after(monkeypatch, 2)
    body = b""
    with httpx.Client(base_url=server) as c:
        with c.stream("GET", f"/studies/{study.id}/exports/long", headers=admin.headers) as r:
            assert r.status_code == 200  # the status went out with the first batch
            receipt = r.headers["Peerlens-Export-Receipt"]
            try:
                for chunk in r.iter_bytes():
                    body += chunk
            except httpx.HTTPError:
                pass  # the connection may also be cut; the receipt is what a client can rely on
        rec = _receipt(c, admin.headers, receipt).json()
    assert body.startswith(b"participant") or b"participant" in body[:200]
    assert rec["complete"] is False and rec["error"] == "RuntimeError"
    assert rec["bytes"] == len(body)  # what was sent before the failure, nothing more


def test_peerlens_export_url_keeps_a_verified_file_and_refuses_a_truncated_one(
    server, study, admin, monkeypatch, tmp_path
):
    out = tmp_path / "long.csv"
    runner = CliRunner()
    args = ["export", str(study.id), "--url", server, "--token", admin.token, "-o", str(out)]
    r = runner.invoke(cli, args)
    assert r.exit_code == 0, r.output
    assert "verified" in r.output and out.read_bytes().count(b"\n") == 5  # header + 4 rows

    _failing_after(monkeypatch, 2)
    bad = tmp_path / "truncated.csv"
    r = runner.invoke(cli, ["export", str(study.id), "--url", server, "--token", admin.token, "-o", str(bad)])
    assert r.exit_code == 1
    assert "export not saved" in r.output and "incomplete" in r.output
    assert not bad.exists() and not os.path.exists(str(bad) + ".part")


def test_a_failure_in_the_first_batch_is_an_error_status_not_a_200(client, study, admin, monkeypatch):
    _failing_after(monkeypatch, 0)
    r = client.get(f"/studies/{study.id}/exports/long", headers=admin.headers)
    assert r.status_code == 500
    assert b"participant" not in r.content


def test_receipts_are_read_by_readers_of_the_study_only(client, study, make_user, admin):
    r = client.get(f"/studies/{study.id}/export-receipts/nope", headers=admin.headers)
    assert r.status_code == 404 and r.json()["detail"][0]["loc"] == ["path", "request_id"]
    other = make_user("coordinator", [])
    r = client.get(f"/studies/{study.id}/exports/long", headers=admin.headers)
    rid = r.headers["x-request-id"]
    assert client.get(f"/studies/{study.id}/export-receipts/{rid}", headers=admin.headers).status_code == 200
    assert client.get(f"/studies/{study.id}/export-receipts/{rid}", headers=other.headers).status_code in (403, 404)
