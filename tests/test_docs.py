"""Every citation of the design document ("DESIGN §N") in the repository resolves.

Code, help texts and the README cite docs/DESIGN.md by section number: "DESIGN §3",
"DESIGN §3-4" (a range: both ends must exist), "DESIGN §2, 5", "DESIGN §9.1" (a
subsection, ``### 9.1``), "DESIGN section 2", "DESIGN sections 2 and 3". A bare "§N" also
counts: the project uses the sign for its design document only, and a citation may run on
after a word ("DESIGN §4 JSON, §8 command line") or across a line break. The files scanned
are the repository's text files as git lists them, tracked or new but not ignored (so a new
file is checked before it is committed), except the design document itself, this file (its
examples cite sections that do not exist on purpose) and the generated data under bench/.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DESIGN = ROOT / "docs" / "DESIGN.md"
SUFFIXES = (".py", ".md", ".toml", ".txt")
NAMES = ("Makefile",)
SKIP_DIRS = ("bench/",)
SKIP_FILES = ("docs/DESIGN.md", "tests/test_docs.py")

# The contract's sections keep their numbers and subjects.
CONTRACT_SECTIONS = {
    "1": "Bank-balanced sparsity",
    "2": "Hardware parameters",
    "3": "Mapping a row onto the lanes",
    "4": "Formats on the wire (AXI4-Stream)",
    "5": "Arithmetic",
    "6": "The gather/scatter unit",
    "7": "Figures the project reports",
    "8": "Command line",
}

_REF = r"\d+(?:\.\d+)?"
# One cited item: a section or subsection, or a range of them ("3-4", "§3–§5", "9.1-9.3").
_ITEM = rf"§?\s*{_REF}(?:\s*[-–]\s*§?\s*{_REF})?"
# "DESIGN" (possibly across a line break or a comment marker) then "§" or "section(s)", or
# a bare "§"; then one item and any further ones joined by ",", "and" or "or".
CITATION = re.compile(
    rf"(?:\bDESIGN[\s#*]*(?:§|\bsections?\b)|§)\s*{_ITEM}"
    rf"(?:\s*(?:,|\band\b|\bor\b)\s*{_ITEM})*"
)
_RANGE = re.compile(rf"({_REF})(?:\s*[-–]\s*§?\s*({_REF}))?")


@dataclass(frozen=True)
class Citation:
    where: str  # "path:line"
    text: str
    #: The cited items: a section id, or (start, end) for a range.
    items: tuple

    def __str__(self) -> str:
        return f"{self.where}: {' '.join(self.text.split())!r}"


def design_sections(text: str) -> dict[str, str]:
    """Section ids of the design document and their titles: "N" for ``## N. Title`` and
    "N.M" for ``### N.M Title``."""
    sections = {}
    for match in re.finditer(r"^## (\d+)\. +(.+?)\s*$", text, re.M):
        sections[match[1]] = match[2]
    for match in re.finditer(r"^### (\d+\.\d+) +(.+?)\s*$", text, re.M):
        sections[match[1]] = match[2]
    return sections


def find_citations(text: str, path: str = "<text>") -> list[Citation]:
    """Every citation of the design document in `text`, with its line."""
    found = []
    for match in CITATION.finditer(text):
        line = text.count("\n", 0, match.start()) + 1
        items = []
        for item in _RANGE.finditer(match[0]):
            items.append(item[1] if item[2] is None else (item[1], item[2]))
        found.append(Citation(f"{path}:{line}", match[0], tuple(items)))
    return found


def _order(ref: str) -> tuple[int, ...]:
    return tuple(int(part) for part in ref.split("."))


def unresolved(citation: Citation, sections) -> list[str]:
    """What `citation` cites that the design document does not have (empty if it resolves):
    a missing section, either end of a range, or a range that runs backwards."""
    problems = []
    for item in citation.items:
        ends = (item,) if isinstance(item, str) else item
        problems += [f"§{ref} does not exist" for ref in ends if ref not in sections]
        if not isinstance(item, str) and _order(item[1]) < _order(item[0]):
            problems.append(f"§{item[0]}-{item[1]} runs backwards")
    return problems


