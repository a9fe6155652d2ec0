"""The repository reads on its own: every ``docs/<file>.md "<Heading>"`` that the code, tests, scripts, benchmarks,
JavaScript, README or the docs themselves cite names a file of ``docs/`` with a markdown heading of exactly that
text, and no section sign is left (it cited a specification that is not in the repository). tests/fixtures holds data, not
prose, and is not scanned."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCANNED_TREES = ("tinybreaker_ext", "tests", "scripts", "bench", "docs", "javascript")
SCANNED_FILES = ("README.md", "install.py", "preload.py", "style.css", "metadata.ini")
NOT_SCANNED = ("tests/fixtures",)
SECTION_SIGN = "\N{SECTION SIGN}"  # spelled by name, so this file holds none itself

# `docs/numerics.md "Tiny Upscaler"`; a comma after the file name and a line break (also inside a `#` comment)
# before the heading are tolerated, so that no citation escapes the check by its formatting.
REFERENCE = re.compile(r'docs/([A-Za-z0-9_.-]+\.md),?\s+(?:#\s*)?"([^"\n]+)"')
DOC_PATH = re.compile(r"docs/([A-Za-z0-9_.-]+\.md)\b")
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$")
FENCE = re.compile(r"^\s*(```|~~~)")
DOC_FILES = ("design.md", "hosts.md", "numerics.md", "model-files.md")


def scanned_texts(root: Path = ROOT) -> dict[str, str]:
    """Relative path → text of every UTF-8 file in the scanned trees and files."""
    paths = [root / name for name in SCANNED_FILES if (root / name).is_file()]
    for tree in SCANNED_TREES:
        paths += sorted(path for path in (root / tree).rglob("*") if path.is_file())
    texts = {}
    for path in paths:
        relative = path.relative_to(root).as_posix()
        if "__pycache__" in path.parts or any(relative.startswith(prefix + "/") for prefix in NOT_SCANNED):
            continue
        try:
            texts[relative] = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:  # images and other binary files
            continue
    return texts


def headings(markdown: str) -> set[str]:
    """The text of every ATX heading (``#`` … ``######``) outside fenced code blocks."""
    found, in_code = set(), False
    for line in markdown.splitlines():
        if FENCE.match(line):
            in_code = not in_code
            continue
        match = None if in_code else HEADING.match(line)
        if match:
            found.add(match.group(1))
    return found


def references(texts: dict[str, str]) -> list[tuple[str, int, str, str]]:
    """(file, line, doc file, heading) of every citation."""
    found = []
    for relative, text in texts.items():
        for match in REFERENCE.finditer(text):
            line = text.count("\n", 0, match.start()) + 1
            found.append((relative, line, match.group(1), match.group(2)))
    return found


def broken_references(texts: dict[str, str], root: Path = ROOT) -> list[str]:
    """One line per citation whose file or heading does not exist."""
    docs = {}
    problems = []
    for relative, line, doc, heading in references(texts):
        path = root / "docs" / doc
        if doc not in docs:
            docs[doc] = headings(path.read_text(encoding="utf-8")) if path.is_file() else None
        if docs[doc] is None:
            problems.append(f"{relative}:{line}: docs/{doc} does not exist")
        elif heading not in docs[doc]:
            problems.append(f"{relative}:{line}: docs/{doc} has no heading {heading!r}")
    return problems


def test_every_cited_heading_exists():
    texts = scanned_texts()
    found = references(texts)
    # The code cites the docs in over a hundred places; a pattern that stopped matching would pass vacuously.
    assert len(found) > 100, f"only {len(found)} citations found: has the citation form changed?"
    assert {doc for _, _, doc, _ in found} >= set(DOC_FILES)
    assert broken_references(texts) == []


def test_every_mentioned_doc_file_exists():
    missing = sorted({f"{relative}: docs/{name}" for relative, text in scanned_texts().items()
                      for name in DOC_PATH.findall(text) if not (ROOT / "docs" / name).is_file()})
    assert missing == []


def test_no_section_sign_is_left():
    left = [f"{relative}:{number}: {line.strip()}" for relative, text in scanned_texts().items()
            for number, line in enumerate(text.splitlines(), 1) if SECTION_SIGN in line]
    assert left == []


def test_the_check_catches_a_wrong_heading_and_a_missing_file(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "guide.md").write_text("# Guide\n\n## Right heading\n\n```\n# Not a heading\n```\n",
                                                encoding="utf-8")
    docs = "docs/"  # kept apart, so that this file's own scan does not read these as citations
    texts = {
        "a.py": f'# see {docs}guide.md "Right heading"\n',
        "b.py": f'"""Wrong ({docs}guide.md "Wrong heading")."""\n',
        "c.py": f'# a citation split over lines: {docs}guide.md\n# "Not a heading"\n',
        "d.py": f'x = 1  # {docs}missing.md "Anything"\n',
    }
    assert broken_references(texts, tmp_path) == [
        f"b.py:1: {docs}guide.md has no heading 'Wrong heading'",
        f"c.py:1: {docs}guide.md has no heading 'Not a heading'",
        f"d.py:1: {docs}missing.md does not exist",
    ]
