"""Build project.sqlite3, codebook.csv and codebook.qdc with Taguette 1.5.2's own code.

Run it in a throwaway virtualenv with `pip install taguette==1.5.2` (Taguette is not a dependency).

Taguette's `database.connect` creates the schema (and stamps its Alembic head), `convert.get_html_body`
turns the uploaded HTML into a document as the web upload does, and each highlight's offsets are
UTF-8 byte positions in the document's text nodes, as Taguette's editor records them; the snippet
comes from Taguette's `extract.extract`.

    /tmp/taguette-venv/bin/python tests/qualitative/data/taguette/make_fixture.py
"""

from pathlib import Path

from taguette import convert, database, export, extract
from taguette.database import models

HERE = Path(__file__).resolve().parent
OUT = HERE / "project.sqlite3"

DOC1 = (
    "<p>Interviewer: How did the group feel at first?</p>"
    "<p>TG-001: Honestly I was lonely before. The café was noisy but the people were kind.</p>"
    "<p>TG-001: Now I walk with them every Thursday and my sugars are better.</p>"
)
DOC2 = (
    "<p>Interviewer: What was hard?</p>"
    "<p>TG-002: Getting there. The bus is hourly and I can’t drive any more.</p>"
    "<p>TG-002: Still, I felt less alone after the second session.</p>"
)
TAGS = [
    ("Benefits", "What participants gained (Taguette tags are flat; dots make a path)"),
    ("Benefits.Reduced isolation", "Talk of feeling less alone"),
    ("Benefits.Physical activity", "Walking, exercise"),
    ("Barriers/Travel", "Getting to sessions"),
]
# (document, text to highlight, tags)
HIGHLIGHTS = [
    (1, "Honestly I was lonely before.", ["Benefits.Reduced isolation"]),
    (1, "The café was noisy but the people were kind.", ["Benefits"]),
    (1, "Now I walk with them every Thursday", ["Benefits.Physical activity", "Benefits"]),
    (2, "The bus is hourly and I can’t drive any more.", ["Barriers/Travel"]),
    (2, "I felt less alone after the second session.", ["Benefits.Reduced isolation"]),
]


def text_of(html: str) -> str:
    import bs4

    soup = bs4.BeautifulSoup(html, "html5lib")
    return "".join(str(s) for s in soup.body.find_all(string=True))


def main() -> None:
    if OUT.exists():
        OUT.unlink()
    Session = database.connect("sqlite:///" + str(OUT))
    db = Session()
    user = models.User(login="admin")
    db.add(user)
    project = models.Project(name="Peer support interviews", description="Two interviews coded in Taguette")
    db.add(project)
    db.add(models.ProjectMember(project=project, user=user, privileges=models.Privileges.ADMIN))
    docs = {}
    for i, (name, html) in enumerate((("tg-001.html", DOC1), ("tg-002.html", DOC2)), 1):
        contents = convert.get_html_body(html)
        doc = models.Document(
            name=name.rsplit(".", 1)[0],
            description="",
            filename=name,
            project=project,
            text_direction=models.TextDirection.LEFT_TO_RIGHT,
            contents=contents,
        )
        db.add(doc)
        docs[i] = doc
    tags = {}
    for path, description in TAGS:
        tags[path] = models.Tag(project=project, path=path, description=description)
        db.add(tags[path])
    db.flush()
    for d, snippet_text, tag_paths in HIGHLIGHTS:
        doc = docs[d]
        text = text_of(doc.contents)
        start_char = text.index(snippet_text)
        start = len(text[:start_char].encode("utf-8"))
        end = start + len(snippet_text.encode("utf-8"))
        snippet = extract.extract(doc.contents, start, end)
        db.add(
            models.Highlight(
                document=doc, start_offset=start, end_offset=end, snippet=snippet, tags=[tags[p] for p in tag_paths]
            )
        )
    db.commit()
    # Taguette's own codebook exports of the same project.
    tag_rows = db.query(models.Tag).filter(models.Tag.project_id == project.id).order_by(models.Tag.path).all()
    with open(HERE / "codebook.csv", "w", newline="", encoding="utf-8") as f:
        export.codebook_csv(tag_rows, f)
    with open(HERE / "codebook.qdc", "wb") as f:
        export.codebook_xml(tag_rows, f)
    db.close()
    # Compact the file (small pages, no free space) so it stays under the test suite's body limit.
    import sqlite3

    con = sqlite3.connect(OUT)
    con.execute("PRAGMA page_size=512")
    con.execute("VACUUM")
    con.close()
    print(OUT, OUT.stat().st_size)


if __name__ == "__main__":
    main()
