"""Every command the README and the guide (``docs/*.md``) quote keeps working; the documents keep their shape.

A command is a line of a ```` ```sh ```` (or ``bash``/``shell``/untagged) code block, backslash continuations
joined, or an inline code span in a table row that starts with ``python -m`` or ``make``. Each is checked
as far as it can be without doing the work:

- ``python -m <hydra entry point> ARGS`` (also after ``VAR=value`` prefixes, ``torchrun ... -m``, and the
  overrides ``sbatch scripts/slurm_train.sbatch`` hands to ``src.train``): run in this process as
  ``python -m`` runs it (``runpy``), with ``--cfg job`` appended, so Hydra's argument parser, override
  grammar and config composition see it (unknown keys, group options and quoting fail here). A multirun
  line (``-m``) runs with each sweep override at its first value (Hydra refuses ``--cfg`` with ``-m``), and
  every value of the sweep config's own ``hydra.sweeper.params`` is composed as well. ``--help`` lines run
  as they are.
- ``python -m <plain module>``: the module exists; ``src.sweep_report`` answers ``--help``;
  ``python -m bench`` is given known areas only.
- ``make TARGET``: the Makefile has the target; ``ARGS=`` of ``make bench-runtime`` and ``EXP=``/``ARGS=``
  of ``make train`` go through their entry point as above.
- Anything else must end with ``# not checked: <why>``.
"""

from __future__ import annotations

import importlib.util
import logging
import re
import runpy
import shlex
import sys
import tempfile
from pathlib import Path

import pytest
from omegaconf import OmegaConf

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = [README, *sorted((ROOT / "docs").glob("*.md"))]
CHANGELOG = ROOT / "CHANGELOG.md"
INDEX = ROOT / "docs" / "README.md"

SHELL_BLOCK = {"", "sh", "bash", "shell", "console"}
NOT_CHECKED = "# not checked:"
ENV = re.compile(r"^[A-Z_][A-Z0-9_]*=")


# -- reading the documents ----------------------------------------------------------------------------------
def _blocks(text: str):
    """(language, first line number, lines) of every fenced code block."""
    lines, i = text.splitlines(), 0
    while i < len(lines):
        fence = re.match(r"^\s*```(\S*)\s*$", lines[i])
        if fence:
            start, body = i + 2, []
            i += 1
            while i < len(lines) and not lines[i].strip().startswith("```"):
                body.append(lines[i])
                i += 1
            yield fence.group(1), start, body
        i += 1


def _join_continuations(numbered: list[tuple[int, str]]) -> list[tuple[int, str]]:
    out: list[tuple[int, str]] = []
    pending: tuple[int, str] | None = None
    for no, line in numbered:
        if pending is not None:
            line = pending[1] + " " + line.strip()
            no = pending[0]
            pending = None
        if line.rstrip().endswith("\\"):
            pending = (no, line.rstrip()[:-1])
            continue
        out.append((no, line))
    return out


def doc_commands() -> list[tuple[str, str]]:
    """(``file:line``, command) for every quoted command of the README and docs/."""
    found = []
    for path in DOCS:
        text = path.read_text()
        for lang, start, body in _blocks(text):
            if lang not in SHELL_BLOCK:
                continue
            numbered = [(start + k, ln) for k, ln in enumerate(body)]
            for no, line in _join_continuations(numbered):
                if line.strip() and not line.strip().startswith("#"):
                    found.append((f"{path.relative_to(ROOT)}:{no}", line.strip()))
        for no, line in enumerate(text.splitlines(), 1):
            if line.lstrip().startswith("|"):
                for span in re.findall(r"`([^`]+)`", line):
                    if span.startswith("python -m ") or span.startswith("make "):
                        found.append((f"{path.relative_to(ROOT)}:{no}", span))
    return found


def make_targets() -> set[str]:
    text = (ROOT / "Makefile").read_text()
    return {m.group(1) for m in re.finditer(r"^([A-Za-z][\w-]*)\s*:(?!=)", text, re.M)}


# -- running one command ------------------------------------------------------------------------------------
def _source(module: str) -> Path:
    """The file ``python -m module`` runs (a package's ``__main__.py``)."""
    path = ROOT / Path(*module.split("."))
    return path / "__main__.py" if path.is_dir() else path.with_suffix(".py")


def _is_hydra(module: str) -> bool:
    """An entry point under ``@hydra.main`` (the others take plain arguments)."""
    return "@hydra.main" in _source(module).read_text()


@pytest.fixture(autouse=True)
def _logging_as_it_was():
    """An entry point run in this process configures logging (Hydra's job logging disables the loggers that
    exist): put every logger back afterwards, so later tests' ``caplog`` still sees them."""
    manager = logging.root.manager
    saved = {name: (lg.disabled, lg.level, lg.propagate, list(lg.handlers))
             for name, lg in manager.loggerDict.items() if isinstance(lg, logging.Logger)}
    root = (logging.root.level, list(logging.root.handlers))
    yield
    for name, lg in list(manager.loggerDict.items()):
        if isinstance(lg, logging.Logger):
            fresh = (False, logging.NOTSET, True, [])
            lg.disabled, lg.level, lg.propagate, lg.handlers = saved.get(name, fresh)
    logging.root.level, logging.root.handlers = root


