"""The user-facing documents speak to a user about what labkit does, not about how they were written.

README.md, docs/*.md, benchmarks/README.md and the cluster admin's k8s/README.md never point at
our issue tracker ("issue 9", "#12") and never tell the history of their own writing ("no longer",
"previously", "this session changed"): a reader has neither the tracker nor the history, only the
labkit in front of them. The phrase lists
are checked against sentences that must be caught and ordinary sentences that must pass, so each
pattern can fail and none forbids plain English.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "benchmarks" / "README.md",
        ROOT / "k8s" / "README.md"]

#: references to our own issues; an upstream project's (``mne-icalabel#304``) names its repository
ISSUE_REFERENCES = [
    re.compile(r"\bissues?\s*#?\d+", re.I),        # issue 9, issues 9 and 10, issue #9
    re.compile(r"(?<![\w&/-])#\d+\b"),             # #12 on its own (not &#123; or owner/repo#12)
    re.compile(r"\b(?:PR|pull request)\s*#?\d+", re.I),
]

#: the history of the writing, or of the code, told as if the reader had seen it before
HISTORY_PHRASES = [
    re.compile(r"\bno longer\b", re.I),
    re.compile(r"\bpreviously\b", re.I),
    re.compile(r"\b(?:was|were|has been|have been) (?:changed|fixed|rewritten|reworked|restored|reverted)\b", re.I),
    re.compile(r"\b(?:this|previous|earlier|last) (?:session|stop|commit)\b(?!'s)", re.I),
    re.compile(r"\b(?:before|after|since|until) (?:the|this) (?:fix|change|hardening|rewrite|refactor(?:ing)?)\b",
               re.I),
    re.compile(r"\b(?:is|are|was) now\b", re.I),
    re.compile(r"\bnow (?:the default|does|writes|stops|keeps?|reads|runs|pays|checks|labels|uses|gives|shows)\b",
               re.I),
    re.compile(r"\b(?:what|which) (?:this|the) (?:session|change|commit) changed\b", re.I),
    re.compile(r"\bchangelog\b", re.I),
    re.compile(r"\bthe first (?:cut|draft|version) of\b", re.I),
    re.compile(r"\bthe (?:old|new) (?:code|behaviou?r|wording)\b", re.I),
]

CAUGHT = [
    "Every case issue 9 lists", "(issue 17)", "see issues 9 and 10", "fixed in #12", "PR 31 made it faster",
    "the client no longer retries", "previously it waited", "the default was changed to 1",
    "What this session changed", "Earlier changes (previous session)", "Before the fix, fds grew",
    "one thread per worker is now the default", "every request now pays it", "`close` now stops every client",
    "The first cut of the hardening", "the table is now narrower", "after this change it is 1.2 s",
    "## Changelog", "the old behaviour is gone",
]
PLAIN = [
    "Run it now.", "the run stops reporting", "MNE's messages", "a 400-digit number", "## Tests",
    "| # | case | how it is tested |", "&#35;", "mne-icalabel#304", "the fit's peak", "until the run ends",
    "labkit changes nothing in the recording", "The previous run's folder is left as it is",
    "resident memory at that point", "the session's runs", "the history of this session's runs",
    "the previous attempt of a retried Job", "when MNE has a new version", "the last iteration",
]


def _line_of(text: str, pos: int) -> int:
    return text.count("\n", 0, pos) + 1


def _findings(patterns: list[re.Pattern[str]]) -> list[str]:
    found = []
    for path in DOCS:
        text = path.read_text()
        for pattern in patterns:
            for m in pattern.finditer(text):
                found.append(f"{path.relative_to(ROOT)}:{_line_of(text, m.start())}: {m.group(0)!r}")
    return found


def test_the_documents_exist():
    names = [p.relative_to(ROOT).as_posix() for p in DOCS]
    assert {"README.md", "docs/reliability.md", "docs/origins.md", "benchmarks/README.md",
            "k8s/README.md"} <= set(names), names
    assert all(p.is_file() for p in DOCS)


@pytest.mark.parametrize("sentence", CAUGHT)
def test_each_sentence_that_tells_history_or_an_issue_is_caught(sentence: str) -> None:
    assert any(p.search(sentence) for p in ISSUE_REFERENCES + HISTORY_PHRASES), sentence


@pytest.mark.parametrize("sentence", PLAIN)
def test_plain_english_passes(sentence: str) -> None:
    hits = [p.pattern for p in ISSUE_REFERENCES + HISTORY_PHRASES if p.search(sentence)]
    assert not hits, (sentence, hits)


def test_every_pattern_catches_something():
    for pattern in ISSUE_REFERENCES + HISTORY_PHRASES:
        assert any(pattern.search(s) for s in CAUGHT), pattern.pattern


def test_no_document_refers_to_our_issues():
    found = _findings(ISSUE_REFERENCES)
    assert not found, "say what the user does and sees instead:\n" + "\n".join(found)


def test_no_document_tells_its_own_history():
    found = _findings(HISTORY_PHRASES)
    assert not found, "say what the user does and sees instead:\n" + "\n".join(found)


def test_the_readme_points_at_the_recordings_in_the_repository():
    readme = (ROOT / "README.md").read_text()
    assert "../shared/" not in readme
    assert "tests/data/real/" in readme and (ROOT / "tests" / "data" / "real").is_dir()
    assert len([p for p in (ROOT / "tests" / "data" / "real").iterdir() if p.name != "README.md"]) >= 5
