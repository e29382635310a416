"""The repository's Markdown stays usable from a clone: every relative link and anchor resolves,
and the user-facing docs cite nothing outside the repository and no development history.

Code comments and docs point at sections of ``docs/architecture.md`` by anchor, so a renamed
heading or a moved file breaks a reader's path as surely as a broken import; this catches it.
Anchors follow GitHub's rule (lower case, punctuation dropped, spaces to hyphens), which is how
the files are read.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# The files a user reads first; they must stand on their own.
USER_DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

FENCE = re.compile(r"^(```|~~~).*?^\1[ \t]*$", re.M | re.S)
CODE_SPAN = re.compile(r"(`+)(?!`).+?(?<!`)\1(?!`)", re.S)
INLINE_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*<?([^\s)>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE_LINK = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+\"[^\"]*\")?\s*$", re.M)
HEADING = re.compile(r"^#{1,6}[ \t]+(.+?)[ \t#]*$", re.M)
# Issue numbers, numbered work sessions ("session 2", but not a "session 10 s" timeout) and
# commit hashes (hex with both letters and digits).
HISTORY = re.compile(
    r"\bissue ?#?\d+|\bsession \d+(?!\d)(?! ?(?:ms|s)\b)|\b(?=[0-9a-f]*[a-f])(?=[0-9a-f]*\d)[0-9a-f]{7,40}\b",
    re.I,
)


def markdown_files() -> list[Path]:
    """Every tracked Markdown file (untracked scratch files are nobody's docs)."""
    out = subprocess.run(["git", "ls-files", "*.md"], cwd=ROOT, capture_output=True, text=True, check=False)
    tracked = [ROOT / line for line in out.stdout.splitlines() if line]
    return sorted({*tracked, *USER_DOCS})


def prose(text: str) -> str:
    """The text with code blocks and code spans blanked out: links inside code are examples."""
    text = FENCE.sub(lambda m: "\n" * m.group(0).count("\n"), text)
    return CODE_SPAN.sub(lambda m: " " * len(m.group(0)), text)


def links(text: str) -> list[str]:
    body = prose(text)
    return [m.group(1) for m in INLINE_LINK.finditer(body)] + [m.group(1) for m in REFERENCE_LINK.finditer(body)]


def slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link in a heading keeps its text
    text = text.replace("`", "").strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    out: set[str] = set()
    for m in HEADING.finditer(prose(path.read_text(encoding="utf-8"))):
        base = slug(m.group(1))
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f"{base}-{n}")
    return out


def broken_links(path: Path) -> list[str]:
    problems = []
    for target in links(path.read_text(encoding="utf-8")):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):
            continue  # http:, https:, mailto:: not ours to check offline
        file_part, _, anchor = target.partition("#")
        resolved = (path.parent / file_part).resolve() if file_part else path
        if not resolved.is_relative_to(ROOT):
            problems.append(f"{target}: points outside the repository")
        elif not resolved.exists():
            problems.append(f"{target}: no such file")
        elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
            problems.append(f"{target}: no heading with anchor #{anchor} in {resolved.relative_to(ROOT)}")
    return problems


@pytest.mark.parametrize("path", markdown_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(path: Path) -> None:
    assert broken_links(path) == []


@pytest.mark.parametrize("path", USER_DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_user_docs_stand_on_their_own(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    assert "../shared" not in text, "the docs must not send readers outside the repository"
    assert "DESIGN.md" not in text, "the design lives in docs/architecture.md"
    assert [m.group(0) for m in HISTORY.finditer(text)] == [], "no issue numbers, sessions or commit hashes"


def test_architecture_has_the_sections_code_comments_point_at() -> None:
    got = anchors(ROOT / "docs" / "architecture.md")
    wanted = {
        "overview", "module-map", "bucket-layout", "write-path", "read-path", "invariants",
        "i1-single-writer", "i2-ack--durable", "i3-fencing", "i4-no-offset-reuse", "i5-read-committed",
        "moving-a-partition", "failover-and-fencing", "controller-and-membership",
        "consolidation-retention-and-wal-garbage-collection", "consumer-groups-and-producer-ids",
        "the-admin-api", "the-operator", "local-mode",
    }
    assert wanted - got == set()


def test_the_checker_sees_what_it_must() -> None:
    """The checks themselves: a broken link, a missing anchor and history are all caught."""
    sample = "[a](no/such/file.md) [b](README.md#no-such-heading) `[c](ignored.md)` [d](https://x.test)"
    assert links(sample) == ["no/such/file.md", "README.md#no-such-heading", "https://x.test"]
    assert slug("I2 ack = durable") == "i2-ack--durable"
    assert slug("`floe_api`: the admin HTTP schema") == "floe_api-the-admin-http-schema"
    assert HISTORY.search("after (session 2; noisy)") and HISTORY.search("see issue 6")
    assert HISTORY.search("before (3b00429), 2 runs")
    assert not HISTORY.search("session 10 s") and not HISTORY.search("a session 6000 ms timeout")
