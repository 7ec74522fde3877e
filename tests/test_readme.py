"""The README is a newcomer's page: short, every link resolves, and its walk-through runs as written."""

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
MAX_LINES = 300


def _links(path: Path) -> list[str]:
    return re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", path.read_text())


def test_readme_is_short_and_has_no_placeholders():
    text = README.read_text()
    assert len(text.splitlines()) <= MAX_LINES
    assert "{{" not in text, "a placeholder was left in the README"
    for heading in ("## Results", "## Install", "## The main job", "## Tests", "## Your own photos"):
        assert heading in text


@pytest.mark.parametrize("doc", ["README.md", "CONTRIBUTING.md", *sorted(p.name for p in (REPO / "docs").glob("*.md"))])
def test_every_local_link_exists(doc):
    path = REPO / doc if (REPO / doc).exists() else REPO / "docs" / doc
    for target in _links(path):
        if re.match(r"[a-z]+://", target):
            continue
        assert (path.parent / target).exists(), f"{doc} links to {target}, which does not exist"


def walkthrough_commands() -> list[str]:
    """The shell lines of the README's "Your own photos" code block, continuations joined."""
    text = README.read_text()
    section = text[text.index("## Your own photos"):]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    block = re.sub(r"\\\n\s*", " ", block)
    return [line.split("  #")[0].strip() for line in block.splitlines() if line.strip() and not line.startswith("#")]


def test_walkthrough_uses_the_shipped_offline_commands():
    cmds = walkthrough_commands()
    steps = [c.split()[2] for c in cmds if c.startswith("python -m ")]
    for step in ("sekd_plugin.datasets", "sekd_plugin.extract_features", "sekd_plugin.pairs",
                 "sekd_plugin.match_features", "sekd_plugin.reconstruction", "sekd_plugin.visualize"):
        assert step in steps


@pytest.mark.integration
def test_walkthrough_runs_as_written(tmp_path, monkeypatch):
    monkeypatch.delenv("SEKD_PLUGIN_WEIGHTS_DIR", raising=False)  # shipped models only
    monkeypatch.setenv("SEKD_PLUGIN_CACHE", str(tmp_path / "cache"))
    for cmd in walkthrough_commands():
        argv = shlex.split(cmd)
        assert argv[0] == "python"
        done = subprocess.run([sys.executable, *argv[1:]], cwd=tmp_path, capture_output=True, text=True,
                              timeout=900)
        assert done.returncode == 0, f"{cmd}\n{done.stderr[-2000:]}"
    assert (tmp_path / "out" / "sfm" / "images.bin").is_file()
    assert list((tmp_path / "out" / "pictures").glob("*.png"))
