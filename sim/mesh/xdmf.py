"""XDMF 3 + HDF5 time series, streamed step by step (for large series in ParaView).

Layout written by :class:`XDMFWriter` for ``out/flow.xdmf``::

    out/flow.xdmf   XML index: a temporal collection of uniform grids, one per step, whose
                    DataItems point into flow.xdmf.h5
    out/flow.xdmf.h5 /mesh/points (N, 3), /mesh/topology, /mesh/point_data/<name>,
                    /mesh/cell_data/<name>, /mesh/field_data/<name>, /mesh/node_type,
                    /steps/<i>/point/<name>, /steps/<i>/cell/<name>, /steps/<i>/points
                    root attribute ``sim_meta`` (JSON): point dimension, dtypes, array
                    shapes, which arrays are time-dependent, dt, params

Static arrays are stored once and referenced from every step. Both files are staged in a
private folder beside them and swapped in as a pair when the writer closes
(:func:`sim.mesh.atomic.swap_in`: the previous ``.xdmf`` goes aside before its ``.h5``, the
new ``.h5`` comes in before its ``.xdmf``), so a failed or killed run leaves a previous
series of the same name as it was and an index never names another run's data. The reader
follows the XML, so it also reads series of the same shape written by other programs
(meshio, FEniCS); inline XML data is read too.
"""

from __future__ import annotations

import json
import os
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from sim.errors import FileFormatError, SimError
from sim.mesh.atomic import clean_stale, staging_dir, swap_in, write_error, write_xml
from sim.mesh.cells import BY_XDMF_ID, BY_XDMF_NAME, cell_type
from sim.mesh.core import NODE_TYPE_ARRAY, Mesh, Trajectory
from sim.mesh.series import REFERENCE_POINTS, SeriesLayout, series_meta, step_arrays, trajectory_from_frames

_NUMBER_TYPES = {"f": "Float", "i": "Int", "u": "UInt", "b": "UChar"}
_FROM_NUMBER_TYPE = {
    ("float", 4): np.float32, ("float", 8): np.float64, ("int", 1): np.int8, ("int", 2): np.int16,
    ("int", 4): np.int32, ("int", 8): np.int64, ("uint", 1): np.uint8, ("uint", 2): np.uint16,
    ("uint", 4): np.uint32, ("uint", 8): np.uint64, ("char", 1): np.int8, ("uchar", 1): np.uint8,
}


def _attribute_type(ncomp: int) -> str:
    return {1: "Scalar", 3: "Vector", 6: "Tensor6", 9: "Tensor"}.get(ncomp, "Matrix")


def _mixed_topology(cells: dict[str, np.ndarray]) -> np.ndarray:
    parts = []
    for name, conn in cells.items():
        ct = cell_type(name)
        head = [np.full((len(conn), 1), ct.xdmf_id, dtype=np.int64)]
        if ct.xdmf_name in ("Polyvertex", "Polyline"):
            head.append(np.full((len(conn), 1), ct.num_nodes, dtype=np.int64))
        parts.append(np.hstack(head + [conn]).ravel())
    return np.concatenate(parts)


