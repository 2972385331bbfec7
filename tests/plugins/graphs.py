"""Small generated graphs shared by the plugin tests."""

from __future__ import annotations

import numpy as np
import torch
from scipy.spatial import Delaunay

from sim.graph import cell_edges, mesh_graph
from sim.mesh import Mesh


def delaunay_mesh(n: int = 40, seed: int = 0) -> Mesh:
    pts = np.random.default_rng(seed).random((n, 2))
    return Mesh(pts, {"triangle": Delaunay(pts).simplices})


def delaunay_edges(n: int = 40, seed: int = 0) -> torch.Tensor:
    mesh = delaunay_mesh(n, seed)
    return torch.from_numpy(cell_edges(mesh.cells, n))


def delaunay_graph(n: int = 40, seed: int = 0, features: int = 2):
    g = mesh_graph(delaunay_mesh(n, seed))
    g.state = torch.randn(n, features, generator=torch.Generator().manual_seed(seed))
    return g


def ring_edges(n: int) -> torch.Tensor:
    i = torch.arange(n)
    j = (i + 1) % n
    return torch.cat([torch.stack([i, j]), torch.stack([j, i])], dim=1)
