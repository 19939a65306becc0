"""Pattern detectors for de-identification: phones, ID numbers, addresses, postcodes, URLs, ages.

Each detector returns ``(start, end, type, key)`` tuples over the original text; ``key`` makes
repeated mentions of one identifier share a placeholder. Phones come from Google's
``libphonenumber`` (the ``phonenumbers`` package), which knows every country's numbering plan;
the rest are patterns for identifiers with a fixed shape (HIPAA Safe Harbor's list read for UK
care: NHS and hospital numbers, National Insurance numbers, postcodes, street addresses, URLs,
social-media handles and ages over 89).
"""

from __future__ import annotations

import re

import phonenumbers

__all__ = ["detect_patterns", "nhs_number_valid", "PATTERN_TYPES"]

PATTERN_TYPES = ("PHONE", "ID", "ADDRESS", "POSTCODE", "URL", "HANDLE", "AGE")

Hit = tuple[int, int, str, str]


def _digits(s: str) -> str:
    return re.sub(r"\D", "", s)


def nhs_number_valid(number: str) -> bool:
    """Modulus-11 check digit of an NHS number (NHS Data Dictionary).

    >>> nhs_number_valid("943 476 5919"), nhs_number_valid("943 476 5918")
    (True, False)
    """
    d = _digits(number)
    if len(d) != 10:
        return False
    check = 11 - sum(int(c) * w for c, w in zip(d[:9], range(10, 1, -1), strict=True)) % 11
    check = 0 if check == 11 else check
    return check != 10 and check == int(d[9])


_NHS_RE = re.compile(r"(?<![\w])\d{3}[ -]?\d{3}[ -]?\d{4}(?![\w])")
# Hospital, clinic and record numbers: letters and at least five digits in one token, or a
# labelled number ("hospital number 40019921", "MRN: 12345").
_ALNUM_ID_RE = re.compile(r"(?<![\w@/.-])(?=[A-Za-z0-9-]*\d{5})(?=[A-Za-z0-9-]*[A-Za-z])[A-Za-z0-9]+(?:-[A-Za-z0-9]+)*")
_LABELLED_ID_RE = re.compile(
    r"\b(?i:MRN|hospital\s+(?:number|no\.?)|patient\s+(?:number|no\.?|id)|record\s+(?:number|no\.?)|"
    r"clinic\s+(?:number|no\.?)|case\s+(?:number|no\.?)|NHS\s+(?:number|no\.?))"
    r"[\s:#]*(?i:is\s+|was\s+|there\s+is\s+)?(?:MRN[\s:#]*)?(?P<id>(?:[A-Z]{1,4}-?)?\d[\d -]{2,16}\d)(?![\w])"
)
_LONG_NUMBER_RE = re.compile(r"(?<![\w.,])\d{6,}(?![\w.,]\d)")
_NI_RE = re.compile(r"\b[A-Z]{2} ?\d{2} ?\d{2} ?\d{2} ?[A-D]\b")
_POSTCODE_RE = re.compile(r"\b(?:[A-Z]{1,2}\d[A-Z\d]?|GIR) ?\d[A-Z]{2}\b")
_STREET_WORDS = (
    "Road|Rd|Street|St|Lane|Ln|Avenue|Ave|Close|Drive|Dr|Crescent|Way|Terrace|Gardens|Place|Court|Grove|"
    "Hill|Row|Walk|Square|Parade|View|Mews|Park|Rise|Green|Bank|Fold|Gate|Croft|Boulevard|Blvd|Wharf|Yard"
)
_STREET_RE = re.compile(
    r"(?:\b(?:Flat|Apartment|Apt|Unit)\s+\d+[A-Za-z]?,?\s+)?"
    r"\b\d{1,4}[A-Za-z]?,?\s+(?:[A-Z][\w'’-]+\s+){1,3}(?:" + _STREET_WORDS + r")\b"
)
_URL_RE = re.compile(
    r"(?i)\b(?:https?://|www\.)[^\s<>\"]+|"
    r"\b(?:[a-z0-9-]+\.)+(?:com|org|net|uk|io|info|eu|gov|ac|nhs|co)(?:\.[a-z]{2,3})?/[^\s<>\"]*|"
    r"\b(?:[a-z0-9-]+\.)+(?:co\.uk|org\.uk|nhs\.uk|gov\.uk|ac\.uk|com|org|net|io)\b(?![@\w])"
)
_HANDLE_RE = re.compile(r"(?<![\w.@])@[A-Za-z0-9_](?:[A-Za-z0-9_.]{0,28}[A-Za-z0-9_])?")
_AGE_NUM = r"(?:9\d|1[01]\d)"
_AGE_WORDS = r"(?:ninety(?:[- ](?:one|two|three|four|five|six|seven|eight|nine))?|a hundred(?: and \w+)?|one hundred)"
_AGE_BEFORE = re.compile(
    r"(?i)(?:\b(?:aged?|I'm|I am|I’m|he is|she is|turned|turning|reached|be)|\w(?:'s|’s))\s+"
    rf"(?P<age>{_AGE_NUM}|{_AGE_WORDS})\b(?!\s*(?:%|per|mmol|mg|kg|minutes|mins|pounds|quid|p\b))"
)
_AGE_AFTER = re.compile(rf"(?i)\b(?P<age>{_AGE_NUM}|{_AGE_WORDS})(?=[- ](?:years?|yrs?)[- ]old\b|-year-old)")
_TRAILING = ".,;:!?)]}'\"’”"


