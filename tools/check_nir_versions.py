"""Which ``nir`` releases read and write this project's NIR files (the declared lower bound).

For each version: a fresh virtual environment with this project and ``nir==V``
(pip's cache makes it about a minute each), in which a check writes the exact file
of a synaptic-delay network and the ``--for`` files of a weights-only one, reads
them back to identical networks, and reads the same files written by the
installed (newest) ``nir``. Run::

    python tools/check_nir_versions.py 1.0.0 1.0.4 1.0.5 1.0.6 1.0.7 1.0.8

One line per version: whether it writes (and reads back) and whether it reads
the newest version's files, with the first error of each. Too slow for CI; the finding
(1.0.6 is the oldest that works) is recorded in docs/nir.md and pyproject.toml.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

CHECK = r"""
import sys
from pathlib import Path
import numpy as np
from delgrad.runtime import Layer, Network, NeuronParams
from delgrad.tools._nir import read_nir, to_nir, write_nir_graph
from delgrad.tools._nir_consumers import to_nir_for

def net(kind):
    rng = np.random.default_rng(0)
    layers = [Layer(4, 8, kind), Layer(8, 3, kind)]
    return Network(layers, NeuronParams(tau_m=2.0, eps=1e-6),
                   w=[rng.normal(1, 1, ly.weight_shape) for ly in layers],
                   d=[rng.uniform(0, 1, ly.delay_shape) for ly in layers])

folder = Path(sys.argv[1])
write = sys.argv[2] == "write"
cases = {"exact": (net("synaptic"), lambda n: to_nir(n))}
for c in ("snntorch", "norse", "rockpool"):
    cases[c] = (net("none"), lambda n, c=c: to_nir_for(n, c, dt=0.01))
for name, (n, make) in cases.items():
    path = folder / f"{name}.nir"
    if write:
        write_nir_graph(path, make(n))
    back = read_nir(path)
    for a, b in zip(n.w + n.d, back.w + back.d):
        assert np.array_equal(a, b), f"{name}: the network read back differs"
print("ok")
"""


def check(version: str, written: Path) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        venv = Path(tmp) / "venv"
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        pip = [str(venv / "bin" / "pip"), "install", "-q"]
        # the project first, then the release over it (below the declared bound too)
        for args in ([str(REPO)], ["--no-deps", f"nir=={version}"]):
            done = subprocess.run([*pip, *args], capture_output=True, text=True)
            if done.returncode:
                return f"install failed: {done.stderr.strip().splitlines()[-1]}"
        python = str(venv / "bin" / "python")
        own = Path(tmp) / "own"
        own.mkdir()
        found = []
        for folder, mode in ((own, "write"), (written, "read")):
            out = subprocess.run(
                [python, "-c", CHECK, str(folder), mode], capture_output=True, text=True
            )
            last = (out.stderr.strip().splitlines() or ["?"])[-1]
            found.append(f"{mode} {'fails: ' + last if out.returncode else 'ok'}")
    return "; ".join(found)


def main() -> None:
    """Check each version given on the command line."""
    with tempfile.TemporaryDirectory() as tmp:
        written = Path(tmp)
        subprocess.run([sys.executable, "-c", CHECK, str(written), "write"], check=True)
        for version in sys.argv[1:]:
            print(f"nir {version}: {check(version, written)}", flush=True)


if __name__ == "__main__":
    main()
