"""Build the populated database of the upgrade-with-data test, AT revision 5e1a8b3c9d47 (release 0.1.0).

This script belongs to the commit that introduced it (schema head ``5e1a8b3c9d47``, release 0.1.0)
and is kept for provenance only: it drives the service code *of that commit*, which later commits
change. The test never runs it; it reads what it wrote:

* ``rows.json``  every row of every table, loaded later with SQLAlchemy Core into a database
  migrated to 5e1a8b3c9d47 (so the test does not depend on today's ORM models);
* ``meta.json``  plaintext API tokens, personal-link and unsubscribe tokens, the secret key, ids;
* ``exports/``   the exports as 0.1.0 wrote them (the "before" of the export comparison).

To rebuild it (only ever at that commit)::

    git worktree add /tmp/peerlens-0.1.0 <commit> && cd /tmp/peerlens-0.1.0 && make setup
    .venv/bin/python tests/api/data/upgrade_5e1a8b3c9d47/build.py
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from datetime import UTC, date, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[3]
sys.path.insert(0, str(ROOT))
SECRET = "upgrade-fixture-secret-0.1.0"
os.environ["PEERLENS_SECRET_KEY"] = SECRET
PINNED = "5e1a8b3c9d47"
TODAY = date(2026, 11, 25)


def main() -> None:
    tmp = Path(tempfile.mkdtemp())
    url = f"sqlite:///{tmp / 'fixture.db'}"
    os.environ["DATABASE_URL"] = url
    from api.config import Settings, get_settings
    from api.migrate import upgrade

    get_settings.cache_clear()
    upgrade(url, PINNED)
    meta: dict = {"revision": PINNED, "release": "0.1.0", "secret_key": SECRET, "today": TODAY.isoformat()}

    from api.demo import load_demo

    demo = load_demo(url, n_participants=12, seed=20261125, today=TODAY)
    meta["study_id"] = demo.study_id
    meta["tokens"] = dict(demo.tokens)

    from fastapi.testclient import TestClient
    from sqlalchemy import text

    from api.db import engine_from_settings
    from api.main import create_app

    settings = Settings(DATABASE_URL=url, PEERLENS_SECRET_KEY=SECRET, PEERLENS_BASE_URL="http://testserver")
    engine = engine_from_settings(settings)
    app = create_app(settings, engine=engine)
    sid = demo.study_id
    with TestClient(app) as client:
        A = {"Authorization": f"Bearer {demo.tokens['admin']}"}
        C = {"Authorization": f"Bearer {demo.tokens['coordinator']}"}

        def ok(r, status=(200, 201, 204, 303)):
            assert r.status_code in status, (r.status_code, r.text)
            return r

        # An open-ended diary wave: its personal links stay valid for ten years.
        ok(
            client.post(
                f"/studies/{sid}/waves",
                json={
                    "code": "diary",
                    "offset_days": 0,
                    "window_before_days": 0,
                    "window_after_days": 3650,
                    "instruments": ["phq9", "gad7"],
                },
                headers=A,
            )
        )
        # Participants with contact details (the vault), randomised (allocation rows).
        people = []
        for i, (site, name) in enumerate(
            (
                ("north", "Alice Example"),
                ("north", "Bashir Sample"),
                ("south", "Chen Placeholder"),
                ("north", "Dana Test"),
            )
        ):
            body = {
                "site": site,
                "enrolled_on": "2026-11-20",
                "consent": {"date": "2026-11-20", "version": "v1.2"},
                "contact": {
                    "name": name,
                    "email": f"person{i}@example.org",
                    "phone": f"+44 7700 900{i:03d}",
                    "date_of_birth": f"196{i}-0{i + 1}-1{i}",
                    "preferred_channel": "email",
                },
            }
            people.append(ok(client.post(f"/studies/{sid}/participants", json=body, headers=A)).json())
        meta["contact_participants"] = [p["id"] for p in people]

        # REST submissions with idempotency keys, one amended.
        for n, p in enumerate(people[:3]):
            headers = {**(C if p["site"] == "north" else A), "Idempotency-Key": f"tablet-{n}-0001"}
            phq = {f"phq9_{k}": (k + n) % 4 for k in range(1, 10)}
            ok(
                client.post(
                    f"/participants/{p['id']}/responses",
                    json={"wave": "baseline", "instrument": "phq9", "answers": phq},
                    headers=headers,
                )
            )
        amended = {f"phq9_{k}": (k + 1) % 4 for k in range(1, 10)}
        amended["phq9_9"] = 0
        ok(
            client.post(
                f"/participants/{people[0]['id']}/responses",
                json={
                    "wave": "baseline",
                    "instrument": "phq9",
                    "answers": amended,
                    "amend": True,
                    "reason": "item 9 answered on paper",
                },
                headers=C,
            )
        )
        # Two demo responses amended as well.
        rs = ok(client.get(f"/studies/{sid}/participants", headers=A)).json()
        demo_people = [p for p in rs if p["id"] not in meta["contact_participants"]]
        for p in demo_people[:2]:
            mine = ok(client.get(f"/participants/{p['id']}/responses", headers=A)).json()
            phq = [r for r in mine if r["instrument"] == "phq9"][0]
            answers = dict(phq["answers"])
            answers["phq9_1"] = (answers.get("phq9_1") or 0) % 3 + 1
            ok(
                client.post(
                    f"/participants/{p['id']}/responses",
                    json={
                        "wave": phq["wave"],
                        "instrument": "phq9",
                        "answers": answers,
                        "completed_at": phq["completed_at"],
                        "amend": True,
                        "reason": "transcription error corrected against the paper form",
                    },
                    headers=A,
                )
            )
        # The fourth contact participant withdraws.
        ok(
            client.patch(
                f"/participants/{people[3]['id']}",
                json={"status": "withdrawn", "status_date": "2026-11-24", "reason": "moved away"},
                headers=A,
            )
        )

        # Personal links: live ones on the diary wave, one revoked, one used through the web form.
        links = []
        for p in people[:3]:
            body = ok(client.post(f"/participants/{p['id']}/links", json={"wave": "diary"}, headers=A)).json()
            links.append({"participant_id": p["id"], "wave": "diary", "token": body["token"], "state": "live"})
        body = ok(client.post(f"/participants/{people[1]['id']}/links", json={"wave": "baseline"}, headers=A)).json()
        ok(client.delete(f"/participants/{people[1]['id']}/links/baseline", headers=A))
        links.append(
            {"participant_id": people[1]["id"], "wave": "baseline", "token": body["token"], "state": "revoked"}
        )
        import re

        token = links[2]["token"]
        page = ok(client.get(f"/f/{token}"))
        csrf = re.search(r'name="csrf" value="([0-9a-f]{64})"', page.text).group(1)
        data = {"csrf": csrf, "instrument": "phq9", "action": "save"}
        data.update({f"i_phq9_{k}": str(k % 3) for k in range(1, 10)})
        data["i_phq9_10"] = "1"
        ok(client.post(f"/f/{token}", data=data, follow_redirects=False))
        meta["links"] = links

        # Reminders: plans for two waves, planned and sent through a loopback SMTP server.
        plan = {
            "channel": "preferred",
            "steps": [{"offset_days": 0, "offset_hours": 0}, {"offset_days": 3, "offset_hours": 0}],
            "subject": "{study}: your {wave} questionnaire",
            "body": "Hello {name}, your {wave} questionnaire is ready: {link} (open until {closes_on}).",
        }
        ok(
            client.put(
                f"/studies/{sid}/reminder-plans",
                json={
                    "plans": [{**plan, "wave": "diary"}, {**plan, "wave": "m1"}],
                    "quiet_hours": {"start": "21:00", "end": "08:00"},
                },
                headers=A,
            )
        )
        from sqlmodel import Session

        from api.reminders.clock import FixedClock
        from api.reminders.dispatcher import Dispatcher
        from api.reminders.planner import plan_study
        from api.reminders.tokens import sign
        from api.studies.models import Study
        from tests.api.reminders_support import SmtpServer

        clock = FixedClock(datetime(2026, 11, 25, 12, tzinfo=UTC))
        with Session(engine, expire_on_commit=False) as s:
            plan_study(s, s.get(Study, sid), clock)
            s.commit()
        with SmtpServer() as smtp:
            mail = settings.model_copy(update={"smtp_port": smtp.port, "smtp_host": "127.0.0.1"})
            disp = Dispatcher(engine, mail, clock=clock, study_ids=[sid])
            stats = disp.run_once()
            disp.close()
            meta["reminders_sent"] = stats.sent
        meta["unsubscribe"] = [{"participant_id": p["id"], "token": sign(SECRET, p["id"])} for p in people[:2]]
        ok(client.post(f"/u/{meta['unsubscribe'][1]['token']}"))

        # Export settings: shifted dates for analysts.
        ok(client.put(f"/studies/{sid}/export-settings", json={"date_mode": "shift"}, headers=A))

        # Transcripts, codebook (with history), codings, memos, suggestions.
        interview = ok(
            client.post(
                f"/studies/{sid}/transcripts",
                headers=A,
                data={"participants": people[0]["study_code"], "wave": "baseline"},
                files={
                    "file": (
                        "interview.txt",
                        (
                            "Interviewer: How has the group been?\n"
                            f"{people[0]['study_code']}: I'm Alice, and honestly I was so lonely before. "
                            "Text me on +44 7700 900000. Now I miss people when a session is cancelled.\n"
                            "Interviewer: Anything hard?\n"
                            f"{people[0]['study_code']}: The bus to the centre takes an hour, so travel is hard.\n"
                        ).encode(),
                    )
                },
            )
        ).json()
        focus = ok(
            client.post(
                f"/studies/{sid}/transcripts",
                headers=A,
                data={"participants": f"{people[1]['study_code']},{people[2]['study_code']}", "kind": "focus_group"},
                files={
                    "file": (
                        "group.txt",
                        (
                            "Facilitator: What helped?\n"
                            f"{people[1]['study_code']}: Meeting people like me. I felt less lonely.\n"
                            f"{people[2]['study_code']}: Me too, the group helped, but travel costs money.\n"
                        ).encode(),
                    )
                },
            )
        ).json()
        benefits = ok(
            client.post(f"/studies/{sid}/codes", headers=A, json={"name": "Benefits", "codable": False})
        ).json()
        iso = ok(
            client.post(
                f"/studies/{sid}/codes",
                headers=A,
                json={
                    "name": "Reduced isolation",
                    "parent_id": benefits["id"],
                    "inclusion": "Talk of feeling less alone",
                    "keywords": ["lonely"],
                    "patterns": [[{"LEMMA": "miss"}, {"LOWER": "people"}]],
                },
            )
        ).json()
        travel = ok(
            client.post(f"/studies/{sid}/codes", headers=A, json={"name": "Travel", "keywords": ["travel"]})
        ).json()
        ok(client.patch(f"/codes/{travel['id']}", headers=A, json={"description": "Getting to sessions"}))
        text_i = interview["text"]
        at = text_i.index("lonely")
        ok(
            client.post(
                f"/transcripts/{interview['id']}/codings",
                headers=A,
                json={"code_id": iso["id"], "start": at, "end": at + 6, "memo": "first mention"},
            )
        )
        at = text_i.index("The bus")
        ok(
            client.post(
                f"/transcripts/{interview['id']}/codings",
                headers=C,
                json={"code_id": travel["id"], "start": at, "end": text_i.index("hard.", at) + 5},
            )
        )
        at = focus["text"].index("Meeting people")
        ok(
            client.post(
                f"/transcripts/{focus['id']}/codings",
                headers=A,
                json={"code_id": iso["id"], "start": at, "end": at + 25},
            )
        )
        ok(
            client.post(
                f"/studies/{sid}/memos",
                headers=A,
                json={"target": "project", "title": "Plan", "text": "Code isolation first."},
            )
        )
        ok(
            client.post(
                f"/studies/{sid}/memos",
                headers=A,
                json={"target": "code", "target_id": iso["id"], "title": "Definition", "text": "Includes loneliness."},
            )
        )
        sugg = ok(client.post(f"/transcripts/{focus['id']}/suggestions", headers=A)).json()
        if sugg:
            ok(client.post(f"/suggestions/{sugg[0]['id']}/accept", headers=A))
        if len(sugg) > 1:
            ok(client.post(f"/suggestions/{sugg[1]['id']}/reject", headers=A))

        # A custom instrument imported from a REDCap data dictionary, with its records.
        data_dir = ROOT / "tests" / "api" / "data"
        r = client.post(
            f"/studies/{sid}/imports/redcap",
            files={
                "records": ("records.csv", (data_dir / "redcap_records.csv").read_bytes(), "text/csv"),
                "dictionary": ("dictionary.csv", (data_dir / "redcap_dictionary.csv").read_bytes(), "text/csv"),
            },
            data={
                "event_map": json.dumps({"baseline_arm_1": "baseline", "month_3_arm_1": "m3"}),
                "default_site": "south",
            },
            headers=A,
        )
        ok(r)
        meta["redcap_import"] = {k: v for k, v in r.json().items() if isinstance(v, (int, str, bool))}

    # Tokens that must keep failing: one expired, one revoked.
    from sqlmodel import Session

    from api.users import create_with_token, new_token_for

    with Session(engine) as s:
        meta["tokens"]["expired"] = new_token_for(
            s, "analyst@demo.peerlens.org", expires_at=datetime(2026, 11, 1, tzinfo=UTC)
        )
        meta["tokens"]["revoked"] = create_with_token(s, "former@demo.peerlens.org", "analyst", [])
        s.commit()
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE api_token SET revoked_at = :at WHERE prefix = :p"),
            {"at": datetime(2026, 11, 24, 9, 0), "p": meta["tokens"]["revoked"][:12]},
        )
    meta["tokens_expect"] = {"admin": 200, "coordinator": 200, "analyst": 200, "expired": 401, "revoked": 401}

    write_exports(app, meta["tokens"], sid, HERE / "exports")
    dump_rows(engine, HERE / "rows.json")
    (HERE / "meta.json").write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")
    engine.dispose()
    print(f"fixture written to {HERE}")


def _jsonable(v):
    if isinstance(v, datetime):
        if v.tzinfo is None:
            v = v.replace(tzinfo=UTC)
        return v.astimezone(UTC).isoformat()
    if isinstance(v, date):
        return v.isoformat()
    return v


def dump_rows(engine, path: Path) -> None:
    """Every row of every table (reflected, so the file records the schema as it is), by primary key."""
    from sqlalchemy import MetaData, select

    md = MetaData()
    md.reflect(engine)
    out = {}
    with engine.connect() as conn:
        for table in md.sorted_tables:
            if table.name == "alembic_version":
                continue
            pk = list(table.primary_key.columns)
            rows = conn.execute(select(table).order_by(*pk)).all()
            out[table.name] = {
                "columns": [c.name for c in table.columns],
                "rows": [[_jsonable(v) for v in row] for row in rows],
            }
    lines = ["{"]
    names = list(out)
    for i, name in enumerate(names):
        t = out[name]
        lines.append(f' {json.dumps(name)}: {{"columns": {json.dumps(t["columns"])}, "rows": [')
        lines.append(",\n".join("  " + json.dumps(r, sort_keys=True, ensure_ascii=False) for r in t["rows"]))
        lines.append(" ]}" + ("," if i < len(names) - 1 else ""))
    lines.append("}")
    path.write_text("\n".join(lines) + "\n")


#: The exports compared before and after an upgrade: (file, token role, shape, query).
EXPORTS = (
    ("analyst-long.csv", "analyst", "long", {}),
    ("analyst-wide.csv", "analyst", "wide", {"items": "true"}),
    ("analyst-items.csv", "analyst", "items", {}),
    ("admin-wide.csv", "admin", "wide", {"items": "true", "identifiers": "true"}),
)


def write_exports(app, tokens: dict, study_id: int, folder: Path) -> None:
    """The exports as this release serves them: analyst (de-identified) and admin (identified) CSVs."""
    from fastapi.testclient import TestClient

    folder.mkdir(exist_ok=True)
    with TestClient(app) as client:
        for name, role, shape, query in EXPORTS:
            r = client.get(
                f"/studies/{study_id}/exports/{shape}",
                params={"format": "csv", **query},
                headers={"Authorization": f"Bearer {tokens[role]}"},
            )
            assert r.status_code == 200, r.text
            (folder / name).write_bytes(r.content)


if __name__ == "__main__":
    main()