class XDMFWriter:
    """Stream a trajectory to ``.xdmf`` + ``.h5``.

    Both files are staged in a private folder beside ``path``; :meth:`close` swaps them in as a
    pair (replacing a previous series of the same name), :meth:`abort` removes the staging
    folder and leaves a previous series untouched.

    Args:
        path: the ``.xdmf`` file; the data goes to the ``.h5`` of the same stem.
        layout: the static mesh and the names of the arrays each step carries.
    """

    def __init__(self, path: str | os.PathLike, layout: SeriesLayout):
        self.path = Path(path)
        if self.path.suffix.lower() not in (".xdmf", ".xmf"):
            raise FileFormatError("an XDMF index must end in .xdmf or .xmf", self.path)
        self.h5_path = self.path.with_name(self.path.name + ".h5")  # never collides with a store `<stem>.h5`
        self.layout = layout
        mesh = layout.mesh
        mesh.validate(self.path)
        self._times: list[float] = []
        self._shapes: dict[str, list[int]] = {}
        self._dtypes: dict[str, str] = {}
        self._static_refs: list[tuple[str, str, str]] = []  # (array name, center, h5 path)
        clean_stale(self.path.parent)
        self._tmpdir = staging_dir(self.path)
        try:
            self._h5 = h5py.File(self._tmpdir / self.h5_path.name, "w")
            self._write_mesh(mesh)
        except BaseException as exc:
            self.abort()
            if isinstance(exc, OSError):
                raise write_error(self.h5_path, exc) from None
            raise

    def _write_mesh(self, mesh: Mesh) -> None:
        """The static part, stored once: points, topology, static arrays, field data."""
        g = self._h5.create_group("mesh")
        g.create_dataset("points", data=self._pad(mesh.points))
        if len(mesh.cells) == 1:
            (name, conn), = mesh.cells.items()
            g.create_dataset("topology", data=conn)
            self._topology = (cell_type(name).xdmf_name, len(conn), conn.shape)
        elif mesh.cells:
            flat = _mixed_topology(mesh.cells)
            g.create_dataset("topology", data=flat)
            self._topology = ("Mixed", mesh.num_cells, flat.shape)
        else:  # a particle set: one vertex per point
            g.create_dataset("topology", data=np.arange(mesh.num_points, dtype=np.int64))
            self._topology = ("Polyvertex", mesh.num_points, (mesh.num_points,))
        static = dict(mesh.point_data)
        if self.layout.moving:
            static[REFERENCE_POINTS] = mesh.points
        for k, a in static.items():
            self._static_refs.append((k, "Node", self._store(g, f"point_data/{k}", a, f"point:{k}")))
        if mesh.node_type is not None:
            self._static_refs.append((NODE_TYPE_ARRAY, "Node", self._store(g, "node_type", mesh.node_type, "node_type")))
        for k, a in mesh.cell_data.items():
            self._static_refs.append((k, "Cell", self._store(g, f"cell_data/{k}", a, f"cell:{k}")))
        for k, v in mesh.field_data.items():
            if isinstance(v, str) or v.dtype.kind == "U":
                g.create_dataset(f"field_data/{k}", data=np.asarray(v, dtype=object), dtype=h5py.string_dtype())
                self._dtypes[f"field:{k}"] = "str" if isinstance(v, str) else "str_array"
            else:
                g.create_dataset(f"field_data/{k}", data=v)
        self._meta = {**series_meta(self.layout), "point_dim": mesh.dim, "points_dtype": str(mesh.points.dtype),
                      "cell_types": list(mesh.cells), "node_type": mesh.node_type is not None}

    @staticmethod
    def _pad(points: np.ndarray) -> np.ndarray:
        return np.pad(points, ((0, 0), (0, 3 - points.shape[1]))) if points.shape[1] < 3 else points

    def _store(self, group: h5py.Group, name: str, array: np.ndarray, key: str) -> str:
        arr = np.asarray(array)
        if arr.dtype.kind == "b":
            self._dtypes[key] = "bool"
            arr = arr.astype(np.uint8)
        if arr.ndim > 2:
            self._shapes[key] = list(arr.shape[1:])
            arr = arr.reshape(arr.shape[0], -1)
        kwargs = {"compression": "gzip", "compression_opts": 4, "shuffle": True} if arr.size >= 1024 else {}
        ds = group.create_dataset(name, data=arr, **kwargs)
        return ds.name

    def write(self, time: float, point_fields: dict[str, Any] | None = None,
              cell_fields: dict[str, Any] | None = None, positions: Any = None) -> None:
        """Write one step."""
        point_fields, cell_fields = point_fields or {}, cell_fields or {}
        prev = self._times[-1] if self._times else None
        self.layout.check_step(float(time), point_fields, cell_fields, positions, prev, str(self.path))
        try:
            g = self._h5.create_group(f"steps/{len(self._times)}")
            for k, a in point_fields.items():
                self._store(g, f"point/{k}", a, f"point:{k}")
            for k, a in cell_fields.items():
                self._store(g, f"cell/{k}", a, f"cell:{k}")
            if positions is not None:
                g.create_dataset("points", data=self._pad(np.asarray(positions)))
                self._meta["positions_dtype"] = str(np.asarray(positions).dtype)
        except OSError as exc:
            raise write_error(self.h5_path, exc) from None
        self._times.append(float(time))

    def _data_item(self, parent: ET.Element, h5_path: str) -> None:
        ds = self._h5[h5_path]
        kind = ds.dtype.kind
        ET.SubElement(parent, "DataItem", Dimensions=" ".join(map(str, ds.shape)), NumberType=_NUMBER_TYPES[kind],
                      Precision=str(ds.dtype.itemsize), Format="HDF").text = f"{self.h5_path.name}:{h5_path}"

    def _attribute(self, grid: ET.Element, name: str, center: str, h5_path: str) -> None:
        ds = self._h5[h5_path]
        ncomp = 1 if ds.ndim == 1 else int(np.prod(ds.shape[1:]))
        a = ET.SubElement(grid, "Attribute", Name=name, AttributeType=_attribute_type(ncomp), Center=center)
        self._data_item(a, h5_path)

    def close(self) -> Path:
        """Write the XML index and swap both files into place; returns the ``.xdmf`` path."""
        try:
            self._finish()
            swap_in([(self._tmpdir / self.h5_path.name, self.h5_path), (self._tmpdir / self.path.name, self.path)])
        finally:
            self.abort()  # the staging folder goes either way (empty after the swap)
        return self.path

    def _finish(self) -> None:
        """Close the staged ``.h5`` (checking it opens again) and write the staged index."""
        root = ET.Element("Xdmf", Version="3.0")
        domain = ET.SubElement(root, "Domain")
        coll = ET.SubElement(domain, "Grid", Name="TimeSeries", GridType="Collection", CollectionType="Temporal")
        topo_type, n_elem, _ = self._topology
        for i, t in enumerate(self._times):
            grid = ET.SubElement(coll, "Grid", Name=f"step_{i:06d}", GridType="Uniform")
            ET.SubElement(grid, "Time", Value=repr(t))
            topo = ET.SubElement(grid, "Topology", TopologyType=topo_type, NumberOfElements=str(n_elem))
            if topo_type in ("Polyvertex", "Polyline"):
                topo.set("NodesPerElement", "1" if topo_type == "Polyvertex" else "2")
            self._data_item(topo, "/mesh/topology")
            geo = ET.SubElement(grid, "Geometry", GeometryType="XYZ")
            self._data_item(geo, f"/steps/{i}/points" if self.layout.moving else "/mesh/points")
            for name, center, h5_path in self._static_refs:
                self._attribute(grid, name, center, h5_path)
            for k in self.layout.point_fields:
                self._attribute(grid, k, "Node", f"/steps/{i}/point/{k}")
            for k in self.layout.cell_fields:
                self._attribute(grid, k, "Cell", f"/steps/{i}/cell/{k}")
        staged_h5 = self._tmpdir / self.h5_path.name
        try:
            self._h5.attrs["sim_meta"] = json.dumps({**self._meta, "shapes": self._shapes, "dtypes": self._dtypes})
            self._h5.close()
            with h5py.File(staged_h5, "r") as back:  # HDF5 may only log a failed flush (a full disk)
                if "sim_meta" not in back.attrs:
                    raise FileFormatError("the data file written was not complete", self.h5_path)
        except OSError as exc:
            raise write_error(self.h5_path, exc) from None
        ET.indent(root)
        write_xml(root, self._tmpdir / self.path.name, self.path)

    def abort(self) -> None:
        """Remove what this writer staged (used when the producer fails); a previous series stays."""
        h5 = getattr(self, "_h5", None)  # absent when the staged file could not be created
        if h5 is not None and h5.id.valid:
            h5.close()
        shutil.rmtree(self._tmpdir, ignore_errors=True)

    def __enter__(self) -> "XDMFWriter":
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def write_xdmf(traj: Trajectory, path: str | os.PathLike, progress: bool = False) -> Path:
    """Write a whole trajectory as an XDMF time series (``progress``: a bar over the steps)."""
    from tqdm import tqdm

    with XDMFWriter(path, SeriesLayout.of(traj)) as w:
        for t in tqdm(range(traj.num_steps), desc=Path(path).name, unit="step", disable=not progress):
            w.write(**step_arrays(traj, t))
    return Path(path)


