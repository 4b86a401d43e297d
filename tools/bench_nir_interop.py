"""Agreement of snnTorch, Norse and Rockpool with the exact forward pass on NIR files.

Forward: the authors' weights-only Yin-Yang network (``yin_yang_H30_W.npz`` in the
reference folder) is written by ``to_nir_for`` (= ``delgrad export-nir --for F
--dt DT``), read by each framework's own importer and run on the 1000 test
samples (protocol in :mod:`delgrad.tools._nir_run`); compared with the exact pass:
accuracy, fraction of samples classified the same, median |difference| of the
output spike times where both spike. Reverse: the same network built in snnTorch
and Norse (:func:`snntorch_network`, :func:`norse_network`), run there, exported
by their own ``to_nir`` and read by :func:`import_nir`; and a network trained in
snnTorch (:func:`train_in_snntorch`, ``--train-epochs``), run and exported there the
same way. Delay networks: the refusal for each framework. Needs the ``[interop]``
extra::

    python -m delgrad.tools.bench_nir_interop --dt 0.01 0.001 --train-epochs 30

Prints a Markdown table (``--json`` for one JSON line per row).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import nir
import numpy as np

from delgrad.errors import ParameterError
from delgrad.runtime import (
    Layer,
    Network,
    NeuronParams,
    encode_yinyang,
    forward,
    predict,
    yinyang_split,
)
from delgrad.tools._nir import import_nir, write_nir_graph
from delgrad.tools._nir_consumers import to_nir_for
from delgrad.tools._nir_run import (
    FRAMEWORKS,
    input_steps,
    norse_network,
    run_file,
    run_module,
    snntorch_network,
)

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "delgrad_reference"
#: Step of the snnTorch training, in tau_s (coarse: back-propagation through every step).
TRAIN_DT = 0.05


def load_reference(path: Path, kind: str) -> Network:
    """An authors' network file (docs: ../shared/delgrad_reference/README) with eps = 1e-6."""
    with np.load(path, allow_pickle=False) as data:
        names = sorted(
            (k for k in data.files if k.endswith("_final")), key=lambda k: int(k[1 : k.index("_")])
        )
        w = [data[k] for k in names if "NeuronLayer" in k]
        d = [data[k].reshape(-1) if kind == "axonal" else data[k] for k in names if "Delay" in k]
    layers = [Layer(x.shape[0], x.shape[1], kind) for x in w]  # type: ignore[arg-type]
    return Network(layers, NeuronParams(tau_m=2.0, theta=1.0, eps=1e-6), w, d or None)


