"""Issue 34.6: the package needs nothing outside itself. A non-editable ``pip install .`` into a
fresh virtual environment, then README's main job (``python -m sekd_plugin.benchmark hpatches``,
the embedded demo set) from a folder outside the repository, without PYTHONPATH and without
``SEKD_PLUGIN_*`` variables: it must import the installed copy and exit 0.

The repository is copied first (build/ and the egg-info stay out of the checkout); the venv sees
the system site-packages (torch, the other dependencies, pip and setuptools are installed there), so
``--no-deps --no-build-isolation`` installs only this package, offline.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SKIP = shutil.ignore_patterns(".git", "outputs", "runs", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache",
                              ".venv", ".ruff_cache", "*.h5")

pytestmark = pytest.mark.integration


def _clean_env(venv: Path, cache: Path) -> dict[str, str]:
    """No PYTHONPATH, no ``SEKD_PLUGIN_*`` folders; an empty asset cache (no weights from earlier runs)."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("SEKD_PLUGIN_") and k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["SEKD_PLUGIN_CACHE"] = str(cache)
    return env


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> tuple[Path, dict[str, str], Path]:
    """``(venv python, its environment, a working folder outside the repository)``."""
    root = tmp_path_factory.mktemp("installed")
    source = root / "source"
    shutil.copytree(REPO, source, symlinks=True, ignore=SKIP)
    venv = root / "venv"
    # --without-pip: the venv's own pip and old setuptools would shadow the system's (which builds
    # wheels); the system pip, seen through the system site-packages, installs into the venv
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    env = _clean_env(venv, root / "cache")
    out = subprocess.run([str(python), "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index",
                          "--quiet", "."], cwd=source, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    shutil.rmtree(source)  # nothing may be read from the source tree afterwards
    work = root / "work"
    work.mkdir()
    return python, env, work


def test_the_installed_package_is_the_venvs_and_carries_its_data(installed):
    python, env, work = installed
    code = ("import json, sekd_plugin, sekd_plugin.infra.assets as a; from pathlib import Path\n"
            "p = Path(sekd_plugin.__file__).resolve()\n"
            "print(json.dumps({'file': str(p), 'manifests': len(list(a.MANIFEST_DIR.glob('*.toml'))),\n"
            "                  'trained': sorted(x.name for x in (p.parent / 'trained').glob('*.pth'))}))")
    out = subprocess.run([str(python), "-c", code], cwd=work, env=env, capture_output=True, text=True, check=True)
    found = json.loads(out.stdout)
    venv = python.parent.parent.resolve()
    assert Path(found["file"]).is_relative_to(venv), found  # the venv's copy, not the repository's
    assert not Path(found["file"]).is_relative_to(REPO)
    assert found["manifests"] == len(list((REPO / "third_party").glob("*.toml")))
    assert found["trained"] == sorted(p.name for p in (REPO / "sekd_plugin" / "trained").glob("*.pth"))


def test_the_main_job_runs_from_the_installed_package(installed):
    """README's main job on its embedded demo set, from the installed copy. Every default method
    takes about 9 minutes on 2 busy cores, so it runs three of them: the shipped self-trained SEKD
    (weights from the package data), SIFT (no weights) and the paper's SEKD, whose weights are not
    in the package: skipped, naming the manifest and the fetch command (the manifests travel too)."""
    python, env, work = installed
    out = subprocess.run([str(python), "-m", "sekd_plugin.benchmark", "hpatches", "--methods",
                          "sekd-selftrained,sift,sekd"], cwd=work, env=env, capture_output=True, text=True,
                         timeout=1200)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    results = json.loads((work / "outputs" / "hpatches" / "results.json").read_text())
    assert sorted(results["methods"]) == ["sekd-selftrained", "sift"], results["methods"].keys()
    assert not results["failed"], results["failed"]
    assert "python -m sekd_plugin.weights fetch sekd" in results["skipped"]["sekd"]
    assert "third_party/sekd.toml" in results["skipped"]["sekd"]
    assert "Verdict" in out.stdout
