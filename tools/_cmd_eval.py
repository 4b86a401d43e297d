"""``delgrad eval NETWORK``: test accuracy of a network file on a driver (one JSON line).

For example ``delgrad eval runs/hw/network.npz --driver emulator-bss2 --chip-seed 1
--input-repeat 5``.
"""

from __future__ import annotations

import argparse
import json
import sys

from delgrad.errors import DelgradError
from delgrad.tools._eval_network import evaluate


def register(parser: argparse.ArgumentParser) -> None:
    """Add the arguments of ``delgrad eval``."""
    parser.add_argument("network", help="a network file (network.npz of delgrad train)")
    parser.add_argument("--driver", default="emulator-bss2", help="default emulator-bss2")
    parser.add_argument("--chip-seed", type=int, default=0, help="emulator-bss2: chip seed")
    parser.add_argument("--input-repeat", type=int, default=1, help="copies of each input")
    parser.add_argument("--batch", type=int, default=40, help="trials per run call")
    parser.add_argument("--repeats", type=int, default=5, help="passes over the test set")


def run(args: argparse.Namespace) -> int:
    """Print ``{"network", "driver", "chip_seed", "test_accuracy"}`` as one JSON line.

    Returns:
        0 on success, 2 on an unknown driver or a missing or unreadable network file.
    """
    try:
        acc = evaluate(
            args.network,
            args.driver,
            chip_seed=args.chip_seed,
            input_repeat=args.input_repeat,
            batch=args.batch,
            repeats=args.repeats,
        )
    except (DelgradError, OSError) as exc:
        print(f"delgrad eval: {exc}", file=sys.stderr)
        return 2
    result = {
        "network": args.network,
        "driver": args.driver,
        "chip_seed": args.chip_seed,
        "test_accuracy": acc,
    }
    print(json.dumps(result))
    return 0
