"""Steady samples from the store: one static mesh per sample with input scalars and output fields.

:class:`MeshSampleDataset` serves the entries of a store whose samples are meshes (e.g. the
elasticity shape family): each item is a ``Data`` with the mesh graph (``edge_index``,
``edge_attr``, ``node_type``, ``mesh_pos``), the sample's input scalars (``scalars``, (1, S),
read from the mesh's field data), the input point fields (``inputs``, (N, K), when the model
reads some) and the output fields (``target``, (N, F), point data concatenated in ``fields``
order). Meshes differ between samples; graphs batch across them.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch_geometric.data import Data

from sim.data.windows import static_node_inputs
from sim.errors import SimError
from sim.graph import mesh_graph
from sim.mesh import Mesh, Store


def sample_arrays(mesh: Mesh, fields: list[str], scalars: list[str], label: object = None
                  ) -> tuple[np.ndarray | None, np.ndarray]:
    """(target (N, F) or None when the mesh carries none of the fields, scalars (S,)) of one sample,
    with one readable error naming what is missing."""
    missing_s = [k for k in scalars if k not in mesh.field_data]
    if missing_s:
        raise SimError(f"sample has no input scalar(s) {missing_s} in its field data "
                       f"(has {sorted(mesh.field_data)})", label)
    s = np.array([float(np.asarray(mesh.field_data[k]).reshape(-1)[0]) for k in scalars], dtype=np.float32)
    present = [f for f in fields if f in mesh.point_data]
    if not present:
        return None, s
    if len(present) != len(fields):
        raise SimError(f"sample has output field(s) {present} but not {sorted(set(fields) - set(present))}", label)
    target = np.concatenate([np.asarray(mesh.point_data[f], dtype=np.float32).reshape(mesh.num_points, -1)
                             for f in fields], axis=1)
    return target, s


class MeshSampleDataset(torch.utils.data.Dataset):
    """Static samples of a store as graphs with input scalars and output fields.

    Args:
        path: store file whose entries are meshes.
        fields: output point fields (each (N,) or (N, c)).
        scalars: input scalars (field data of each mesh).
        entries: entry names (default: all).
        node_inputs: input point fields of each mesh (each (N,) or (N, c)), read at every node.
    """

    def __init__(self, path: str | os.PathLike, fields: list[str], scalars: list[str],
                 entries: list[str] | None = None, node_inputs: list[str] | None = None):
        self.path, self.fields, self.scalars = Path(path), list(fields), list(scalars)
        self.node_inputs = list(node_inputs or [])
        self.node_input_dims: list[int] = []
        self.items: list[Data] = []
        dims = None
        with Store(self.path) as store:
            for name in entries if entries is not None else store.names():
                mesh = store.read(name)
                if not isinstance(mesh, Mesh):
                    raise SimError(f"entry {name!r} is a trajectory; steady models learn from static samples",
                                   self.path)
                target, s = sample_arrays(mesh, self.fields, self.scalars, f"{self.path} entry {name!r}")
                if target is None:
                    raise SimError(f"entry {name!r} has none of the output fields {self.fields}", self.path)
                d = [int(np.prod(np.shape(mesh.point_data[f])[1:])) for f in self.fields]
                if dims is not None and d != dims:
                    raise SimError(f"entry {name!r}: field widths {d} differ from {dims}", self.path)
                dims = d
                g = mesh_graph(mesh)
                if self.node_inputs:
                    where = f"{self.path} entry {name!r}"
                    inputs = static_node_inputs(mesh.point_data, self.node_inputs, mesh.num_points, where,
                                                "the sample")
                    widths = [int(np.prod(np.shape(mesh.point_data[k])[1:])) for k in self.node_inputs]
                    if self.node_input_dims and widths != self.node_input_dims:
                        raise SimError(f"entry {name!r}: node input widths {widths} differ from "
                                       f"{self.node_input_dims}", self.path)
                    self.node_input_dims = widths
                    g.inputs = torch.from_numpy(inputs)
                g.target = torch.from_numpy(target)
                g.scalars = torch.from_numpy(s)[None]
                g.entry = name
                self.items.append(g)
        if not self.items:
            raise SimError("the store has no samples", self.path)
        self.dims: list[int] = dims or []

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, k: int) -> Data:
        return self.items[k]
