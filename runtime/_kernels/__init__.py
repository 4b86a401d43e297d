"""Pure numba kernels: arrays and scalars in, caller-owned ``out`` arrays written.

Split by job: ``_forward`` (spike times), ``_backward`` (gradient terms),
``_updates`` (parameter updates); ``_shared`` has both passes for layers whose
arrival order is the same for every neuron (no synaptic delays), which scale to
hundreds of inputs and neurons. No classes, logging or validation here; the
wrappers in ``delgrad.runtime`` validate, the kernels trust.
"""
