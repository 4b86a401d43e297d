"""Pure numba kernels: arrays and scalars in, caller-owned ``out`` arrays written.

Split by job: ``_forward`` (spike times), ``_backward`` (gradient terms),
``_updates`` (parameter updates). No classes, logging or validation here; the
wrappers in ``delgrad.runtime`` validate, the kernels trust.
"""
