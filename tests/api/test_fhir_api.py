"""FHIR in and out: a QuestionnaireResponse stored through the submission path, a participant's Bundle out,
both validated with fhir.resources."""

from __future__ import annotations

from fhir.resources.R4B.bundle import Bundle

from instruments import score
from instruments.fhir import to_fhir_questionnaire_response


def _qr(inst: str, answers: dict, authored="2026-01-06T10:00:00Z"):
    return to_fhir_questionnaire_response(
        inst, answers, score(inst, answers), identifier="ext/1", subject="Patient/ext-9", authored=authored
    )


def test_a_questionnaire_response_is_validated_scored_stored_and_audited(client, admin, make_study, enrol):
    study = make_study(waves=(("baseline", 0, 0, 14, ["phq9", "gad7"]),))
    p = enrol(study, site="north", enrolled_on="2026-01-05")
    answers = {f"gad7_{i}": 2 for i in range(1, 8)}
    r = client.post(
        f"/participants/{p['id']}/fhir/QuestionnaireResponse",
        params={"wave": "baseline"},
        json=_qr("gad7", answers),
        headers={**admin.headers, "Content-Type": "application/fhir+json"},
    )
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["instrument"] == "gad7" and body["answers"] == answers
    assert {s["scale"]: s["value"] for s in body["scores"]}["gad7"] == 14
    assert body["completed_at"].startswith("2026-01-06T10:00")
    events = client.get("/audit", params={"entity": "response", "entity_id": body["id"]}, headers=admin.headers).json()
    assert [e["action"] for e in events] == ["create"]
    # The same resource again is the same answer twice: refused as for REST (already answered).
    again = client.post(
        f"/participants/{p['id']}/fhir/QuestionnaireResponse",
        params={"wave": "baseline"},
        json=_qr("gad7", answers),
        headers=admin.headers,
    )
    assert again.status_code == 409


def test_bad_resources_are_422_naming_the_element(client, admin, make_study, enrol):
    study = make_study(waves=(("baseline", 0, 0, 14, ["phq9", "gad7"]),))
    p = enrol(study, site="north", enrolled_on="2026-01-05")
    url = f"/participants/{p['id']}/fhir/QuestionnaireResponse"
    post = lambda body: client.post(url, params={"wave": "baseline"}, json=body, headers=admin.headers)  # noqa: E731
    bad_status = dict(_qr("phq9", {"phq9_1": 1}), status="finished-ish")
    r = post(bad_status)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"][:2] == ["body", "status"]
    unknown = _qr("phq9", {"phq9_1": 1})
    unknown["item"][0]["linkId"] = "phq9_99"
    r = post(unknown)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "item", "0", "linkId"]
    out_of_range = _qr("phq9", {"phq9_1": 1})
    out_of_range["item"][0]["answer"] = [{"valueCoding": {"system": "http://loinc.org", "code": "LA0000-0"}}]
    r = post(out_of_range)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"][:3] == ["body", "item", "0"]
    r = post({"resourceType": "Patient"})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "resourceType"]
    # Scoring rules apply after parsing: a value that is not an option (a valueInteger of 7) names the item.
    seven = _qr("phq9", {"phq9_1": 1})
    seven["item"][0]["answer"] = [{"valueInteger": 7}]
    r = post(seven)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "answers", "phq9_1"]


def test_the_participant_bundle_validates_and_round_trips(client, admin, make_study, enrol):
    from instruments.fhir import from_fhir_questionnaire_response

    study = make_study(waves=(("baseline", 0, 0, 14, ["phq9", "hba1c"]),))
    p = enrol(study, site="north", enrolled_on="2026-01-05")
    phq = {f"phq9_{i}": i % 4 for i in range(1, 10)}
    for inst, answers in (("phq9", phq), ("hba1c", {"hba1c_pct": 7.0})):
        r = client.post(
            f"/participants/{p['id']}/responses",
            json={"wave": "baseline", "instrument": inst, "answers": answers},
            headers=admin.headers,
        )
        assert r.status_code == 201, r.text
    r = client.get(f"/participants/{p['id']}/fhir", headers=admin.headers)
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/fhir+json")
    bundle = r.json()
    Bundle.model_validate(bundle)
    kinds = [e["resource"]["resourceType"] for e in bundle["entry"]]
    assert kinds.count("QuestionnaireResponse") == 2 and "Observation" in kinds
    qr = next(e["resource"] for e in bundle["entry"] if e["resource"].get("questionnaire", "").find("phq9") >= 0)
    assert from_fhir_questionnaire_response(qr)[1] == phq
