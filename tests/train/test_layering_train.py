"""Point 6 (issues 34.5, 34.6): the DEV evaluator is passed in by the top-level train command;
nothing in ``train/`` imports the benchmarks, by import or by a module-name string; no trainer
file is over 450 lines."""

import subprocess
import sys
from pathlib import Path

import sekd_plugin.train as train_pkg
from sekd_plugin import training
from sekd_plugin.train import command

TRAIN = Path(train_pkg.__file__).parent


def test_no_module_name_string_or_dynamic_import_in_train():
    bad = [f"{p.relative_to(TRAIN.parent)}: {word}" for p in sorted(TRAIN.rglob("*.py"))
           for word in ("sekd_plugin.benchmark", "importlib", "__import__") if word in p.read_text()]
    assert not bad, bad


def test_importing_every_train_module_loads_no_benchmark_module():
    code = (
        "import importlib, pkgutil, sys, sekd_plugin.train as t\n"
        "for m in pkgutil.walk_packages(t.__path__, 'sekd_plugin.train.'):\n"
        "    if not m.name.endswith('__main__'): importlib.import_module(m.name)\n"
        "print(sorted(k for k in sys.modules if k.startswith('sekd_plugin.benchmark')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_top_level_command_passes_the_dev_benchmark(monkeypatch):
    seen = {}
    monkeypatch.setattr(command, "main", lambda **kw: seen.update(kw) or {})
    training.main(output="x")
    assert seen["dev_eval"] is training.dev_eval
    # `python -m sekd_plugin.train` is the top-level command
    assert "from ..training import cli" in (TRAIN / "__main__.py").read_text()


def test_train_files_are_at_most_450_lines():
    files = [*TRAIN.rglob("*.py"), Path(training.__file__)]
    long = {str(p.relative_to(TRAIN.parent)): n for p in files if (n := len(p.read_text().splitlines())) > 450}
    assert not long, long
