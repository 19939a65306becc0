"""A seeded de-identification corpus: six interview transcripts from a peer-support study.

Identifiers are marked ``[[kind|surface]]``; decoys (everyday words that look like names) are
``[[decoy|Hope]]`` and clinical terms that must survive are ``[[keep|COPD]]``. :func:`load` strips
the markup and returns each transcript's text with its gold spans. All people, numbers and
addresses are invented; phone numbers come from Ofcom's drama ranges (07700 900xxx, 01632 960xxx, 0113/0161 496 0xxx)
and NHS numbers pass the modulus-11 check.

The study knows its own people and places, which reach de-identification as *terms*: the peer
supporter roster, staff user names, clinic (site) names and towns.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

#: Kinds whose every occurrence must go (the direct identifiers of the acceptance criteria).
DIRECT = {
    "participant_name",
    "nickname",
    "supporter_name",
    "staff_name",
    "phone",
    "email",
    "nhs_number",
    "mrn",
    "street_address",
    "postcode",
}

#: Study-known terms (roster, staff, sites and towns) as the service passes them.
TERMS = {
    "PERSON": ["Sandra Kowalski", "Desmond Afolabi", "Priya Raman", "Helen Marsh", "Callum Reid"],
    "ORG": ["Riverside Health Centre", "Millbrook Surgery", "Calder Valley Breathe Easy"],
    "PLACE": ["Halifax", "Todmorden", "Hebden Bridge", "Sowerby Bridge"],
}

_T1 = """\
Interviewer: Thanks for talking to me today. Could you start by telling me how you came to the group?
P01: Well, it was [[staff_name|Helen Marsh]], the nurse at [[clinic|Millbrook Surgery]], who put my name forward. \
I'd had the [[keep|diabetes]] nearly ten years and my [[keep|HbA1c]] was 71, so my [[keep|GP]] said try it.
Interviewer: And who did you meet first?
P01: [[supporter_name|Sandra]]. Well, [[nickname|Sandy]] she likes to be called. [[nickname|Sandy]] rang me on my \
mobile, [[phone|07700 900461]], and we met at the café on [[street_address|14 Wharf Street]] in \
[[town|Sowerby Bridge]]. [[decoy|Hope]] you don't mind me rambling.
Interviewer: Not at all. What did you talk about?
P01: Food, mostly. My husband [[other_name|Terry]] does the cooking and [[other_name|Terry]] likes his fry-ups. \
[[nickname|Sandy]] said bring him along, so [[other_name|Terry]] came twice. I felt less alone after that. \
[[decoy|Will]] power is not my strong point, I'll be honest.
Interviewer: How did the sessions fit around your week?
P01: I work mornings at [[other_org|Pennine Bakery]] so afternoons were best. [[supporter_name|Sandra Kowalski]] \
texted reminders. I had my review on [[date|3 March 2024]] and the [[keep|HbA1c]] was down to 58.
Interviewer: That's a big change.
P01: It is. My daughter [[other_name|Gloria]] put it on her Facebook, [[handle|@gloria_h_1987]], which was \
embarrassing. The letter from the hospital had my number on, [[nhs_number|943 476 5919]], and they wanted me \
to ring [[phone|01632 960123]] to book the eye check.
Interviewer: Is there anything you'd change about the group?
P01: More sessions in [[decoy|May]] and June when the weather's nice, we could walk by the canal. And \
[[supporter_name|Sandra]] deserves a medal. My email is [[email|bernie.hughes64@example.com]] if you want to \
send me the summary. I'm [[participant_name|Bernadette Hughes]], [[participant_name|Bernadette]] with two t's, \
[[postcode|HX6 2AB]] for the post.
Interviewer: Thank you, [[participant_name|Bernadette]].
"""

_T2 = """\
Interviewer: Can you tell me a bit about yourself first?
P02: I'm [[age|93]] this year, so I've seen a few things. I was a miner at [[other_org|Maltby Main]] before \
my chest went. It's the [[keep|COPD]] now, and the [[keep|inhalers]].
Interviewer: How did you hear about the Breathe Easy sessions?
P02: [[staff_name|Callum]] from [[clinic|Riverside Health Centre]] came to the house. [[staff_name|Callum Reid]], \
that is, the respiratory chap. My hospital number is [[mrn|RX1234567]], he wrote it on the form. The group \
is [[clinic|Calder Valley Breathe Easy]] and it meets in [[town|Todmorden]] on Tuesdays.
Interviewer: And your peer supporter?
P02: [[supporter_name|Desmond]]. [[supporter_name|Des]] is about my age near enough, he's [[age|91]]. \
[[supporter_name|Desmond Afolabi]] used to drive buses in [[town|Halifax]]. He gave me his number, \
[[phone|+44 7700 900732]], for when I'm low.
Interviewer: What difference has it made, if any?
P02: I go out more. My wife [[other_name|Morag]] passed in [[date|October 2021]] and I didn't leave the \
house for months. [[other_name|Morag]] would have liked [[supporter_name|Des]]. [[decoy|Grace]] before meals, \
that's what we had, and now I eat with the group on a Tuesday.
Interviewer: Any difficulties getting there?
P02: The bus from [[street_address|27 Burnley Road]] is hourly. My grandson [[other_name|Kieran]] sometimes \
takes me; he's at [[other_org|Calderdale College]]. You can write to me at [[street_address|27 Burnley Road]], \
[[town|Todmorden]], [[postcode|OL14 5LH]]. I don't do the email, [[other_name|Kieran]] does it for me.
Interviewer: Thank you. Is there anything else?
P02: Just that the [[keep|NHS]] should keep it going. And [[decoy|Mark]] my words, half of them would be in \
[[keep|A&E]] without it. My doctor, Dr [[other_name|Obi]], agrees. Oh, and I'm [[participant_name|Arthur Pennington]], \
put [[participant_name|Arthur]] on the certificate.
"""

_T3 = """\
Interviewer: Thanks for joining on the video call. Can you hear me all right?
P03: Yes, fine. I'm at my sister's in [[town|Hebden Bridge]] this week, [[street_address|Flat 2, 9 Market Street]].
Interviewer: Great. How long have you been in the programme?
P03: Since [[date|12/09/2023]]. [[supporter_name|Priya]] is my peer supporter. [[supporter_name|Priya Raman]]. \
She's brilliant, she found me the walking group on [[url|www.caldervalleywalks.org.uk]].
Interviewer: What have the sessions been like?
P03: Honestly, a lifeline. [[supporter_name|Priya]] and I message most days. I told her about my ex, \
[[other_name|Lionel]], and she didn't judge. My counsellor [[other_name|Ruth Oyelaran]] at [[other_org|Kirklees Mind]] \
says the same thing, that it's the not being judged.
Interviewer: Has anything been hard?
P03: Money. I'm on universal credit, my NI number is [[ni_number|QQ 12 34 56 C]] and the letters \
keep coming. [[decoy|Bath]] time with the kids is the only quiet half hour I get. My son [[other_name|Jaden]] \
has [[keep|asthma]] too, so I know the inhalers.
Interviewer: Any contact details you'd like us to use for the follow-up?
P03: Text [[phone|07700 900 118]] or email [[email|t.okonkwo@example.org]]. Not the landline, that's \
[[other_name|Lionel]]'s. I'm [[participant_name|Tobi Okonkwo]] on the register, though everyone says \
[[nickname|Tobs]]. My date of birth is [[date|17/05/1990]].
Interviewer: And how is your blood pressure now?
P03: [[keep|BP]] was 128 over 80 last time at [[clinic|Riverside Health Centre]]. [[staff_name|Helen]] took it. \
[[decoy|May]] I say one more thing? [[supporter_name|Priya]] should train others.
"""

_T4 = """\
Interviewer: Thank you for coming in. How are things?
P04: Not bad. I've brought my wife, [[other_name|Winifred]], she'll sit in if that's OK.
Interviewer: Of course. How did you start with the peer support?
P04: The practice sent a letter. [[clinic|Millbrook Surgery]], on [[street_address|88 Halifax Road]], \
[[postcode|HX3 9QP]]. [[supporter_name|Callum]]... no, sorry, [[supporter_name|Desmond]] was my supporter. \
[[supporter_name|Des Afolabi]]. [[staff_name|Callum Reid]] is the nurse.
Interviewer: What did you and [[supporter_name|Desmond]] work on?
P04: Walking, and my [[keep|insulin]]. I'd been diagnosed on [[date|21st January 2019]] with type 2 and went \
onto [[keep|metformin]] straight away. [[supporter_name|Desmond]] walked with me round [[other_place|Shibden Park]] \
every Thursday. [[other_name|Winifred]] came sometimes.
Interviewer: Did you use any apps or websites?
P04: The one [[supporter_name|Des]] showed me, [[url|https://walkfinder.example.org/routes?id=4471]]. And the \
[[keep|NHS]] app. My hospital number there is MRN [[mrn|40019921]], they asked for it on the form.
Interviewer: How have you found it overall?
P04: Good. [[decoy|Grace]] is what the vicar calls it, getting a second chance. I'm [[age|90]] next spring, \
you know, and I want to see my great-granddaughter [[other_name|Esme]] start school in [[town|Halifax]].
Interviewer: Is there anything you'd like to add?
P04: My son [[other_name|Bartholomew]] will ring if I forget the follow-up. His number's \
[[phone|(0161) 496 0455]]. And I'm [[participant_name|Wilfred Ashworth]], [[nickname|Wilf]] to friends, \
[[email|wilf.ashworth@example.net]] if you need me. NHS number [[nhs_number|401 023 2137]].
"""

_T5 = """\
Interviewer: Thanks for making time. How long have you been a member of the group?
P05: About a year. I joined in [[date|February 2023]] after [[staff_name|Helen Marsh]] mentioned it at \
[[clinic|Riverside Health Centre]]. Mrs [[staff_name|Marsh]] is lovely.
Interviewer: And your supporter?
P05: [[supporter_name|Sandra]], same as my neighbour [[other_name|Dorothea]]. [[supporter_name|Sandy Kowalski]] \
lives round the corner from us on [[street_address|3 Prospect Terrace]], [[town|Sowerby Bridge]].
Interviewer: What did you find most useful?
P05: Having someone who'd been through it. [[supporter_name|Sandy]] had her own [[keep|diabetes]] scare. \
My [[keep|HbA1c]] was 64 in [[date|April 2023]] and 52 by [[date|15 January 2024]]. [[decoy|Hope]] that's \
right, I'm going from memory.
Interviewer: Did you ever feel it wasn't for you?
P05: At first. My partner [[other_name|Fenella]] thought it was daft. [[other_name|Fenella]] works at \
[[other_org|Halifax Building Society]] and thinks everything's a sales pitch. [[decoy|Will]] she come round? \
Maybe.
Interviewer: How do you keep in touch with the group?
P05: WhatsApp, and the group's page, [[url|facebook.com/groups/calderbreatheeasy]]. You can email me on \
[[email|j.mcallister@example.co.uk]] or ring [[phone|0113 496 0782]]. I'm [[participant_name|Jean McAllister]].
Interviewer: Thank you, that's everything.
P05: My [[keep|GP]] at [[clinic|Millbrook Surgery]] has my NHS number, [[nhs_number|398 259 7919]] \
I think. [[decoy|Bath]] salts are my treat, by the way, after the long walks. [[nickname|Jeannie]] my mum called me.
"""

_T6 = """\
Interviewer: Thanks for agreeing to a second interview. Last time was [[date|9 November 2023]], wasn't it?
P06: That's right. I'm [[participant_name|Gwendolyn Pryce]], I'm still at [[street_address|51 Savile Park Road]], \
[[town|Halifax]], [[postcode|HX1 3EA]]. [[nickname|Gwen]]'s fine.
Interviewer: How have things been since then?
P06: Up and down. [[supporter_name|Priya]] moved on to the [[town|Todmorden]] group so I've got \
[[supporter_name|Sandra]] now. [[nickname|Sandy]] is different, more practical. She rang me from \
[[phone|07700 900 905]] every week.
Interviewer: What did you work on with her?
P06: Getting back to the pool at [[other_org|Northgate Leisure Centre]]. My friend [[other_name|Philippa Grundy]] \
swims there. [[other_name|Philippa]] and I used to go before my [[keep|heart failure]] diagnosis. \
[[other_name|Pip]], I call her. [[other_name|Philippa]]'s lovely.
Interviewer: Has your health changed?
P06: The [[keep|cardiologist]] at [[other_org|Calderdale Royal Hospital]] says it's stable. The clinic number \
was [[mrn|CRH-0044917]], on the letter dated [[date|28/02/2024]]. My [[keep|BMI]] is down a bit too.
Interviewer: Anything online that helped?
P06: I follow a lady on Instagram, [[handle|@cardiac_rehab_rosie]], and the British Heart site. I wrote to \
[[email|gwen.pryce@example.com]]... no, that's mine. I wrote to the charity's address.
Interviewer: How about your family?
P06: My mother's [[age|96]], she lives with us, and my brother [[other_name|Cedric]] comes up from \
[[other_place|Stroud]] at weekends. [[other_name|Cedric Pryce]] is a retired vicar. [[decoy|Mark]] you, he's \
no saint. [[decoy|Grace]] is needed with him.
Interviewer: And the peer support overall?
P06: I'd give it ten out of ten. [[staff_name|Helen Marsh]] asked me to be a supporter myself. Ring me on \
[[phone|0161 496 0388]] if you need more. Or [[staff_name|Helen]] has the details.
Interviewer: Where should we send the voucher?
P06: To Mrs [[participant_name|Pryce]], [[street_address|51 Savile Park Road]], [[postcode|HX1 3EA]]. \
[[other_name|Cedric]] will pick it up if I'm out.
"""

#: The vault entry of each transcript's participant (name, email, phone) as the service passes it.
VAULTS = {
    "P01": {"names": ["Bernadette Hughes"], "emails": ["bernie.hughes64@example.com"], "phones": ["07700 900461"]},
    "P02": {"names": ["Arthur Pennington"], "emails": [], "phones": ["01632 960199"]},
    "P03": {"names": ["Tobi Okonkwo"], "emails": ["t.okonkwo@example.org"], "phones": ["07700900118"]},
    "P04": {"names": ["Wilfred Ashworth"], "emails": ["wilf.ashworth@example.net"], "phones": []},
    "P05": {"names": ["Jean McAllister"], "emails": ["j.mcallister@example.co.uk"], "phones": ["0113 496 0782"]},
    "P06": {"names": ["Gwendolyn Pryce"], "emails": ["gwen.pryce@example.com"], "phones": ["0161 496 0388"]},
}

RAW = {"P01": _T1, "P02": _T2, "P03": _T3, "P04": _T4, "P05": _T5, "P06": _T6}

_MARK = re.compile(r"\[\[([a-z_0-9]+)\|(.+?)\]\]", re.S)


@dataclass
class Seeded:
    code: str
    text: str
    gold: list[tuple[int, int, str]]  # identifiers: (start, end, kind)
    decoys: list[tuple[int, int, str]]
    keep: list[tuple[int, int, str]]


def parse(raw: str, code: str) -> Seeded:
    out, gold, decoys, keep, pos = [], [], [], [], 0
    for m in _MARK.finditer(raw):
        out.append(raw[pos : m.start()])
        start = sum(map(len, out))
        kind, surface = m.group(1), m.group(2)
        out.append(surface)
        span = (start, start + len(surface), kind)
        if kind == "decoy":
            decoys.append(span)
        elif kind == "keep":
            keep.append(span)
        else:
            gold.append(span)
        pos = m.end()
    out.append(raw[pos:])
    return Seeded(code, "".join(out), gold, decoys, keep)


def load() -> list[Seeded]:
    return [parse(raw, code) for code, raw in RAW.items()]