def _phones(text: str) -> list[Hit]:
    out: list[Hit] = []
    for m in phonenumbers.PhoneNumberMatcher(text, "GB", leniency=phonenumbers.Leniency.POSSIBLE):
        if len(_digits(m.raw_string)) < 9:  # years, doses and short codes are not phone numbers
            continue
        number = m.number
        key = "phone:" + str(number.national_number)[-9:]
        out.append((m.start, m.end, "PHONE", key))
    return out


def detect_patterns(text: str) -> list[Hit]:
    """Every pattern-shaped identifier in ``text`` (overlaps are resolved by the caller: longest wins).

    >>> text = "Ring 07700 900461 or see HX6 2AB."
    >>> sorted((text[s:e], t) for s, e, t, _ in detect_patterns(text))
    [('07700 900461', 'PHONE'), ('900461', 'ID'), ('HX6 2AB', 'POSTCODE')]
    """
    hits: list[Hit] = []
    nhs_spans = set()
    for m in _NHS_RE.finditer(text):
        if nhs_number_valid(m.group()):
            nhs_spans.add(m.span())
            hits.append((m.start(), m.end(), "ID", "id:" + _digits(m.group())))
    hits += [h for h in _phones(text) if (h[0], h[1]) not in nhs_spans]
    for m in _LABELLED_ID_RE.finditer(text):
        value = m.group("id").strip()
        s = m.start("id")
        hits.append((s, s + len(value), "ID", "id:" + re.sub(r"\W", "", value).lower()))
    for rx in (_ALNUM_ID_RE, _NI_RE):
        for m in rx.finditer(text):
            if rx is _ALNUM_ID_RE and _POSTCODE_RE.fullmatch(m.group()):
                continue
            hits.append((m.start(), m.end(), "ID", "id:" + re.sub(r"\W", "", m.group()).lower()))
    for m in _LONG_NUMBER_RE.finditer(text):
        hits.append((m.start(), m.end(), "ID", "id:" + m.group()))
    for m in _POSTCODE_RE.finditer(text):
        hits.append((m.start(), m.end(), "POSTCODE", "postcode:" + m.group().replace(" ", "").upper()))
    for m in _STREET_RE.finditer(text):
        hits.append((m.start(), m.end(), "ADDRESS", "address:" + re.sub(r"\W+", " ", m.group()).lower().strip()))
    for m in _URL_RE.finditer(text):
        end = m.end()
        while end > m.start() and text[end - 1] in _TRAILING:
            end -= 1
        hits.append((m.start(), end, "URL", "url:" + text[m.start() : end].lower()))
    for m in _HANDLE_RE.finditer(text):
        hits.append((m.start(), m.end(), "HANDLE", "handle:" + m.group().lower()))
    for rx in (_AGE_BEFORE, _AGE_AFTER):
        for m in rx.finditer(text):
            hits.append((m.start("age"), m.end("age"), "AGE", "age:" + m.group("age").lower()))
    return hits