class _XdmfReader:
    """Follows an XDMF document's DataItems (HDF or inline XML) and builds meshes per grid."""

    def __init__(self, path: Path):
        self.path = path
        self._h5: dict[Path, h5py.File] = {}
        try:
            self.root = ET.parse(path).getroot()
        except ET.ParseError as exc:
            raise FileFormatError(f"not a valid XDMF (XML) file: {exc}", path) from None
        if self.root.tag != "Xdmf" or self.root.find("Domain") is None:
            raise FileFormatError("not an XDMF file (expected <Xdmf><Domain>)", path)
        self.meta: dict[str, Any] = {}

    def close(self) -> None:
        for f in self._h5.values():
            f.close()

    def data(self, item: ET.Element | None) -> np.ndarray:
        if item is None:
            raise FileFormatError("an element has no <DataItem>", self.path)
        fmt = item.get("Format", "XML")
        dims = tuple(int(d) for d in item.get("Dimensions", "").split())
        text = (item.text or "").strip()
        if fmt == "HDF":
            fname, _, h5path = text.partition(":")
            file = (self.path.parent / fname).resolve()
            if file not in self._h5:
                if not file.exists():
                    raise FileFormatError(f"refers to missing data file {fname!r}", self.path)
                try:
                    self._h5[file] = h5py.File(file, "r")
                except OSError as exc:
                    raise FileFormatError(f"data file {fname!r} cannot be read ({exc})", self.path) from None
                if not self.meta and "sim_meta" in self._h5[file].attrs:
                    self.meta = json.loads(self._h5[file].attrs["sim_meta"])
                    self.meta["_h5"] = file
            try:
                arr = self._h5[file][h5path][()]
            except (KeyError, OSError) as exc:
                raise FileFormatError(f"dataset {h5path!r} in {fname!r} cannot be read ({exc})", self.path) from None
        elif fmt == "XML":
            key = (item.get("NumberType", item.get("DataType", "Float")).lower(), int(item.get("Precision", "4")))
            if key not in _FROM_NUMBER_TYPE:
                raise FileFormatError(f"DataItem number type {key} is not supported", self.path)
            arr = np.array(text.split(), dtype=_FROM_NUMBER_TYPE[key])
        else:
            raise FileFormatError(f"DataItem format {fmt!r} is not supported (HDF or XML)", self.path)
        if dims and int(np.prod(dims)) == arr.size:
            arr = arr.reshape(dims)
        return arr

    def grid_mesh(self, grid: ET.Element) -> Mesh:
        topo, geo = grid.find("Topology"), grid.find("Geometry")
        if topo is None or geo is None:
            raise FileFormatError(f"grid {grid.get('Name')!r} has no Topology or Geometry", self.path)
        gtype = geo.get("GeometryType", geo.get("Type", "XYZ")).upper()
        if gtype not in ("XYZ", "XY"):
            raise FileFormatError(f"GeometryType {gtype} is not supported (XYZ or XY)", self.path)
        points = self.data(geo.find("DataItem")).reshape(-1, len(gtype))
        ttype = topo.get("TopologyType", topo.get("Type", ""))
        flat = self.data(topo.find("DataItem")).astype(np.int64).ravel()
        if ttype.lower() == "mixed":
            cells, perm = self._mixed(flat)
        else:
            ct = BY_XDMF_NAME.get(ttype.lower())
            if ct is None:
                raise FileFormatError(f"topology type {ttype!r} cannot be represented", self.path)
            n = int(topo.get("NodesPerElement", ct.num_nodes)) if ct.name == "line" else ct.num_nodes
            if ct.name == "line" and n != 2:
                raise FileFormatError(f"Polyline topology with {n} nodes per element is not supported", self.path)
            cells = {ct.name: flat.reshape(-1, n)}
            perm = np.arange(len(flat) // n)
        shapes, dtypes = self.meta.get("shapes", {}), self.meta.get("dtypes", {})

        def restore(arr: np.ndarray, key: str) -> np.ndarray:
            if dtypes.get(key) == "bool":
                arr = arr.astype(bool)
            return arr.reshape((arr.shape[0], *shapes[key])) if key in shapes else arr

        point_data, cell_data, node_type = {}, {}, None
        for att in grid.findall("Attribute"):
            name, center = att.get("Name"), att.get("Center", "Node")
            arr = self.data(att.find("DataItem"))
            if center == "Node":
                if name == NODE_TYPE_ARRAY and (self.meta.get("node_type") or arr.dtype.kind in "iu"):
                    node_type = arr.ravel()
                else:
                    point_data[name] = restore(arr, f"point:{name}")
            elif center == "Cell":
                cell_data[name] = restore(arr, f"cell:{name}")[perm]
            else:
                raise FileFormatError(f"attribute {name!r} has center {center!r}; only Node and Cell are supported",
                                      self.path)
        if self.meta:
            dtype = self.meta.get("positions_dtype" if self.meta.get("moving") else "points_dtype", points.dtype)
            points = points[:, : int(self.meta.get("point_dim", 3))].astype(dtype)
            if self.meta.get("cell_types") == [] and list(cells) == ["vertex"]:
                cells = {}  # a particle set written with its implicit vertices
        return Mesh(points, cells, point_data, cell_data, self._field_data(), node_type)

    def _field_data(self) -> dict[str, Any]:
        if not self.meta:
            return {}
        f = self._h5[self.meta["_h5"]]
        out: dict[str, Any] = {}
        for k, ds in f.get("mesh/field_data", {}).items():
            kind = self.meta.get("dtypes", {}).get(f"field:{k}")
            if kind == "str":
                out[k] = str(ds.asstr()[()][0] if ds.shape else ds.asstr()[()])
            elif kind == "str_array":
                out[k] = np.asarray(ds.asstr()[()], dtype=str)
            else:
                out[k] = ds[()]
        return out

    def _mixed(self, flat: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray]:
        from sim.mesh.adapters import group_cells

        codes, starts, sizes = [], [], []
        p = 0
        while p < len(flat):
            code = int(flat[p])
            ct = BY_XDMF_ID.get(code)
            if ct is None:
                raise FileFormatError(f"mixed topology has cell code {code}, which cannot be represented", self.path)
            if ct.xdmf_name in ("Polyvertex", "Polyline"):
                n, start = int(flat[p + 1]), p + 2
            else:
                n, start = ct.num_nodes, p + 1
            codes.append(code)
            starts.append(start)
            sizes.append(n)
            p = start + n

        def resolve(code: int, n: int) -> tuple[str, Any]:
            ct = BY_XDMF_ID[code]
            if n != ct.num_nodes:
                raise FileFormatError(f"mixed topology has a {ct.xdmf_name} with {n} nodes", self.path)
            return ct.name, slice(None)

        return group_cells(np.array(codes), np.array(starts), np.array(sizes), flat, resolve)


def temporal_grids(reader: "_XdmfReader") -> tuple[np.ndarray, list[ET.Element]] | None:
    """The times and grids of the document's temporal collection; None for a single uniform grid."""
    path = reader.path
    top = reader.root.find("Domain").find("Grid")
    if top is None:
        raise FileFormatError("the XDMF domain has no <Grid>", path)
    if top.get("GridType") == "Collection" and top.get("CollectionType", "").lower() == "temporal":
        grids = top.findall("Grid")
        times = []
        for i, g in enumerate(grids):
            t = g.find("Time")
            if t is None or t.get("Value") is None:
                raise FileFormatError(f"step {i} of the temporal collection has no <Time Value=...>", path)
            times.append(float(t.get("Value")))
        return np.array(times), grids
    if top.get("GridType", "Uniform") == "Uniform":
        return None
    raise FileFormatError(f"grid type {top.get('GridType')!r} is not supported (temporal collection or uniform)", path)


def read_xdmf(path: str | os.PathLike) -> Trajectory | Mesh:
    """Read an XDMF file: a temporal collection becomes a Trajectory, a single grid a Mesh."""
    path = Path(path)
    if not path.exists():
        raise FileFormatError("no such file", path)
    reader = _XdmfReader(path)
    try:
        temporal = temporal_grids(reader)
        if temporal is None:
            return reader.grid_mesh(reader.root.find("Domain").find("Grid")).validate(path)
        times, grids = temporal
        frames = [reader.grid_mesh(g) for g in grids]
        meta = {k: v for k, v in reader.meta.items() if k != "_h5"}
        return trajectory_from_frames(frames, times, meta, str(path)).validate(path)
    except SimError as exc:
        raise exc.with_path(path) from None
    finally:
        reader.close()
