"""The import rule of the house: each package imports only the packages below it (docs/decisions.md).

Read from the source with ``ast`` (every ``import``/``from`` statement, also inside functions), plus one real
import in a fresh interpreter: a loader worker imports data code only.
"""

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Library packages and what each may import (besides itself). Entry points (the top-level modules of src/,
# sharding/__main__.py, bench/) may import anything below them; nothing imports an entry point or bench.
ALLOWED = {
    "src.core": set(),
    "src.model": {"src.core"},
    "src.decoder": {"src.core"},
    "src.targets": {"src.core"},
    "src.evaluation": {"src.core", "src.decoder"},
    "src.inference": {"src.core", "src.decoder", "src.model"},
    "src.training": {"src.core", "src.decoder", "src.model", "src.evaluation", "src.inference"},
    "datamodules": {"src.core"},
    "sharding": {"src.core"},
}
ENTRY_POINTS = {"src.train", "src.evaluate", "src.predict", "src.export", "src.oracle", "src.import_caffe",
                "src.sweep_report", "src.match_runtime", "sharding.__main__"}


def _module(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts)


def _package(module: str) -> str | None:
    """The ``ALLOWED`` key a project module belongs to (None: an entry point, bench, or not ours)."""
    if module in ENTRY_POINTS or module.split(".")[0] == "bench":
        return None
    for key in sorted(ALLOWED, key=len, reverse=True):
        if module == key or module.startswith(key + "."):
            return key
    return None


def _imports(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
    return out


def _sources():
    for top in ("src", "datamodules", "sharding", "bench"):
        yield from sorted((ROOT / top).rglob("*.py"))


def test_every_import_goes_down():
    wrong = []
    for path in _sources():
        me = _module(path)
        mine = _package(me)
        for name in _imports(path):
            if name in ENTRY_POINTS or name.split(".")[0] == "bench":
                if not me.startswith("bench"):
                    wrong.append(f"{me} imports {name} (an entry point or the benches)")
                continue
            theirs = _package(name)
            if mine is None or theirs is None or theirs == mine:
                continue
            if theirs not in ALLOWED[mine]:
                wrong.append(f"{me} imports {name} ({theirs} is not below {mine})")
    assert not wrong, "\n".join(wrong)


def test_the_rule_sees_a_climb():
    """The checker finds the import that used to run back up (datamodules -> src.inference)."""
    assert _package("datamodules.augment") == "datamodules"
    assert _package("src.inference") not in ALLOWED["datamodules"]
    assert _package("src.training.module") == "src.training" and _package("src.train") is None


def test_a_loader_worker_imports_only_data_code():
    code = ("import sys, datamodules.wholebody, datamodules.streams, datamodules.augment; "
            "print(sorted({m.split('.')[1] for m in sys.modules if m.startswith('src.')}))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "['core']", out.stdout + out.stderr
