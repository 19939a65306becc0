from pathlib import Path

import pytest

import instruments
from instruments import Instrument, InstrumentError

DATA = Path(__file__).parent / "data" / "redcap_dictionary.csv"


@pytest.fixture(scope="module")
def imported():
    return instruments.from_redcap_dictionary(DATA)


def test_one_instrument_per_form(imported):
    insts, _ = imported
    assert [i.code for i in insts] == ["peer_contact_log", "peer_supporter_profile"]
    assert all(isinstance(i, Instrument) for i in insts)


def test_field_mapping(imported):
    log = imported[0][0]
    assert [i.code for i in log.items] == [
        "contact_date",
        "contact_mode",
        "contact_minutes",
        "topics___1",
        "topics___2",
        "topics___3",
        "topics____99",
        "topic_other",
        "helpful",
        "satisfaction",
        "mood_slider",
        "supporter_name",
    ]
    assert log.item("contact_date").kind == "date" and log.item("contact_date").required
    mode = log.item("contact_mode")
    assert mode.kind == "choice" and [(o.code, o.label) for o in mode.options] == [
        (1, "In person"),
        (2, "Phone"),
        (3, "Video"),
        (4, "Text message"),
    ]
    minutes = log.item("contact_minutes")
    assert (minutes.kind, minutes.min, minutes.max) == ("integer", 0, 600)
    assert [o.code for o in log.item("topics____99").options] == [0, 1]
    assert log.item("topic_other").kind == "text" and "topics(-99)" in log.item("topic_other").notes
    assert [(o.code, o.label) for o in log.item("helpful").options] == [(1, "Yes"), (0, "No")]
    assert (log.item("mood_slider").kind, log.item("mood_slider").max) == ("integer", 100)
    assert log.item("supporter_name").identifier and not log.item("contact_mode").identifier
    profile = imported[0][1]
    assert [i.code for i in profile.items if i.identifier] == ["ps_name", "ps_email"]
    assert [(o.code, o.label) for o in profile.item("ps_trained").options] == [(1, "True"), (0, "False")]


def test_report_lists_what_was_not_represented(imported):
    report = {(p.loc, p.rule) for p in imported[1]}
    assert report == {
        ("record_id", "record_id"),
        ("contact_mode", "section_header_dropped"),
        ("topics", "checkbox_expanded"),
        ("topic_other", "branching_logic_not_enforced"),
        ("mood_slider", "slider_labels_kept"),
        ("total_score", "action_tags_ignored"),
        ("total_score", "unsupported_field_type"),
        ("instructions_note", "unsupported_field_type"),
        ("ps_site", "text_coded_choice"),
        ("ps_cv", "unsupported_field_type"),
    }


def test_imported_instrument_validates_answers_and_registers(imported):
    log = imported[0][0]
    probs = instruments.validate(
        log, {"contact_mode": 9, "contact_minutes": 601, "topic_other": "x", "contact_date": "2026-01-02"}
    )
    assert {(p.loc, p.rule) for p in probs} == {("contact_mode", "not_an_option"), ("contact_minutes", "out_of_range")}
    instruments.register(log)
    try:
        assert instruments.get("peer_contact_log") is log
        with pytest.raises(InstrumentError):
            instruments.register(log)
    finally:
        instruments.unregister("peer_contact_log")


def test_text_and_file_like_sources():
    text = DATA.read_text()
    import io

    a, _ = instruments.from_redcap_dictionary(text)
    b, _ = instruments.from_redcap_dictionary(io.StringIO(text))
    assert [i.code for i in a] == [i.code for i in b] == ["peer_contact_log", "peer_supporter_profile"]


def test_not_a_dictionary():
    with pytest.raises(InstrumentError):
        instruments.from_redcap_dictionary("a,b,c\n1,2,3\n")


def test_builtin_codes_cannot_be_hijacked():
    inst, _ = instruments.from_redcap_dictionary(
        "Variable / Field Name,Form Name,Field Type,Field Label,Choices\nrid,phq9,text,ID,\nq,phq9,yesno,Q,\n"
    )
    with pytest.raises(InstrumentError):
        instruments.register(inst[0], replace=True)
