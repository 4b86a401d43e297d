"""``delgrad completion``: the generated bash script completes subcommands, options,
choices and paths, and every path option it names still exists."""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from delgrad.tools._cmd_completion import PATHS, completion_parser


def _complete(script: Path, cwd: Path, *words: str) -> list[str]:
    """COMPREPLY of the generated bash function for ``delgrad WORDS`` (the last word
    is the one being completed)."""
    array = " ".join(f'"{w}"' for w in ("delgrad", *words))
    program = (
        f"source {script}; COMP_WORDS=({array}); COMP_CWORD={len(words)}; "
        'COMP_LINE="${COMP_WORDS[*]}"; COMP_POINT=${#COMP_LINE}; '
        '_shtab_delgrad; printf "%s\\n" "${COMPREPLY[@]}"'
    )
    out = subprocess.run(
        ["bash", "-c", program], capture_output=True, text=True, cwd=cwd, check=True
    )
    return out.stdout.split()


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash not installed")
def test_bash_script_completes_commands_options_choices_and_files(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "delgrad", "completion", "bash"],
        capture_output=True,
        text=True,
        check=True,
    )
    script = tmp_path / "delgrad.bash"
    script.write_text(out.stdout)
    (tmp_path / "lab.toml").write_text("")
    assert _complete(script, tmp_path, "tr") == ["train"]
    assert _complete(script, tmp_path, "run", "--rec") == ["--recipe"]
    assert sorted(_complete(script, tmp_path, "bench", "")) == sorted(
        ["chaos", "core", "drift", "drivers", "e2e", "fleet", "protocol", "soak"]
    )
    assert _complete(script, tmp_path, "run", "--config", "la") == ["lab.toml"]


def test_zsh_and_tcsh_scripts_name_the_command() -> None:
    for shell, mark in (("zsh", "#compdef delgrad"), ("tcsh", "complete delgrad")):
        out = subprocess.run(
            [sys.executable, "-m", "delgrad", "completion", shell],
            capture_output=True,
            text=True,
            check=True,
        )
        assert mark in out.stdout, shell


def test_every_path_option_exists() -> None:
    parser = completion_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    for name, dest in PATHS:
        options = {a.dest: a for a in sub.choices[name]._actions}
        assert dest in options, (name, dest)
        assert getattr(options[dest], "complete", None) == PATHS[name, dest]