def _run_module(module: str, args: list[str], monkeypatch, capsys) -> str:
    """``python -m module *args`` in this process (``runpy``, as the interpreter runs it); its stdout."""
    script = _source(module)
    monkeypatch.setattr(sys, "argv", [str(script), *args])
    monkeypatch.setenv("HYDRA_FULL_ERROR", "1")  # a failure shows its real cause (``--debug`` sets it too)
    capsys.readouterr()
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    except SystemExit as stop:
        assert stop.code in (0, None), f"python -m {module} {shlex.join(args)} exited with {stop.code}"
    return capsys.readouterr().out


def _sweep_values(value: str) -> list[str]:
    """The values of a Hydra sweep override value (``a,b`` or a sweep function), or ``[value]``."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    override = OverridesParser.create().parse_override(f"k={value}")
    if not override.is_sweep_override():
        return [value]
    return [str(v) for v in override.sweep_string_iterator()]


def _first_values(args: list[str]) -> list[str]:
    out = []
    for arg in args:
        key, eq, value = arg.partition("=")
        if eq and not arg.startswith("-") and value:
            value = _sweep_values(value)[0]
        out.append(f"{key}={value}" if eq else arg)
    return out


def _with_written_layouts(args: list[str]) -> list[str]:
    """A guide's ``layout=NAME`` names the file its first command (``python -m src.layout ... out=
    conf/layout/NAME.yaml``) writes: stand one in, on Hydra's search path, when the project has none."""
    from src.core.skeleton import BODY_FOOT, LAYOUT_DIR

    names = [a.partition("=")[2] for a in args if a.startswith("layout=")]
    missing = [n for n in names if not (LAYOUT_DIR / f"{n}.yaml").is_file()]
    if not missing:
        return args
    folder = Path(tempfile.mkdtemp()) / "layout"
    folder.mkdir()
    for name in missing:
        BODY_FOOT.save(folder / f"{name}.yaml")
    return [*args, f"hydra.searchpath=[file://{folder.parent}]"]


def check_hydra(module: str, args: list[str], monkeypatch, capsys) -> None:
    if "--help" in args:
        out = _run_module(module, args, monkeypatch, capsys)
        assert out.strip(), f"python -m {module} --help printed nothing"
        return
    multirun = "-m" in args or "--multirun" in args
    args = [a for a in args if a not in ("-m", "--multirun")]
    if multirun:
        args = _first_values(args)
    args = _with_written_layouts(args)
    cfg = OmegaConf.create(_run_module(module, [*args, "--cfg", "job"], monkeypatch, capsys))
    for arg in args:  # quoted values reach the config unchanged (shard URLs: docs/data.md)
        key, _, value = arg.partition("=")
        if key.endswith(".urls"):
            assert "{0000" in value and OmegaConf.select(cfg, key) == value.strip('"'), arg
    if multirun:
        hydra_cfg = OmegaConf.create(_run_module(module, [*args, "--cfg", "hydra"], monkeypatch, capsys))
        params = OmegaConf.select(hydra_cfg, "hydra.sweeper.params") or {}
        assert params or any("=" in a and _sweep_values(a.partition("=")[2])[1:] for a in args), \
            "a -m line without anything to sweep"
        for key, values in params.items():
            for value in _sweep_values(str(values).replace("\n", "")):
                _run_module(module, [*args, f"{key}={value.strip()}", "--cfg", "job"], monkeypatch, capsys)


def check_plain(module: str, args: list[str], monkeypatch, capsys) -> None:
    assert importlib.util.find_spec(module) is not None, f"no module {module}"
    if module == "src.sweep_report":
        assert "usage" in _run_module(module, ["--help"], monkeypatch, capsys)
    elif module == "bench":
        from bench.__main__ import AREAS

        assert set(args) <= set(AREAS), f"unknown bench areas {set(args) - set(AREAS)}; known: {AREAS}"


def check_python(argv: list[str], monkeypatch, capsys) -> None:
    assert argv[1] == "-m", f"run modules with python -m: {shlex.join(argv)}"
    module, args = argv[2], argv[3:]
    assert module.split(".")[0] in ("src", "sharding", "bench") and _source(module).is_file(), \
        f"{module}: not an entry point of this project"
    if _is_hydra(module):
        check_hydra(module, args, monkeypatch, capsys)
    else:
        check_plain(module, args, monkeypatch, capsys)