def _compare(theirs: np.ndarray, ours: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    both = np.isfinite(theirs) & np.isfinite(ours)
    p_theirs, p_ours = predict(theirs), predict(ours)
    return {
        "accuracy_theirs": float(np.mean(p_theirs == labels)),
        "accuracy_exact": float(np.mean(p_ours == labels)),
        "same": float(np.mean(p_theirs == p_ours)),
        "median_abs_dt": float(np.median(np.abs(theirs[both] - ours[both])))
        if both.any()
        else None,
    }


def forward_rows(net: Network, dts: list[float], n: int) -> list[dict[str, Any]]:
    """Our export, their importer."""
    x, y = yinyang_split("test")[:2]
    t_in, labels = encode_yinyang(x[:n]), np.asarray(y[:n])
    exact = forward(net, t_in)[-1]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for dt in dts:
            for fw in FRAMEWORKS:
                path = write_nir_graph(Path(tmp) / f"{fw}.nir", to_nir_for(net, fw, dt=dt))
                start = time.perf_counter()
                theirs = run_file(fw, path, t_in, dt=dt)
                row = {"direction": "delgrad -> " + fw, "dt": dt, "samples": n}
                row |= _compare(theirs, exact, labels)
                rows.append(row | {"seconds": round(time.perf_counter() - start, 1)})
    return rows


def train_in_snntorch(epochs: int, dt: float, seed: int = 0) -> Network:
    """A 4-30-3 Yin-Yang network trained in snnTorch, as a DelGrad network.

    snnTorch ``Synaptic`` neurons (alpha = 1 - dt, beta = 1 - dt / 2, threshold 1,
    its default arctan surrogate gradient) at step ``dt`` tau_s; every neuron's
    spikes after its first are masked (first spikes, as DelGrad); the loss is the
    cross-entropy of the outputs' spikes weighted by how early they come. Adam,
    lr 3e-3, batches of 100 of the 5000 training samples. The weights come back
    divided by ``dt`` with theta = 1 (the same network: the membrane scales by 1/dt).
    """
    import snntorch as snn
    import torch

    torch.manual_seed(seed)
    x, y = yinyang_split("train")[:2]
    steps = input_steps(encode_yinyang(x), dt)
    labels = torch.tensor(np.array(y))
    lins = [torch.nn.Linear(4, 30, bias=False), torch.nn.Linear(30, 3, bias=False)]
    cells = [snn.Synaptic(alpha=1 - dt, beta=1 - dt / 2, threshold=1.0) for _ in lins]
    with torch.no_grad():
        for lin in lins:
            lin.weight.normal_(0.5 * dt, dt)  # DelGrad's yinyang_H30_W init, times dt
    opt = torch.optim.Adam([p for lin in lins for p in lin.parameters()], lr=3e-3)
    n_steps = steps.shape[0]
    for _ in range(epochs):
        order = torch.randperm(steps.shape[1])
        for start in range(0, len(order), 100):
            idx = order[start : start + 100]
            state = [cell.init_synaptic() for cell in cells]
            fired = [torch.zeros(len(idx), lin.out_features) for lin in lins]
            logits = torch.zeros(len(idx), 3)
            for k in range(n_steps):
                z = steps[k, idx]
                for j, (lin, cell) in enumerate(zip(lins, cells, strict=True)):
                    z, syn, mem = cell(lin(z), *state[j])
                    state[j] = (syn, mem)
                    z = z * (1 - fired[j])
                    fired[j] = fired[j] + z.detach()
                logits = logits + z * 5 * (n_steps - k) / n_steps
            loss = torch.nn.functional.cross_entropy(logits, labels[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    layers = [Layer(4, 30, "none"), Layer(30, 3, "none")]
    w = [lin.weight.detach().numpy().T.astype(np.float64) / dt for lin in lins]
    return Network(layers, NeuronParams(tau_m=2.0, theta=1.0), w)


def reverse_rows(
    net: Network, dts: list[float], n: int, trained: Network | None = None
) -> list[dict[str, Any]]:
    """Built and exported in the framework, imported here; "theirs" is the native run."""
    import torch

    x, y = yinyang_split("test")[:2]
    t_in, labels = encode_yinyang(x[:n]), np.asarray(y[:n])
    rows = []
    cases = [(dt, fw, net) for dt in dts for fw in ("snntorch", "norse")]
    if trained is not None:
        cases.append((TRAIN_DT, "snntorch (trained there)", trained))
    for dt, name, model in cases:
        fw = name.split()[0]
        start = time.perf_counter()
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            if fw == "snntorch":
                from snntorch.export_nir import export_to_nir

                module = snntorch_network(model, dt)
                native = run_module(fw, module, t_in, 3, dt=dt)
                graph = export_to_nir(module, torch.zeros(model.layers[0].n_in))
            else:
                import norse.torch

                module = norse_network(model, dt)
                native = run_module(fw, module, t_in, 3, dt=dt)
                graph = norse.torch.to_nir(module, torch.zeros(model.layers[0].n_in))
        with tempfile.TemporaryDirectory() as tmp:
            nir.write(str(Path(tmp) / "g.nir"), graph)
            back, convention = import_nir(nir.read(str(Path(tmp) / "g.nir")))
        ours = forward(back, t_in)[-1]
        row = {"direction": f"{name} -> delgrad", "dt": dt, "samples": n}
        row |= _compare(native, ours, labels) | {"read_as": convention.name}
        rows.append(row | {"seconds": round(time.perf_counter() - start, 1)})
    return rows


def delay_rows(reference: Path) -> list[dict[str, Any]]:
    """Every framework refuses the delay networks at export."""
    rows = []
    for stem, kind in (("H30_WA", "axonal"), ("H30_WS", "synaptic")):
        net = load_reference(reference / f"yin_yang_{stem}.npz", kind)
        for fw in FRAMEWORKS:
            try:
                to_nir_for(net, fw)
                refusal = ""
            except ParameterError as exc:
                refusal = str(exc).split(" (")[0]
            rows.append({"direction": f"delgrad {stem} -> {fw}", "refused": refusal})
    return rows


def main() -> None:
    """Run the comparison and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dt", type=float, nargs="+", default=[0.01, 0.001])
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--reference", type=Path, default=REFERENCE)
    parser.add_argument("--train-epochs", type=int, default=0, help="0: no snnTorch training")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)  # tiny tensors: more threads only contend
    net = load_reference(args.reference / "yin_yang_H30_W.npz", "none")
    trained = train_in_snntorch(args.train_epochs, TRAIN_DT) if args.train_epochs else None
    rows = forward_rows(net, args.dt, args.samples)
    rows += reverse_rows(net, args.dt, args.samples, trained)
    rows += delay_rows(args.reference)
    if args.json:
        for row in rows:
            print(json.dumps(row))
        return
    print("| direction | dt (tau_s) | accuracy there | accuracy exact | same class | "
          "median abs dt (tau_s) | s |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        if "refused" in r:
            print(f"| {r['direction']} | | refused: {r['refused']} | | | | |")
            continue
        med = "-" if r["median_abs_dt"] is None else f"{r['median_abs_dt']:.4f}"
        print(
            f"| {r['direction']} | {r['dt']:g} | {100 * r['accuracy_theirs']:.1f} % | "
            f"{100 * r['accuracy_exact']:.1f} % | {100 * r['same']:.1f} % | {med} | "
            f"{r['seconds']:g} |"
        )


if __name__ == "__main__":
    main()
