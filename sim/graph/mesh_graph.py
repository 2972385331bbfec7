"""Meshes and point clouds as torch_geometric graphs with MeshGraphNet-style edge features.

Edge features of an edge from sender j to receiver i:

.. math:: e_{ij} = [\\,x_j - x_i,\\; \\lVert x_j - x_i \\rVert\\,]

in mesh (reference) space, followed by the same in world space when the points move
(Pfaff et al. 2021, Sec. 3). Node features (fields, node-type one-hot) depend on the
model's configuration and are added by ``sim.data``.
"""

from __future__ import annotations

import numpy as np
import torch
from torch_geometric.data import Data

from sim.graph.edges import cell_edges, radius_graph
from sim.mesh import Mesh


def edge_features(pos: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
    """Relative position (sender minus receiver) and its norm.

    Shapes: ``pos`` (N, d), ``edge_index`` (2, E) -> (E, d + 1).
    """
    rel = pos[edge_index[0]] - pos[edge_index[1]]
    return torch.cat([rel, torch.linalg.vector_norm(rel, dim=-1, keepdim=True)], dim=-1)


def mesh_graph(mesh: Mesh, world_pos: np.ndarray | torch.Tensor | None = None,
               dtype: torch.dtype = torch.float32) -> Data:
    """The graph of a mesh: edges of its cells, edge features, positions and node types.

    Args:
        mesh: the mesh (its points are the mesh-space coordinates).
        world_pos: optional (N, d_world) positions of a moving mesh; adds world-space features.

    Returns:
        ``Data`` with ``edge_index`` (2, E), ``edge_attr`` (E, d + 1 [+ d_world + 1]),
        ``mesh_pos`` (N, d), ``node_type`` (N,) (zeros when the mesh has none), ``num_nodes``.
    """
    ei = torch.from_numpy(cell_edges(mesh.cells, mesh.num_points))
    mesh_pos = torch.as_tensor(mesh.points, dtype=dtype)
    attr = edge_features(mesh_pos, ei)
    data = Data(edge_index=ei, mesh_pos=mesh_pos, num_nodes=mesh.num_points)
    if world_pos is not None:
        wp = torch.as_tensor(world_pos, dtype=dtype)
        attr = torch.cat([attr, edge_features(wp, ei)], dim=-1)
        data.world_pos = wp
    data.edge_attr = attr
    nt = mesh.node_type if mesh.node_type is not None else np.zeros(mesh.num_points, dtype=np.int64)
    data.node_type = torch.as_tensor(nt, dtype=torch.long)
    return data


def point_cloud_graph(pos: np.ndarray | torch.Tensor, radius: float, batch: np.ndarray | torch.Tensor | None = None,
                      max_neighbors: int | None = None, dtype: torch.dtype = torch.float32) -> Data:
    """Radius graph of particles (KD-tree) with features [dx, |dx|] divided by the radius (GNS)."""
    p = torch.as_tensor(pos, dtype=dtype)
    b = None if batch is None else np.asarray(torch.as_tensor(batch).cpu())
    ei = torch.from_numpy(radius_graph(p.detach().cpu().numpy(), radius, b, max_neighbors)).to(p.device)
    data = Data(edge_index=ei, pos=p, edge_attr=edge_features(p, ei) / radius, num_nodes=p.shape[0])
    if batch is not None:
        data.batch = torch.as_tensor(batch, dtype=torch.long)
    return data