def repository_files() -> list[Path]:
    """The text files to scan: tracked, or new and not ignored."""
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout: cannot list the repository's files")
    listing = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout
    files = []
    for name in sorted(set(filter(None, listing.split("\0")))):
        path = ROOT / name
        if name in SKIP_FILES or name.startswith(SKIP_DIRS) or not path.is_file():
            continue
        if name.endswith(SUFFIXES) or path.name in NAMES:
            files.append(path)
    return files


def repository_citations() -> list[Citation]:
    citations = []
    for path in repository_files():
        text = path.read_text(encoding="utf-8", errors="replace")
        citations += find_citations(text, str(path.relative_to(ROOT)))
    return citations


def test_design_keeps_the_contract_sections():
    sections = design_sections(DESIGN.read_text(encoding="utf-8"))
    titles = {number: sections.get(number) for number in CONTRACT_SECTIONS}
    assert titles == CONTRACT_SECTIONS
    numbers = sorted(int(s) for s in sections if "." not in s)
    assert numbers == list(range(1, len(numbers) + 1)), f"section numbers {numbers}"
    for sub in (s for s in sections if "." in s):
        assert sub.split(".")[0] in sections, f"§{sub} has no section {sub.split('.')[0]}"


def test_every_citation_resolves():
    sections = design_sections(DESIGN.read_text(encoding="utf-8"))
    citations = repository_citations()
    # A broken pattern must not pass by finding nothing.
    assert len(citations) >= 40, f"only {len(citations)} citations found"
    broken = [f"{c}: {'; '.join(problems)}" for c in citations
              if (problems := unresolved(c, sections))]
    assert not broken, "citations of docs/DESIGN.md that do not resolve:\n" + "\n".join(broken)


def test_citation_forms_are_parsed():
    def items(text):
        return [c.items for c in find_citations(text)]

    assert items("see DESIGN §3") == [("3",)]
    assert items("(DESIGN §3-4: wire formats)") == [(("3", "4"),)]
    assert items("DESIGN §3–5") == [(("3", "5"),)]
    assert items("DESIGN §2, 5 and 7") == [("2", "5", "7")]
    assert items("DESIGN §9.1 and §9.2") == [("9.1", "9.2")]
    assert items("keys of DESIGN section 2; default") == [("2",)]
    assert items("DESIGN sections 2 and 3") == [("2", "3")]
    assert items("in DESIGN\n    # §10 and the host") == [("10",)]
    assert items("(DESIGN §4 JSON, §8 command line)") == [("4",), ("8",)]
    assert items("DESIGN §4. Next sentence") == [("4",)]
    assert items("docs/DESIGN.md and design notes") == []
    [citation] = find_citations("one\ntwo DESIGN §6\n", "f.py")
    assert citation.where == "f.py:2"


def test_unresolved_citations_are_reported():
    sections = design_sections("## 1. One\n## 2. Two\n### 2.1 Sub\n## 3. Three\n")
    assert sections == {"1": "One", "2": "Two", "3": "Three", "2.1": "Sub"}

    def problems(text):
        [citation] = find_citations(text)
        return unresolved(citation, sections)

    assert problems("DESIGN §99") == ["§99 does not exist"]
    assert problems("DESIGN §2.1") == []
    assert problems("DESIGN §2.2") == ["§2.2 does not exist"]
    assert problems("DESIGN §1-3") == []
    assert problems("DESIGN §2-9") == ["§9 does not exist"]
    assert problems("DESIGN §3-1") == ["§3-1 runs backwards"]
    assert problems("DESIGN section 4") == ["§4 does not exist"]
    assert problems("DESIGN sections 1 and 5") == ["§5 does not exist"]
    # The real document with a made-up citation: the same function reports it.
    real = design_sections(DESIGN.read_text(encoding="utf-8"))
    [citation] = find_citations("DESIGN §99")
    assert unresolved(citation, real) == ["§99 does not exist"]