def check_make(argv: list[str], monkeypatch, capsys) -> None:
    variables = dict(a.split("=", 1) for a in argv[1:] if "=" in a)
    targets = [a for a in argv[1:] if "=" not in a and not a.startswith("-")]
    assert targets, "make without a target"
    missing = set(targets) - make_targets()
    assert not missing, f"Makefile has no target {missing}"
    extra = shlex.split(variables.get("ARGS", ""))
    if "train" in targets:
        experiment = f"+experiment={variables.get('EXP', 'smoke')}"
        check_hydra("src.train", [experiment, *extra], monkeypatch, capsys)
    elif "bench-runtime" in targets and extra:
        check_hydra("bench.runtime", extra, monkeypatch, capsys)


def check_command(command: str, monkeypatch, capsys) -> None:
    if NOT_CHECKED in command:
        why = command.split(NOT_CHECKED, 1)[1].strip()
        assert why, "say why a command is not checked"
        return
    argv = shlex.split(command, comments=True)
    while argv and ENV.match(argv[0]):  # NODE_RANK=0 MASTER_ADDR=... python -m ...
        argv = argv[1:]
    assert argv, command
    tool = argv[0]
    if tool == "python":
        check_python(argv, monkeypatch, capsys)
    elif tool == "make":
        check_make(argv, monkeypatch, capsys)
    elif tool == "torchrun":
        at = argv.index("-m")
        check_python(["python", *argv[at:]], monkeypatch, capsys)
    elif tool == "sbatch":
        script = next(a for a in argv[1:] if not a.startswith("-"))
        assert (ROOT / script).is_file(), f"no batch script {script}"
        extra = argv[argv.index(script) + 1:]  # what the script hands on to src.train
        check_hydra("src.train", ["+experiment=deep_wholebody", "name=deep_wholebody", "trainer.num_nodes=2",
                                  "trainer.devices=4", *extra], monkeypatch, capsys)
    else:
        raise AssertionError(f"{tool}: not a command this test knows; end it with '{NOT_CHECKED} <why>'")


COMMANDS = doc_commands()


def test_the_documents_quote_the_commands_users_run():
    lines = [c for _, c in COMMANDS]
    assert len(lines) >= 40
    for needed in ("make train", "make test", "python -m src.predict", "python -m src.export",
                   "python -m src.train +experiment=deep_wholebody trainer.devices=4", "python -m sharding"):
        assert any(c.startswith(needed) for c in lines), needed
    urls = [c for c in lines if ".urls=" in c]
    assert len(urls) >= 5 and any("pipe:aws" in c for c in urls) and any("https://" in c for c in urls)


@pytest.mark.parametrize("where,command", COMMANDS, ids=[w for w, _ in COMMANDS])
def test_documented_command_parses(where, command, monkeypatch, capsys):
    check_command(command, monkeypatch, capsys)


# -- the documents' shape -----------------------------------------------------------------------------------
def test_readme_is_a_front_door():
    lines = README.read_text().splitlines()
    assert len(lines) <= 200, f"README.md has {len(lines)} lines; reference belongs in docs/"


def _links(path: Path) -> list[str]:
    return [t for t in re.findall(r"\]\(([^)\s]+)\)", path.read_text()) if not re.match(r"[a-z]+:", t)]


def test_every_linked_page_exists():
    for path in [*DOCS, CHANGELOG]:
        for target in _links(path):
            file = target.split("#", 1)[0]
            if file:
                assert (path.parent / file).exists(), f"{path.relative_to(ROOT)} links {target}: missing"
    pages = {p.name for p in (ROOT / "docs").glob("*.md")} - {"README.md"}
    linked = {Path(t.split("#")[0]).name for t in _links(README) + _links(INDEX)}
    assert pages <= linked, f"pages not linked from README.md or docs/README.md: {pages - linked}"


def _anchor(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_every_link_anchor_exists():
    for path in [*DOCS, CHANGELOG]:
        for target in _links(path):
            file, _, anchor = target.partition("#")
            if not anchor:
                continue
            page = (path.parent / file) if file else path
            headings = re.findall(r"^#+\s+(.*)$", page.read_text(), re.M)
            where = path.relative_to(ROOT)
            assert anchor in {_anchor(h) for h in headings}, f"{where}: no #{anchor} in {page.name}"


def test_documents_speak_of_the_project_not_of_its_history():
    for path in [*DOCS, CHANGELOG]:
        for no, line in enumerate(path.read_text().splitlines(), 1):
            history = re.search(r"\bsessions?\b|\bissues?\b", line, re.I)
            assert not history, f"{path.relative_to(ROOT)}:{no}: {line}"


def test_documents_name_no_old_paths():
    old = re.compile(r"src/(runs|bench|skeleton\.py|checkpoint\.py|record\.py|image_io\.py|cli\.py)\b"
                     r"|src/model/(module|loss|solver)\.py|BENCHMARKS\.md")
    for path in [*DOCS, CHANGELOG]:
        text = path.read_text()
        if path == CHANGELOG or path.name == "decisions.md":  # they describe the old layout on purpose
            continue
        assert not old.search(text), f"{path.relative_to(ROOT)}: {old.search(text).group(0)}"
