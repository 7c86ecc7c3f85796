"""``facecast providers --markdown`` and the README's copy of its table."""

from __future__ import annotations

from pathlib import Path

import pytest

from facecast import registry
from facecast.cli import main
from facecast.provider_table import BEGIN, END, face_used, markdown_table, splice
from facecast.registry import Capabilities

README = Path(__file__).resolve().parents[1] / "README.md"


def test_the_readme_table_is_the_commands_output(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["providers", "--markdown"]) == 0
    generated = capsys.readouterr().out
    text = README.read_text(encoding="utf-8")
    assert BEGIN in text and END in text
    in_readme = text.split(BEGIN, 1)[1].split(END, 1)[0].lstrip("\n")
    assert in_readme == generated, "README provider table is stale: run 'facecast providers --markdown'"


def test_every_registered_provider_has_a_row(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["providers", "tts", "--markdown"]) == 0
    rows = capsys.readouterr().out.splitlines()[2:]
    assert len(rows) == len(registry.providers("tts")) and all(r.startswith("| tts | `") for r in rows)


def test_the_face_follows_the_declared_timing() -> None:
    def noop(req: registry.ProviderRequest) -> None:
        return None

    made = [
        registry.register("tts", f"table-{timing}", noop, caps=Capabilities(timing=timing))
        for timing in ("phonemes", "words", "none")
    ]
    odd = registry.register("stt", "table-odd", noop, licence="a | b", extra="x")
    try:
        assert [face_used(p) for p in made] == ["phonetic (exact)", "phonetic via word timing", "learned (audio)"]
        table = markdown_table([*made, odd]).splitlines()
        assert table[2].startswith("| stt | `table-odd` | `facecast[x]` |") and table[2].endswith("| a \\| b |")
        assert "| none | learned (audio) | not declared |" in table[-1]  # sorted by role; made outside facecast
    finally:
        for p in (*made, odd):
            registry.unregister(p.role, p.name)


def test_splice_replaces_only_the_table() -> None:
    text = f"intro\n{BEGIN}\n| old |\n{END}\noutro\n"
    assert splice(text, "| new |\n") == f"intro\n{BEGIN}\n| new |\n{END}\noutro\n"
    with pytest.raises(ValueError, match="markers"):
        splice("no markers here", "| new |\n")
