r"""Bound propagation through a model's own ``forward``: enclosures of every intermediate tensor
over an input box, and enclosures of the Clarke Jacobian of the output over the box.

Run an unmodified model on an :class:`Interval` box and it is evaluated in interval
arithmetic::

    box = Interval.box(x0, eps, mode="crown")   # x0 ± eps; or mode "ibp"
    out = model(box)                            # out.lo <= model(x) <= out.hi for every x in the box
    jlo, jhi = jacobian_rows(out, rows, box)    # rows (flat output indices) of d out / d x

    out = model(Interval.box(x0, eps, mode="centred"))
    jlo, jhi = out.jacobian()                   # d out / d (perturbed entries of x)

The mode belongs to the box (:data:`MODES`): every interval computed from it follows it, so
boxes of different modes can be used side by side in one process.

- ``"ibp"``: interval arithmetic only. Affine maps use centre/radius form
  (:math:`c' = W c + b`, :math:`r' = |W| r`, exact for one affine layer).
- ``"crown"`` (the default): the same, and a linear layer at the end of a chain
  ``linear -> relu -> linear [-> relu -> linear]`` is also bounded by CROWN
  (:mod:`~sim.verify.crown`) and the two bounds intersected. The intervals are kept on a
  tape, so :func:`jacobian_rows` can run a backward pass (:mod:`~sim.verify.jacobian`) that
  encloses rows of the Clarke Jacobian for every input in the box.
- ``"centred"``: CROWN as above, and every interval also carries the centred form
  (:mod:`~sim.verify.centred`): its value at the centre and an enclosure of its Jacobian,
  carried forward; every enclosure is tightened by the mean value theorem, which keeps
  deep networks from blowing up. It costs one Jacobian column per perturbed input (use it on
  small inputs, e.g. a node's receptive field); :meth:`Interval.jacobian` reads off the
  output's Jacobian, and there is no tape for a backward pass.

Supported: linear, relu, leaky_relu, elu, tanh, sigmoid, gelu, silu, layer_norm (last
dimension), reciprocal, + - * / (interval * interval too), cat, stack, indexing,
index_select, index_add, sum, mean, reshape/view, unsqueeze, and constants mixed in
anywhere. Gathers and scatters are the linear maps they are, so message passing needs no
special rule. Anything else raises :class:`BoundError` naming the operation.

Soundness holds in exact arithmetic; there is no outward rounding, so run bounds in float64.

Modules: :mod:`~sim.verify.interval` (the type, its tape and the table of rules),
:mod:`~sim.verify.pairs` (interval arithmetic on tensor pairs), :mod:`~sim.verify.centred`,
:mod:`~sim.verify.crown`, :mod:`~sim.verify.jacobian`, and the rules:
:mod:`~sim.verify.arithmetic`, :mod:`~sim.verify.linear`, :mod:`~sim.verify.activations`,
:mod:`~sim.verify.layer_norm`, :mod:`~sim.verify.indexing`, :mod:`~sim.verify.structure`.
"""

# The rule modules fill the table of rules when imported.
from sim.verify import activations, arithmetic, indexing, layer_norm, linear, structure  # noqa: F401
from sim.verify.interval import MODES, BoundError, Interval, Tape
from sim.verify.jacobian import jacobian_rows, unstable_fraction

__all__ = ["MODES", "BoundError", "Interval", "Tape", "jacobian_rows", "unstable_fraction"]
