"""The user-facing docs stay true: every shipped recipe is in training.md's table,
docs/index.md links resolve, and every ``delgrad ...`` command in the code blocks
of the getting-started guide, the cluster and fleet pages, the NIR page,
performance.md, sensors.md and the README parses with the real command's parser."""

from __future__ import annotations

import argparse
import re
import shlex
from pathlib import Path

import pytest

from delgrad.runtime import shipped_configs
from delgrad.tools._cli import COMMANDS, _register

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"


def test_training_md_lists_every_shipped_recipe() -> None:
    text = (DOCS / "training.md").read_text()
    table = text[text.index("## Shipped recipes") :]
    missing = [name for name in shipped_configs() if f"| `{name}` |" not in table]
    assert not missing, f"docs/training.md's recipe table lacks {missing}"


def test_index_links_resolve() -> None:
    text = (DOCS / "index.md").read_text()
    links = re.findall(r"\]\(([^)#]+)", text)
    assert len(links) >= 10
    for link in links:
        assert (DOCS / link).exists(), link


def _commands(path: Path) -> list[str]:
    text = path.read_text()
    blocks = re.findall(r"```bash\n(.*?)```", text, re.S)
    # a command continued over lines with a backslash is one line
    lines = [ln.strip() for b in blocks for ln in b.replace("\\\n", " ").splitlines()]
    return [ln.split("#")[0].strip() for ln in lines if ln.startswith("delgrad ")]


DOCUMENTED = [
    (path.name, line)
    for path in (
        DOCS / "getting-started.md",
        DOCS / "cluster.md",
        DOCS / "fleet.md",
        DOCS / "nir.md",
        DOCS / "performance.md",
        DOCS / "sensors.md",
        ROOT / "README.md",
    )
    for line in _commands(path)
]


def test_the_guide_has_commands() -> None:
    names = {shlex.split(line)[1] for _, line in DOCUMENTED}
    assert {"run", "monitor", "cmd", "plot", "export-nir", "import-nir"} <= names


@pytest.mark.parametrize(("doc", "line"), DOCUMENTED)
def test_documented_command_parses(doc: str, line: str) -> None:
    argv = shlex.split(line)
    # the command ends where the shell takes over (a redirection, pipe or list)
    ends = [i for i, word in enumerate(argv) if word in {">", ">>", "|", "&&", "&", ";"}]
    argv = argv[: ends[0]] if ends else argv
    name = argv[1]
    assert name in COMMANDS, f"{doc}: unknown command in {line!r}"
    parser = argparse.ArgumentParser(prog=f"delgrad {name}", exit_on_error=False)
    _register(parser, name, COMMANDS[name][0])
    try:
        parser.parse_args(argv[2:])
    except (argparse.ArgumentError, SystemExit) as exc:
        pytest.fail(f"{doc}: {line!r} does not parse: {exc}")


def test_performance_md_names_the_machine_and_keeps_history_elsewhere() -> None:
    text = (DOCS / "performance.md").read_text()
    assert "**Machine.**" in text and "CHANGELOG.md" in text
    assert "Before the kernel work" not in text.split("## Core kernels")[0]
    assert "## Performance history" in (ROOT / "CHANGELOG.md").read_text()
