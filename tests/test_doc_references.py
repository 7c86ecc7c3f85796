"""Every document that the sources and docs point a reader to is in the repository."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_MD = re.compile(r"(?<![\w./-])([\w./-]+\.md)\b")
_URL = re.compile(r"\w+://\S+")
_BARE = re.compile(r"\b(?:DESIGN|REFERENCE)\b(?:\.md)?(?: section| §)?")


def _texts() -> list[Path]:
    files = [ROOT / "README.md", *(ROOT / "docs").rglob("*.md")]
    for folder in ("src", "training"):
        files += (ROOT / folder).rglob("*.py")
    return [f for f in files if f.is_file()]


def _resolves(name: str, where: Path) -> bool:
    return any((base / name).is_file() for base in (ROOT, ROOT / "docs", where.parent))


def test_every_cited_markdown_file_exists() -> None:
    missing = []
    for path in _texts():
        text = _URL.sub("", path.read_text(encoding="utf-8"))  # links to other sites are not checked
        for match in _MD.finditer(text):
            name = match.group(1)
            if not _resolves(name, path):
                missing.append(f"{path.relative_to(ROOT)}: {name}")
    assert not missing, f"documents cited but not in the repository: {missing}"


def test_no_reference_to_the_design_notes_outside_the_repository() -> None:
    """DESIGN.md and REFERENCE.md were planning notes kept outside the repository: a reader cannot open them."""
    found = [
        f"{path.relative_to(ROOT)}: {m.group(0)}"
        for path in _texts()
        for m in _BARE.finditer(path.read_text(encoding="utf-8"))
    ]
    assert not found, found
