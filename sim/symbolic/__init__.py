"""Symbolic right-hand sides shared by the ODE solvers and the models that read their data.

Both ``solvers.odes`` (which writes equations into the store) and ``sim.models.prose``
(which reads them back and generates new ones) need the same prefix notation and the same
numeric evaluation, so they live here, below both: this package depends only on sympy,
numpy and :mod:`sim.errors`.
"""

from sim.symbolic.numeric import rhs_function, state_symbols
from sim.symbolic.prefix import (SEPARATOR, PrefixError, from_prefix, parse_prefix, plain_number_reader,
                                 plain_number_tokens, prefix_tokens, split_components, to_prefix)

__all__ = ["SEPARATOR", "PrefixError", "from_prefix", "parse_prefix", "plain_number_reader", "plain_number_tokens",
           "prefix_tokens", "rhs_function", "split_components", "state_symbols", "to_prefix"]
