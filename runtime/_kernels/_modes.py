"""Spike-time solver modes, chosen by the ratio tau_m / tau_s (see NeuronParams.mode).

Plain integers so numba kernels read them as compile-time constants.
"""

MODE_GENERAL, MODE_EQUAL, MODE_DOUBLE = 0, 1, 2
