"""DelGrad Runtime: exact event-based learning for spiking neural networks.

The packages form floors; every import points down (docs/architecture.md)::

    delgrad.tools            the `delgrad` command, apps, plots, benchmarks
    delgrad.drivers          emulator, BrainScaleS-2, recording fake
    delgrad.runtime.service  the asyncio service of one device
    delgrad.runtime          synchronous DelGrad library  |  delgrad.protocols  wire and bus
    delgrad.errors           the one exception tree

This module is the namespace root and imports nothing: ``delgrad.errors`` lives
here (file ``runtime/_root/``) so that the wire codec can share the error tree
without importing the runtime's numba kernels.
"""
