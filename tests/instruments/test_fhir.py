import datetime as dt

import pytest
from fhir.resources.questionnaire import Questionnaire as QuestionnaireR5
from fhir.resources.questionnaireresponse import QuestionnaireResponse as ResponseR5
from fhir.resources.R4B.questionnaire import Questionnaire as QuestionnaireR4B
from fhir.resources.R4B.questionnaireresponse import QuestionnaireResponse as ResponseR4B

import instruments


@pytest.mark.parametrize("code", instruments.codes())
def test_questionnaire_parses_under_r4b_and_r5(code):
    q = instruments.to_fhir_questionnaire(code)
    for cls in (QuestionnaireR4B, QuestionnaireR5):
        parsed = cls.model_validate(q)
        assert parsed.item[0].linkId == instruments.get(code).items[0].code


def test_phq9_questionnaire_uses_loinc_answer_codes():
    q = instruments.to_fhir_questionnaire("phq9")
    codes = [o["valueCoding"]["code"] for o in q["item"][0]["answerOption"]]
    assert codes == ["LA6568-5", "LA6569-3", "LA6570-1", "LA6571-9"]
    assert q["code"][0]["code"] == "44249-1"
    gad = instruments.to_fhir_questionnaire("gad7")
    assert gad["item"][0]["code"][0]["code"] == "69725-0"


def test_pam13_questionnaire_has_no_wording():
    q = instruments.to_fhir_questionnaire("pam13")
    assert q["item"][0]["text"] == "PAM item 1"


@pytest.mark.parametrize("version,cls", [("R4B", ResponseR4B), ("R5", ResponseR5)])
def test_questionnaire_response(version, cls):
    answers = {**{f"phq9_{i}": 1 for i in range(1, 9)}, "phq9_9": None, "phq9_10": 2}
    scores = instruments.score("phq9", answers)
    qr = instruments.to_fhir_questionnaire_response(
        "phq9",
        answers,
        scores,
        identifier="S1/P001/m6/phq9/1",
        subject="ResearchSubject/P001",
        authored=dt.datetime(2026, 11, 24, 10, 15),
        fhir_version=version,
    )
    parsed = cls.model_validate(qr)
    assert parsed.status == "completed"
    link_ids = [i.linkId for i in parsed.item]
    assert "phq9_9" not in link_ids and link_ids[-1] == "scores"
    assert parsed.item[0].answer[0].valueCoding.code == "LA6569-3"
    assert parsed.item[-1].item[0].answer[0].valueDecimal == 9  # 8 answered, sum 8 -> 8 / 8 * 9
    assert qr["authored"] == "2026-11-24T10:15:00+00:00"


def test_questionnaire_response_for_custom_kinds():
    insts, _ = instruments.from_redcap_dictionary(
        "Variable / Field Name,Form Name,Field Type,Field Label,Choices,Text Validation Type OR Show Slider Number\n"
        "rid,visit,text,ID,,\nwhen,visit,text,When,,date_ymd\nmins,visit,text,Minutes,,integer\n"
        "note,visit,notes,Note,,\n"
    )
    inst = insts[0]
    qr = instruments.to_fhir_questionnaire_response(
        inst,
        {"when": "2026-01-02", "mins": 30, "note": "ok"},
        [],
        identifier="x",
        subject="ResearchSubject/P1",
        authored="2026-01-02T09:00:00Z",
    )
    parsed = ResponseR4B.model_validate(qr)
    assert [i.answer[0].valueInteger for i in parsed.item if i.linkId == "mins"] == [30]
    QuestionnaireR4B.model_validate(instruments.to_fhir_questionnaire(inst))
