"""Transcripts: one text, its speaker turns and their character offsets.

Every parser returns a :class:`Transcript` whose ``text`` is the string that
codings, search hits and REFI-QDA positions refer to. Turn offsets point at the
utterance itself (the ``"P01: "`` label before it is not part of the turn), so a
coder who selects a whole turn never codes the speaker label.

Supported inputs: plain text, Markdown (with optional YAML front matter),
WebVTT, SubRip (SRT) and Word (.docx, via python-docx).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

__all__ = [
    "Turn",
    "Transcript",
    "DEFAULT_INTERVIEWER_LABELS",
    "parse_text",
    "parse_markdown",
    "parse_vtt",
    "parse_srt",
    "parse_docx",
    "load_transcript",
    "paragraph_spans",
]

#: Speaker labels read as the interviewer / facilitator unless told otherwise.
DEFAULT_INTERVIEWER_LABELS = frozenset({"interviewer", "int", "i", "iv", "facilitator", "moderator", "researcher", "q"})


@dataclass(frozen=True)
class Turn:
    """One speaker turn.

    ``start``/``end`` are character offsets into ``Transcript.text`` (end
    exclusive); ``start_time``/``end_time`` are seconds from the start of the
    recording when the source carried timestamps.
    """

    speaker: str
    start: int
    end: int
    start_time: float | None = None
    end_time: float | None = None
    role: str = "participant"  # "interviewer" or "participant"


@dataclass
class Transcript:
    """An interview or focus-group transcript.

    Parameters
    ----------
    id : str
        Stable identifier (file stem by default).
    text : str
        The text every offset refers to.
    turns : list of Turn
        Speaker turns, in order, non-overlapping.
    participant : str, optional
        Study code of the interviewee (individual interviews).
    wave : str, optional
        Wave code (e.g. ``"w1"``).
    participants : list of str
        Every participant speaking (focus groups); for an individual interview
        this is ``[participant]``.
    kind : {"interview", "focus_group"}
    source_format : str
        ``"text"``, ``"markdown"``, ``"vtt"``, ``"srt"`` or ``"docx"``.
    metadata : dict
        Anything else (front matter, site, interviewer name ...).

    Examples
    --------
    >>> t = parse_text("Interviewer: How was it?\\nP01: Good.", id="p01-w1")
    >>> [(u.speaker, t.text[u.start:u.end]) for u in t.turns]
    [('Interviewer', 'How was it?'), ('P01', 'Good.')]
    """

    id: str
    text: str
    turns: list[Turn] = field(default_factory=list)
    participant: str | None = None
    wave: str | None = None
    participants: list[str] = field(default_factory=list)
    kind: str = "interview"
    source_format: str = "text"
    metadata: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.participants:
            if self.participant:
                self.participants = [self.participant]
            else:
                self.participants = sorted({t.speaker for t in self.turns if t.role == "participant"})
        if self.kind == "interview" and len(self.participants) > 1 and not self.participant:
            self.kind = "focus_group"

    def speaker_at(self, offset: int) -> str | None:
        """Speaker of the turn containing ``offset`` (``None`` between turns)."""
        for t in self.turns:
            if t.start <= offset < t.end:
                return t.speaker
        return None

    def turn_index_at(self, offset: int) -> int | None:
        for i, t in enumerate(self.turns):
            if t.start <= offset < t.end:
                return i
        return None

    def turn_text(self, i: int) -> str:
        t = self.turns[i]
        return self.text[t.start : t.end]

    def with_text(self, text: str, turns: Sequence[Turn]) -> Transcript:
        """A copy carrying another text (e.g. the de-identified one)."""
        return replace(self, text=text, turns=list(turns))


# --------------------------------------------------------------------------- helpers

_LABEL_RE = re.compile(
    r"""^[ \t]*
        (?:\[(?P<ts>\d{1,2}:\d{2}(?::\d{2})?(?:[.,]\d{1,3})?)\][ \t]*)?   # optional [hh:mm:ss]
        (?P<label>[A-Za-z][\w.'\- ]{0,30}?)                              # speaker label
        [ \t]*:[ \t]+
        (?P<body>\S.*)$""",
    re.VERBOSE,
)
_TIME_RE = re.compile(r"(?:(\d+):)?(\d{1,2}):(\d{2})(?:[.,](\d{1,3}))?")


def _seconds(stamp: str) -> float:
    m = _TIME_RE.fullmatch(stamp.strip())
    if not m:
        raise ValueError(f"not a timestamp: {stamp!r}")
    h, mnt, s, frac = m.groups()
    value = int(h or 0) * 3600 + int(mnt) * 60 + int(s)
    if frac:
        value += int(frac.ljust(3, "0")) / 1000
    return float(value)


def _role(label: str, interviewer_labels: Iterable[str]) -> str:
    labels = {x.lower() for x in interviewer_labels}
    return "interviewer" if label.strip().lower() in labels else "participant"


def _looks_like_label(label: str, known: set[str] | None) -> bool:
    # Prose such as "The answer was: yes" must not open a turn: labels are short
    # and either known, or look like study codes / names (no more than 3 words).
    label = label.strip()
    if known is not None:
        return label.lower() in known
    return len(label.split()) <= 3 and not label.lower().startswith(("the ", "and ", "but "))


def _normalise_newlines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


def paragraph_spans(text: str) -> list[tuple[int, int]]:
    """Character spans of the non-empty lines of ``text``.

    A *paragraph* in Peerlens is one non-empty line (trailing blanks trimmed);
    it is the unit used by paragraph-level agreement and by auto-coding.

    Examples
    --------
    >>> paragraph_spans("a b\\n\\n c\\n")
    [(0, 3), (6, 7)]
    """
    spans = []
    pos = 0
    for line in text.split("\n"):
        stripped = line.rstrip()
        lead = len(stripped) - len(stripped.lstrip())
        if stripped.strip():
            spans.append((pos + lead, pos + len(stripped)))
        pos += len(line) + 1
    return spans


def _turns_from_lines(
    text: str,
    interviewer_labels: Iterable[str],
    speakers: Iterable[str] | None,
) -> list[Turn]:
    known = {s.lower() for s in speakers} if speakers is not None else None
    if known is not None:
        known |= {x.lower() for x in interviewer_labels}
    turns: list[dict] = []
    pos = 0
    for line in text.split("\n"):
        m = _LABEL_RE.match(line)
        if m and _looks_like_label(m.group("label"), known):
            label = m.group("label").strip()
            ts = m.group("ts")
            turns.append(
                {
                    "speaker": label,
                    "start": pos + m.start("body"),
                    "end": pos + len(line.rstrip()),
                    "start_time": _seconds(ts) if ts else None,
                }
            )
        elif turns and line.strip():
            turns[-1]["end"] = pos + len(line.rstrip())
        pos += len(line) + 1
    out = []
    for i, t in enumerate(turns):
        nxt = turns[i + 1]["start_time"] if i + 1 < len(turns) else None
        out.append(
            Turn(
                speaker=t["speaker"],
                start=t["start"],
                end=t["end"],
                start_time=t["start_time"],
                end_time=nxt if t["start_time"] is not None else None,
                role=_role(t["speaker"], interviewer_labels),
            )
        )
    return out


def _transcript_from_turn_texts(
    items: Sequence[tuple[str, str, float | None, float | None]],
    interviewer_labels: Iterable[str],
    **meta,
) -> Transcript:
    """Build canonical text ``"Speaker: utterance"`` per line from parsed turns."""
    parts: list[str] = []
    turns: list[Turn] = []
    pos = 0
    for speaker, body, t0, t1 in items:
        prefix = f"{speaker}: " if speaker else ""
        line = prefix + body
        turns.append(
            Turn(
                speaker=speaker or "",
                start=pos + len(prefix),
                end=pos + len(line),
                start_time=t0,
                end_time=t1,
                role=_role(speaker or "", interviewer_labels),
            )
        )
        parts.append(line)
        pos += len(line) + 1
    return Transcript(text="\n".join(parts), turns=turns, **meta)


# --------------------------------------------------------------------------- parsers


def parse_text(
    text: str,
    id: str = "transcript",
    *,
    participant: str | None = None,
    wave: str | None = None,
    interviewer_labels: Iterable[str] = DEFAULT_INTERVIEWER_LABELS,
    speakers: Iterable[str] | None = None,
    kind: str | None = None,
    metadata: dict | None = None,
    source_format: str = "text",
) -> Transcript:
    """Parse a plain-text transcript with ``"Label: utterance"`` lines.

    Lines without a label continue the current turn. A line may start with a
    ``[hh:mm:ss]`` timestamp. The text is kept as given (newlines normalised to
    ``\\n``), so offsets match the file.

    Parameters
    ----------
    speakers : iterable of str, optional
        Accept only these labels (plus the interviewer labels) as speakers;
        by default any short label before a colon opens a turn.

    Examples
    --------
    >>> t = parse_text("Interviewer: Hello\\nP01: Hi there\\nand more", participant="P01")
    >>> t.turn_text(1)
    'Hi there\\nand more'
    """
    text = _normalise_newlines(text)
    turns = _turns_from_lines(text, interviewer_labels, speakers)
    return Transcript(
        id=id,
        text=text,
        turns=turns,
        participant=participant,
        wave=wave,
        kind=kind or "interview",
        source_format=source_format,
        metadata=dict(metadata or {}),
    )


_FRONT_MATTER_RE = re.compile(r"\A---\n(.*?)\n---\n", re.DOTALL)


def _strip_markdown(line: str) -> str:
    line = re.sub(r"^\s{0,3}#{1,6}\s+", "", line)  # headings
    line = re.sub(r"^\s{0,3}>\s?", "", line)  # block quotes
    line = re.sub(r"^\s{0,3}(?:[-*+]|\d+[.)])\s+", "", line)  # list markers
    line = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", line)  # links/images -> label
    line = re.sub(r"(\*\*|__)(.+?)\1", r"\2", line)  # bold
    line = re.sub(r"(?<![\w*])([*_])(?!\s)(.+?)(?<!\s)\1(?![\w*])", r"\2", line)  # italics
    line = re.sub(r"`([^`]*)`", r"\1", line)
    return line


def parse_markdown(
    text: str,
    id: str = "transcript",
    *,
    participant: str | None = None,
    wave: str | None = None,
    interviewer_labels: Iterable[str] = DEFAULT_INTERVIEWER_LABELS,
    speakers: Iterable[str] | None = None,
    kind: str | None = None,
) -> Transcript:
    """Parse a Markdown transcript.

    Markup (headings, emphasis, list markers, links) is removed so that codes and
    offsets refer to readable text; ``**P01:** text`` opens a turn like
    ``P01: text``. YAML front matter (``participant``, ``wave``, ``kind`` and any
    other key) fills the transcript's fields and ``metadata``.

    Examples
    --------
    >>> md = "---\\nparticipant: P07\\nwave: w2\\n---\\n# Interview\\n**Interviewer:** Hi\\n**P07:** *Fine*"
    >>> t = parse_markdown(md)
    >>> t.participant, t.wave, t.turn_text(1)
    ('P07', 'w2', 'Fine')
    """
    text = _normalise_newlines(text)
    meta: dict = {}
    fm = _FRONT_MATTER_RE.match(text)
    if fm:
        import yaml

        loaded = yaml.safe_load(fm.group(1)) or {}
        if isinstance(loaded, dict):
            meta = {str(k): v for k, v in loaded.items()}
        text = text[fm.end() :]
    plain = "\n".join(_strip_markdown(line) for line in text.split("\n")).strip("\n")
    participant = participant or (str(meta.pop("participant")) if "participant" in meta else None)
    wave = wave or (str(meta.pop("wave")) if "wave" in meta else None)
    kind = kind or meta.pop("kind", None)
    id = str(meta.pop("id", id))
    return parse_text(
        plain,
        id=id,
        participant=participant,
        wave=wave,
        interviewer_labels=interviewer_labels,
        speakers=speakers,
        kind=kind,
        metadata=meta,
        source_format="markdown",
    )


_CUE_TIME_RE = re.compile(
    r"^\s*(?P<a>(?:\d+:)?\d{1,2}:\d{2}[.,]\d{1,3})\s*-->\s*(?P<b>(?:\d+:)?\d{1,2}:\d{2}[.,]\d{1,3})"
)
_VOICE_RE = re.compile(r"<v(?:\.[\w.]+)?\s+([^>]+)>")
_TAG_RE = re.compile(r"</?[^>]+>")
_BRACKET_SPEAKER_RE = re.compile(r"^\s*\[([^\]]{1,40})\]\s*(.*)$")


def _cue_speaker_and_text(lines: list[str]) -> tuple[str | None, str]:
    raw = " ".join(line.strip() for line in lines if line.strip())
    speaker = None
    m = _VOICE_RE.search(raw)
    if m:
        speaker = m.group(1).strip()
    body = _TAG_RE.sub("", raw).strip()
    if speaker is None:
        m2 = re.match(r"^(?:-\s*)?([A-Za-z][\w.'\- ]{0,30}?)\s*:\s+(.*)$", body)
        m3 = _BRACKET_SPEAKER_RE.match(body)
        if m2 and len(m2.group(1).split()) <= 3:
            speaker, body = m2.group(1).strip(), m2.group(2).strip()
        elif m3:
            speaker, body = m3.group(1).strip(), m3.group(2).strip()
    return speaker, re.sub(r"\s+", " ", body)


def _merge_cues(
    cues: list[tuple[str | None, str, float, float]], merge: bool
) -> list[tuple[str, str, float | None, float | None]]:
    out: list[list] = []
    for speaker, body, t0, t1 in cues:
        if not body:
            continue
        if speaker is None and out:
            speaker = out[-1][0]  # a cue without a voice continues the last speaker
        speaker = speaker or "Speaker"
        if merge and out and out[-1][0] == speaker:
            out[-1][1] += " " + body
            out[-1][3] = t1
        else:
            out.append([speaker, body, t0, t1])
    return [tuple(x) for x in out]


def _read_cue_blocks(text: str) -> list[list[str]]:
    return [b.split("\n") for b in re.split(r"\n[ \t]*\n", _normalise_newlines(text).strip()) if b.strip()]


def _timed_cues(blocks) -> list[tuple[str | None, str, float, float]]:
    """(speaker, text, start, end) of every block holding a ``start --> end`` line (VTT and SRT)."""
    cues = []
    for block in blocks:
        idx = next((i for i, line in enumerate(block) if _CUE_TIME_RE.match(line)), None)
        if idx is None:
            continue
        m = _CUE_TIME_RE.match(block[idx])
        speaker, body = _cue_speaker_and_text(block[idx + 1 :])
        cues.append((speaker, body, _seconds(m.group("a")), _seconds(m.group("b"))))
    return cues


def parse_vtt(
    text: str,
    id: str = "transcript",
    *,
    participant: str | None = None,
    wave: str | None = None,
    interviewer_labels: Iterable[str] = DEFAULT_INTERVIEWER_LABELS,
    merge_consecutive: bool = True,
    kind: str | None = None,
) -> Transcript:
    """Parse a WebVTT caption file.

    Speakers come from ``<v Name>`` voice spans, else from a ``Name:`` prefix.
    Consecutive cues of one speaker become one turn (``merge_consecutive``),
    spanning the first cue's start time to the last cue's end time. The text is
    rebuilt as one ``"Speaker: utterance"`` line per turn.

    Examples
    --------
    >>> vtt = ("WEBVTT\\n\\n00:00:01.000 --> 00:00:03.500\\n<v Interviewer>How are you?\\n\\n"
    ...        "00:00:04.000 --> 00:00:06.000\\n<v P02>Better.")
    >>> t = parse_vtt(vtt)
    >>> t.text.splitlines()[1], t.turns[1].start_time
    ('P02: Better.', 4.0)
    """
    blocks = _read_cue_blocks(text)
    if not blocks or not blocks[0][0].lstrip("\ufeff").startswith("WEBVTT"):
        raise ValueError("not a WebVTT file: the first line must be 'WEBVTT'")
    cues = _timed_cues(b for b in blocks[1:] if not b[0].startswith(("NOTE", "STYLE", "REGION")))
    items = _merge_cues(cues, merge_consecutive)
    return _transcript_from_turn_texts(
        items,
        interviewer_labels,
        id=id,
        participant=participant,
        wave=wave,
        kind=kind or "interview",
        source_format="vtt",
    )


def parse_srt(
    text: str,
    id: str = "transcript",
    *,
    participant: str | None = None,
    wave: str | None = None,
    interviewer_labels: Iterable[str] = DEFAULT_INTERVIEWER_LABELS,
    merge_consecutive: bool = True,
    kind: str | None = None,
) -> Transcript:
    """Parse a SubRip (.srt) subtitle file.

    Each block is an index, a ``hh:mm:ss,mmm --> hh:mm:ss,mmm`` line and text;
    speakers come from a ``Name:`` or ``[Name]`` prefix.

    Examples
    --------
    >>> srt = ("1\\n00:00:01,000 --> 00:00:02,000\\nInterviewer: Ready?\\n\\n"
    ...        "2\\n00:00:02,500 --> 00:00:04,000\\nP03: Yes.")
    >>> [u.speaker for u in parse_srt(srt).turns]
    ['Interviewer', 'P03']
    """
    cues = _timed_cues(_read_cue_blocks(text))
    if not cues:
        raise ValueError("no SRT cues found")
    items = _merge_cues(cues, merge_consecutive)
    return _transcript_from_turn_texts(
        items,
        interviewer_labels,
        id=id,
        participant=participant,
        wave=wave,
        kind=kind or "interview",
        source_format="srt",
    )


def parse_docx(
    path_or_file,
    id: str | None = None,
    *,
    participant: str | None = None,
    wave: str | None = None,
    interviewer_labels: Iterable[str] = DEFAULT_INTERVIEWER_LABELS,
    speakers: Iterable[str] | None = None,
    kind: str | None = None,
) -> Transcript:
    """Parse a Word document: one paragraph per line, ``Label: text`` opens a turn.

    Examples
    --------
    >>> import docx, io
    >>> d = docx.Document(); _ = d.add_paragraph("Interviewer: Hello"); _ = d.add_paragraph("P04: Hi")
    >>> buf = io.BytesIO(); d.save(buf); _ = buf.seek(0)
    >>> parse_docx(buf, id="p04").turn_text(1)
    'Hi'
    """
    import docx  # python-docx

    document = docx.Document(path_or_file)
    lines = [p.text.replace("\n", " ").replace("\x0b", " ") for p in document.paragraphs]
    if id is None:
        id = Path(path_or_file).stem if isinstance(path_or_file, (str, Path)) else "transcript"
    text = "\n".join(lines).strip("\n")
    return parse_text(
        text,
        id=id,
        participant=participant,
        wave=wave,
        interviewer_labels=interviewer_labels,
        speakers=speakers,
        kind=kind,
        source_format="docx",
    )


def load_transcript(path: str | Path, id: str | None = None, **kwargs) -> Transcript:
    """Read a transcript file, choosing the parser from its suffix.

    ``.txt`` -> :func:`parse_text`, ``.md``/``.markdown`` -> :func:`parse_markdown`,
    ``.vtt`` -> :func:`parse_vtt`, ``.srt`` -> :func:`parse_srt`,
    ``.docx`` -> :func:`parse_docx`. Keyword arguments go to the parser.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    id = id or path.stem
    if suffix == ".docx":
        return parse_docx(path, id=id, **kwargs)
    parsers = {
        ".txt": parse_text,
        ".text": parse_text,
        ".md": parse_markdown,
        ".markdown": parse_markdown,
        ".vtt": parse_vtt,
        ".srt": parse_srt,
    }
    if suffix not in parsers:
        raise ValueError(f"unsupported transcript format: {suffix!r}")
    text = path.read_text(encoding="utf-8-sig")
    return parsers[suffix](text, id=id, **kwargs)
