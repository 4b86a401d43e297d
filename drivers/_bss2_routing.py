"""Fan-in limits of the BrainScaleS-2 router, checked before the stack is asked to route.

grenade refuses a network whose synapses do not fit the synapse rows
(electronicvisions/grenade ``src/grenade/vx/network/routing/greedy/routing_constraints.cpp``,
``RoutingConstraints::check``): a neuron's in-degree (synapses, per receptor type summed)
at most the rows of a synapse array, 256 (halco ``SynapseRowOnSynram``), and its
in-degree over one PADI bus at most that bus's rows, 32 drivers x 2 rows = 64
(``SynapseDriverOnPADIBus``, ``SynapseRowOnSynapseDriver``). Events of an on-chip
neuron reach the bus fixed by its column: column // 32 is its event output
(halco ``NeuronColumnOnDLS::toNeuronEventOutputOnDLS``, 256 columns on 8 outputs) and
the bus is that crossbar input modulo 4 (``InternalConnection::toPADIBusOnDLS``).
External (spike-source) inputs are spread over the 4 buses by the router.

The driver builds an excitatory and an inhibitory all-to-all projection per block of
inputs, and pynn-brainscales gives every connection at least one synapse even at
weight 0 (``projections.py``, ``Connection.round_up_63``: ``max(1, ceil(|w| / 63))``),
so each input costs a neuron 2 synapses: at most 128 inputs per layer.
"""

from __future__ import annotations

from delgrad.drivers._bss2_io import DELAY_FIRST_CIRCUIT
from delgrad.errors import CapabilityError
from delgrad.runtime import Network

#: Synapse rows of one synapse array: the most synapses one neuron can receive.
SYNAPSE_ROWS = 256
#: Synapse rows behind one PADI bus (32 synapse drivers x 2 rows).
PADI_BUS_ROWS = 64
#: PADI buses per synapse array.
PADI_BUSES = 4
#: Neuron columns per event output (256 columns / 8 outputs).
COLUMNS_PER_EVENT_OUTPUT = 32
#: Synapses one input takes on each neuron of its layer: the excitatory and the
#: inhibitory projection, one synapse each (network weights are <= 63).
SYNAPSES_PER_INPUT = 2
#: Inputs (bias inputs included) a layer can have.
MAX_INPUTS_PER_LAYER = SYNAPSE_ROWS // SYNAPSES_PER_INPUT


def padi_bus_of(circuit: int) -> int:
    """PADI bus (0..3) that carries the events of the neuron on ``circuit``."""
    return (circuit % 256) // COLUMNS_PER_EVENT_OUTPUT % PADI_BUSES


def fan_in_problems(net: Network) -> list[str]:
    """Per layer, why its inputs cannot be routed (empty when all fit); ``net`` placed as
    :func:`~delgrad.drivers._bss2_io.circuit_layout` places it."""
    problems = []
    pair = 0
    first_neuron = 0
    for index, layer in enumerate(net.layers):
        n_pre = layer.n_pre
        on_chip: list[int] = []
        external = 0
        if layer.delay == "axonal":  # every input, bias included, from its adaptation circuit
            on_chip = [DELAY_FIRST_CIRCUIT + 2 * (pair + k) + 1 for k in range(n_pre)]
            pair += n_pre
        elif index == 0:
            external = n_pre
        else:
            prev = net.layers[index - 1].n_out
            on_chip = list(range(first_neuron - prev, first_neuron))
            external = n_pre - layer.n_in  # bias inputs are spike sources
        first_neuron += layer.n_out
        rows = SYNAPSES_PER_INPUT * n_pre
        bias = f" ({layer.n_in} + {n_pre - layer.n_in} bias)" if n_pre > layer.n_in else ""
        if rows > SYNAPSE_ROWS:
            problems.append(
                f"layer {index}: {n_pre} inputs{bias} need {rows} synapses per neuron, "
                f"the router has {SYNAPSE_ROWS} rows (at most {MAX_INPUTS_PER_LAYER} inputs)"
            )
            continue
        per_bus = [0] * PADI_BUSES
        for circuit in on_chip:
            per_bus[padi_bus_of(circuit)] += 1
        full = [b for b in range(PADI_BUSES) if SYNAPSES_PER_INPUT * per_bus[b] > PADI_BUS_ROWS]
        if full:
            b = full[0]
            problems.append(
                f"layer {index}: {per_bus[b]} of its inputs come from neurons whose events "
                f"share PADI bus {b} ({SYNAPSES_PER_INPUT * per_bus[b]} synapse rows, a bus "
                f"has {PADI_BUS_ROWS})"
            )
            continue
        free = sum((PADI_BUS_ROWS - SYNAPSES_PER_INPUT * n) // SYNAPSES_PER_INPUT for n in per_bus)
        if external > free:
            problems.append(
                f"layer {index}: {external} spike-source inputs, but its other inputs leave "
                f"PADI-bus rows for {free}"
            )
    return problems


def check_fan_in(net: Network) -> None:
    """Raise :class:`CapabilityError` naming each layer whose inputs cannot be routed."""
    problems = fan_in_problems(net)
    if problems:
        raise CapabilityError(
            "network does not fit the BrainScaleS-2 router (each input takes 2 synapses on "
            "every neuron of its layer: an excitatory and an inhibitory projection, a zero "
            "weight still takes one): " + "; ".join(problems) + f". To fit it: at most "
            f"{MAX_INPUTS_PER_LAYER} inputs per layer, bias included, and a previous layer "
            f"of at most {MAX_INPUTS_PER_LAYER} neurons; merge or pool input channels (e.g. "
            "28 x 28 pixels pooled to 11 x 11 = 121) or use a smaller hidden layer; one "
            "signed projection is not possible, pynn-brainscales fixes the sign per receptor"
        )
