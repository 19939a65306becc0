"""FHIR Questionnaire / QuestionnaireResponse export."""


def to_fhir_questionnaire(instrument):
    raise NotImplementedError


def to_fhir_questionnaire_response(instrument, answers, scores, *, identifier, subject, authored, status="completed"):
    raise NotImplementedError
