"""The ``delgrad`` command: its table of subcommands, the entry points, ``delgrad bench``'s
parser, ``delgrad eval`` and ``delgrad summarize``, and the rule that tools import only
public names of the other packages."""

from __future__ import annotations

import argparse
import ast
import importlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import delgrad.tools
from delgrad.runtime import Layer, Network, NeuronParams, save_network
from delgrad.tools._bench_e2e import parse_overrides
from delgrad.tools._cli import COMMANDS, build_parser, main

TOOLS = Path(delgrad.tools.__file__).resolve().parent


def test_every_subcommand_registers() -> None:
    assert list(COMMANDS) == sorted(COMMANDS)
    for name, (module, _) in COMMANDS.items():
        assert callable(importlib.import_module(module).run), name
    text = build_parser().format_help()
    assert all(name in text for name in COMMANDS)
    assert build_parser(full=True).parse_args(["bench", "core"]).what == "core"


@pytest.mark.parametrize("module", ["delgrad.tools", "delgrad.tools._cli"])
def test_python_dash_m_runs_the_command(module: str) -> None:
    out = subprocess.run(
        [sys.executable, "-W", "error", "-m", module, "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert "summarize" in out.stdout and "eval" in out.stdout
    assert out.stderr == ""


def test_help_imports_no_subcommand_module() -> None:
    code = (
        "import contextlib, sys\n"
        "from delgrad.tools._cli import main\n"
        "with contextlib.suppress(SystemExit):\n"
        "    main(['--help'])\n"
        "print(sorted(m for m in sys.modules if m.startswith(('numba', 'delgrad.tools._cmd'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip().endswith("[]"), out.stdout + out.stderr


def _parse(*argv: str) -> argparse.Namespace:
    module = importlib.import_module(COMMANDS["bench"][0])
    parser = argparse.ArgumentParser(prog="delgrad bench")
    module.register(parser)
    return parser.parse_args(list(argv))


def test_bench_parser_keeps_the_documented_forms() -> None:
    args = _parse("core", "--repeats", "9")
    assert (args.what, args.repeats, args.sweep) == ("core", 9, False)
    args = _parse("core", "--sweep", "--threads", "2")
    assert (args.sweep, args.threads) == (True, 2)
    args = _parse("core", "--thread-scaling")
    assert (args.thread_scaling, args.sweep, args.threads) == (True, False, None)
    with pytest.raises(SystemExit):
        _parse("core", "--sweep", "--thread-scaling")
    assert _parse("protocol").what == "protocol"
    assert _parse("drivers", "--repeats", "3").repeats == 3
    args = _parse("e2e", "memory", "--rate", "20000", "--overload", "10")
    assert (args.what, args.kind, args.rate, args.overload) == ("e2e", "memory", 20000.0, 10.0)
    with pytest.raises(SystemExit):
        _parse("e2e", "bandwidth")


def test_bench_e2e_overrides() -> None:
    assert parse_overrides(["inference.max_batch=2048", "join.capacity=5", 'a.b="x"']) == {
        "inference": {"max_batch": 2048},
        "join": {"capacity": 5},
        "a": {"b": "x"},
    }
    for bad in ("max_batch=3", "inference.max_batch", "inference.max_batch=nope"):
        with pytest.raises(ValueError, match="--set"):
            parse_overrides([bad])
    assert main(["bench", "e2e", "latency", "--set", "x=1"]) == 2


def test_summarize_prints_the_results_table(tmp_path: Path, capsys) -> None:
    for seed, acc in ((0, 0.97), (1, 0.99), (2, 0.98)):
        run = tmp_path / f"yinyang_H30_WS_seed{seed}"
        run.mkdir()
        result = {
            "config_name": "yinyang_H30_WS",
            "seed": seed,
            "test_accuracy": acc,
            "wall_time_s": 10.0 + seed,
            "n_trainable": 420,
        }
        (run / "results.json").write_text(json.dumps(result))
    assert main(["summarize", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("| config | seeds |") and len(lines) == 3
    row = "| yinyang_H30_WS | 0,1,2 | **98.0** | 97.0, 99.0, 98.0 | 98.2 | 420 | 11.0 |"
    assert lines[2] == row


def test_eval_prints_one_json_line(tmp_path: Path, capsys) -> None:
    rng = np.random.default_rng(0)
    layers = [Layer(4, 6, "synaptic"), Layer(6, 3, "synaptic")]
    net = Network(
        layers,
        NeuronParams(tau_m=2.0, theta=1.0),
        w=[rng.normal(1.0, 1.0, ly.weight_shape) for ly in layers],
        d=[rng.uniform(0.0, 1.0, ly.delay_shape) for ly in layers],
    )
    path = save_network(net, tmp_path / "network.npz")
    argv = ["eval", str(path), "--driver", "emulator-ideal", "--repeats", "1", "--batch", "500"]
    assert main(argv) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["network"] == str(path) and result["driver"] == "emulator-ideal"
    assert 0.0 <= result["test_accuracy"] <= 1.0
    assert main(["eval", str(path), "--driver", "no-such-driver"]) == 2
    assert main(["eval", str(tmp_path / "missing.npz"), "--driver", "emulator-ideal"]) == 2
    assert "delgrad eval:" in capsys.readouterr().err


def _private_imports(path: Path) -> list[str]:
    """Imports of another package's private module or name (``delgrad.x._y``, ``_name``)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and not node.level:
            modules, names = [node.module], [a.name for a in node.names]
        elif isinstance(node, ast.Import):
            modules, names = [a.name for a in node.names], []
        else:
            continue
        for module in modules:
            if not module.startswith("delgrad.") or module.startswith("delgrad.tools"):
                continue
            if any(part.startswith("_") for part in module.split(".")):
                found.append(f"{path.name}:{node.lineno} {module}")
            found += [f"{path.name}:{node.lineno} {module}.{n}" for n in names if n[0] == "_"]
    return found


def test_tools_import_only_public_names() -> None:
    wrong = [hit for path in sorted(TOOLS.rglob("*.py")) for hit in _private_imports(path)]
    assert not wrong, "private imports from other packages:\n" + "\n".join(wrong)


def test_newcomer_messages(tmp_path: Path, capsys) -> None:
    # a pickled file given as a network: our words, not numpy's advice to unpickle it
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    assert main(["export-nir", str(tmp_path / "obj.npy"), str(tmp_path / "o.nir")]) == 2
    err = capsys.readouterr().err
    assert "pickled Python objects, which are never loaded" in err and "allow_pickle" not in err
    # train without a config: one line naming what to give, on stderr
    assert main(["train"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("delgrad train: give a config") and "yinyang_hw_W" in err
    # every sweep option says what it is
    parser = argparse.ArgumentParser()
    importlib.import_module("delgrad.tools._cmd_sweep").register(parser)
    assert all(a.help for a in parser._actions if a.dest in {"hidden", "delays", "seeds"})
