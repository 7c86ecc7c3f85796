"""The example provider package (examples/facecast-example-provider) loads through its ``facecast.providers``
entry point the way an installed package's would, and passes the role-conformance suite; its own tests pass."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from facecast import registry
from facecast.face.auto import AutoAnimator
from facecast.face.phonetic import PhoneticAnimator
from facecast.offline import say
from facecast.services import make_face, make_tts
from facecast.testing import check_face, check_tts

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "facecast-example-provider"


@pytest.fixture
def installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[registry.Provider]:
    """The example as pip would leave it: its source on sys.path and a dist-info folder declaring the entry
    points of its pyproject.toml (nothing installed into the environment)."""
    project = tomllib.loads((EXAMPLE / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    points = project["entry-points"][registry.ENTRY_POINT_GROUP]
    dist = tmp_path / "facecast_example_provider-0.1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: 0.1.0\n")
    lines = "".join(f"{name} = {target}\n" for name, target in points.items())
    (dist / "entry_points.txt").write_text(f"[{registry.ENTRY_POINT_GROUP}]\n{lines}")
    monkeypatch.syspath_prepend(str(EXAMPLE / "src"))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(registry, "_loaded_entry_points", False)  # the registry scans entry points again
    try:
        yield registry.get("tts", "example-tone")
    finally:
        registry.unregister("tts", "example-tone")
        for name in [m for m in sys.modules if m.startswith("facecast_example_provider")]:
            sys.modules.pop(name)


async def test_the_entry_point_registers_a_conforming_voice(installed: registry.Provider) -> None:
    assert installed.caps.timing == "phonemes" and installed.installed()
    assert "example-tone" in [p.name for p in registry.providers("tts")]
    tts = make_tts("example-tone:180")
    assert tts.options.pitch_hz == 180.0  # type: ignore[attr-defined]
    result = await check_tts(tts, "Bob bought maps. Maybe buy more?")
    frames = await check_face(make_face("auto"), result.chunks)  # the default face animates it phonetically
    phonetic = await check_face(PhoneticAnimator(), result.chunks)
    np.testing.assert_array_equal(frames, phonetic)
    spoken = await say("Hum a tune.", tts, AutoAnimator())
    assert len(spoken.audio) > 0 and spoken.face.shape[1] == 68


def test_the_examples_own_tests_pass() -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(EXAMPLE / "src"), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(EXAMPLE)],
        cwd=EXAMPLE,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "4 passed" in done.stdout
