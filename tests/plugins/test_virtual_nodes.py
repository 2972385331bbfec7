"""Virtual nodes: one layer links every node to every node of its graph (and only of its graph)."""

from __future__ import annotations

import pytest
import torch

from sim.plugins import PluginError
from sim.plugins.layers.virtual_nodes import VirtualNodes
from tests.plugins.graphs import ring_edges


def _jacobian(layer, x, ei, pos=None, batch=None):
    return torch.autograd.functional.jacobian(lambda v: layer(v, ei, pos=pos, batch=batch), x)  # (N, C, N, C)


@pytest.mark.parametrize("adaptive,num_virtual", [(False, 1), (True, 3)])
def test_every_output_depends_on_every_input_in_one_layer(adaptive, num_virtual):
    torch.manual_seed(0)
    n, c = 24, 6
    ei = ring_edges(n)  # diameter 12: a one-hop layer alone reaches 2 neighbours
    pos = torch.stack([torch.cos(torch.arange(n) * 0.26), torch.sin(torch.arange(n) * 0.26)], -1)
    layer = VirtualNodes(c, num_virtual=num_virtual, adaptive=adaptive)
    jac = _jacobian(layer, torch.randn(n, c), ei, pos)
    dependence = jac.abs().sum(dim=(1, 3))  # (N out, N in)
    assert (dependence > 0).all()
    # without its virtual branch the same layer is local: zero the branch and the dependence is banded
    with torch.no_grad():
        layer.update.weight[:, 2 * c:] = 0
    local = _jacobian(layer, torch.randn(n, c), ei, pos).abs().sum(dim=(1, 3))
    hop = torch.minimum((torch.arange(n)[:, None] - torch.arange(n)[None]) % n,
                        (torch.arange(n)[None] - torch.arange(n)[:, None]) % n)
    assert (local[hop > 1] == 0).all() and (local[hop <= 1] > 0).all()


def test_graphs_of_a_batch_do_not_exchange_information():
    torch.manual_seed(1)
    ei = torch.cat([ring_edges(10), ring_edges(8) + 10], dim=1)
    batch = torch.cat([torch.zeros(10, dtype=torch.long), torch.ones(8, dtype=torch.long)])
    layer = VirtualNodes(4, num_virtual=2, adaptive=True)
    dep = _jacobian(layer, torch.randn(18, 4), ei, batch=batch).abs().sum(dim=(1, 3))
    assert (dep[:10, 10:] == 0).all() and (dep[10:, :10] == 0).all()
    assert (dep[:10, :10] > 0).all() and (dep[10:, 10:] > 0).all()


def test_several_uniform_virtual_nodes_are_refused():
    with pytest.raises(PluginError, match="adaptive=True"):
        VirtualNodes(4, num_virtual=2, adaptive=False)
