"""Command-line tools and benchmarks of DelGrad Runtime.

The ``delgrad`` command is :func:`delgrad.tools._cli.main` (the console script;
also ``python -m delgrad.tools``). This package exports :class:`Mosquitto`, the
loopback broker process that the end-to-end benchmarks and the tests start.
"""

from delgrad.tools._mosquitto import Mosquitto, free_port, mosquitto_binary

__all__ = ["Mosquitto", "free_port", "mosquitto_binary"]
