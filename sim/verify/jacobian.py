r"""The backward pass: enclosures of rows of the Clarke Jacobian of an output with respect to the
input box, over the whole box (Shi et al. 2022, "Efficiently Computing Local Lipschitz
Constants of Neural Networks via Bound Propagation").

Starting from unit rows at the output, each interval on the tape, in reverse order, maps an
enclosure of rows of :math:`\partial y / \partial \mathrm{out}` to enclosures of
:math:`\partial y / \partial \mathrm{in}` for each of its inputs; nonlinearities multiply by
the enclosure of their Clarke derivative, so the result encloses the Jacobian at every point of
the box. It needs the tape of a ``"crown"`` or ``"ibp"`` box.
"""

from __future__ import annotations

import torch

from sim.verify.interval import BoundError, Interval, Pair


def jacobian_rows(output: Interval, rows: torch.Tensor, inp: Interval) -> Pair:
    """Enclosure (lo, hi) of rows ``rows`` (flat output indices) of d output / d input over the
    box: shapes (R, *inp.shape)."""
    if output.tape is not inp.tape:
        raise BoundError("the output does not depend on this input box")
    if not output.tape.record:
        raise BoundError("a 'centred' box keeps no tape for a backward pass: read the Jacobian with "
                         "output.jacobian()")
    r = rows.numel()
    g0 = torch.zeros((r, output.numel()), dtype=output.dtype, device=output.device)
    g0[torch.arange(r, device=rows.device), rows] = 1.0
    g0 = g0.reshape((r,) + tuple(output.shape))
    grads: dict[int, Pair] = {id(output): (g0, g0)}
    result = None
    for node in reversed(output.tape.nodes[: output.index + 1]):
        g = grads.pop(id(node), None)
        if g is None:
            continue
        if node is inp:
            result = g
            break
        if node.backward is None:
            continue
        for parent, gp in zip(node.parents, node.backward(g)):
            if parent is None or gp is None:
                continue
            old = grads.get(id(parent))
            grads[id(parent)] = gp if old is None else (old[0] + gp[0], old[1] + gp[1])
    if result is None:
        z = torch.zeros((r,) + tuple(inp.shape), dtype=inp.dtype, device=inp.device)
        return z, z
    return result


def unstable_fraction(output: Interval) -> float:
    """Share of ReLU units on the tape whose sign is not fixed over the box (0 for a
    ``"centred"`` box, which keeps no tape)."""
    total = unstable = 0
    for node in output.tape.nodes:
        if node.op == "relu":
            z = node.parents[0]
            total += z.lo.numel()
            unstable += int(((z.lo < 0) & (z.hi > 0)).sum())
    return unstable / total if total else 0.0
