"""PLAID datasets (the data model of Safran's ``pyplaid`` package) to and from steady samples.

Read and written here from PLAID's published on-disk layout, without ``pyplaid``: pyplaid
1.0.0 brings ``datasets``, ``pyarrow``, ``pandas``, ``huggingface_hub``, ``zarr`` and
``pyCGNS`` (about 470 MB), and all that a steady sample needs is CGNS/HDF5 trees, which
``h5py`` reads and writes. The layouts (both are folders of per-sample CGNS files):

- PLAID >= 0.2 (``pyplaid`` 1.x, storage backend ``cgns``)::

      <root>/infos.yaml                                   owner, license, num_samples, storage_backend
      <root>/problem_definitions/<name>.yaml              input_features, output_features (CGNS paths),
                                                          train_split, test_split ({split: "all" | [ids]})
      <root>/data/<split>/sample_<id 9 digits>/meshes/mesh_<time index 9 digits>.cgns

- PLAID 0.1 (its ``Dataset.save``)::

      <root>/dataset/infos.yaml
      <root>/dataset/samples/sample_<id>/meshes/mesh_<i>.cgns   (plaid <= 0.1.9 also scalars.csv)
      <root>/problem_definition/problem_infos.yaml        input/output features, task, ...
      <root>/problem_definition/split.json (or split.csv)  {split: [sample ids]}

One CGNS file is one time step of one sample: a tree with a base ``Global`` (the scalars,
``DataArray_t`` nodes) and a mesh base ``Base_<cell dim>_<space dim>`` holding one
unstructured zone: ``GridCoordinates`` (``CoordinateX/Y/Z``), ``Elements_<TYPE>``
(``ElementRange``, 1-based ``ElementConnectivity``), ``FlowSolution_t`` nodes
(``VertexFields``, ``CellCenterFields``: 1D fields, a vector is one field per component) and
``ZoneBC`` (``BC_t`` tags: a ``PointList`` or ``PointRange``, a ``GridLocation`` and the BC
type as value). CGNS/HDF5 stores each node as a group with attributes ``name``, ``label``,
``type`` (``MT``, ``I4``, ``I8``, ``R4``, ``R8``, ``C1``, ...) and its value in the dataset
``" data"``, with the axes reversed (CGNS arrays are Fortran-ordered).

What goes where (one PLAID sample -> one store entry of kind ``mesh``):

==============================  ==========================================================
PLAID                           sim store entry
==============================  ==========================================================
``GridCoordinates``             ``points`` (N, d), d = the coordinates present
``Elements_<TYPE>``             ``cells/<meshio name>`` (0-based, blocks of a type merged
                                in ``ElementRange`` order)
Vertex fields                   ``point_data/<name>`` (N,), dtype kept
CellCenter fields               ``cell_data/<name>`` over all cells in store order
``Global/<name>``               ``field_data/<name>`` (numbers as arrays, text as str)
``BC_t`` at vertices            ``point_data/set:<name>`` (int8 0/1), and ``node_type``
``BC_t`` on elements            ``cell_data/set:<name>`` (int8 0/1)
problem definitions, infos,     store metadata ``plaid`` (below)
splits, time values
==============================  ==========================================================

Node types: a vertex tag gives its nodes a :class:`~sim.mesh.NodeType` when its name is
one (``Wall``, ``inflow``, ... any case, or ``node_type_<NAME>`` / ``node_type_<code>`` as
written here) or else when its BC type says so (``BCWall*`` -> WALL, ``BCInflow*`` /
``BCTunnelInflow`` -> INFLOW, ``BCOutflow*`` / ``BCTunnelOutflow`` -> OUTFLOW). A node in
several such tags takes the highest code; untagged nodes are INTERIOR (0). Samples with
no tag that maps have no ``node_type``. The tags themselves are always kept as ``set:``
arrays, so nothing about them is lost.

Store metadata ``plaid``: ``layout`` (``cgns`` or ``legacy``), ``infos``,
``problem_definitions`` (each file as written), ``problems`` (per definition, in store
names: ``inputs``/``outputs`` each ``{"scalars", "point_data", "cell_data", "mesh"}``, and
the ``train``/``test`` entries), ``splits`` (split -> entries), ``samples`` (entry ->
split and id), ``features`` (every PLAID path -> where it is in the store), ``node_types``
(how they were made), ``zone`` (the mesh base/zone path) and ``times`` (an entry's time
value when not 0).

Refused with one error naming the file and what: a missing problem definition, a storage
backend other than ``cgns`` (``hf_datasets``, ``zarr``: columnar files), a sample with
several time steps (``mesh_000000001.cgns``: a store entry is one mesh), several mesh bases
or zones, a structured zone, CGNS links, element types without a matching store cell
(MIXED, NGON_n, NFACE_n, PENTA_15/18, PYRA_13/14, HEXA_20/27, higher orders: their node
orders differ from VTK's), fields at other locations (faces, edges, integration points),
cell fields on a zone that also holds lower-dimensional elements (the store's cell data runs
over all cells), CGNS nodes outside this data model, a feature a problem definition names
that a sample lacks, and a sample whose fields, scalars or tags differ from the others of
its split.

Writing (:func:`write_plaid`): steady samples (store entries of kind ``mesh``) become a
PLAID >= 0.2 dataset with backend ``cgns`` as above, which ``pyplaid`` reads. A field of
shape (N, k) becomes k PLAID fields ``<name>_0`` ... (PLAID fields are 1D), a ``set:``
0/1 array a ``BC_t``, node types ``node_type_<NAME>`` tags (unless the store's ``set:``
tags already give them). Dtypes CGNS has no type for (bool, int8/16, uint8/16, float16) are
widened. ``sim_store.json`` beside ``infos.yaml`` records what PLAID cannot (entry names,
component layouts, dtypes, the store metadata), so ``sim convert`` reads the folder back
into the same store exactly; pyplaid ignores the file.
"""

from __future__ import annotations

import csv
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from sim.errors import FileFormatError, SimError
from sim.mesh.core import Mesh, NodeType
from sim.mesh.store import check_entry_name

SIDECAR = "sim_store.json"
SIDECAR_FORMAT = "sim.plaid-export"
PLAID_SUFFIX = ".plaid"

#: CGNS element type codes (the ``ElementType_t`` enumeration) -> names.
CGNS_ELEMENTS = [
    "ElementTypeNull", "ElementTypeUserDefined", "NODE", "BAR_2", "BAR_3", "TRI_3", "TRI_6", "QUAD_4", "QUAD_8",
    "QUAD_9", "TETRA_4", "TETRA_10", "PYRA_5", "PYRA_14", "PENTA_6", "PENTA_15", "PENTA_18", "HEXA_8", "HEXA_20",
    "HEXA_27", "MIXED", "PYRA_13", "NGON_n", "NFACE_n", "BAR_4", "TRI_9", "TRI_10", "QUAD_12", "QUAD_16",
    "TETRA_16", "TETRA_20", "PYRA_21", "PYRA_29", "PYRA_30", "PENTA_24", "PENTA_38", "PENTA_40", "HEXA_32",
    "HEXA_56", "HEXA_64",
]
#: CGNS element types whose node order is VTK's (CGNS SIDS figures) -> store cell names.
TO_CELL = {"NODE": "vertex", "BAR_2": "line", "BAR_3": "line3", "TRI_3": "triangle", "TRI_6": "triangle6",
           "QUAD_4": "quad", "QUAD_8": "quad8", "QUAD_9": "quad9", "TETRA_4": "tetra", "TETRA_10": "tetra10",
           "PYRA_5": "pyramid", "PENTA_6": "wedge", "HEXA_8": "hexahedron"}
FROM_CELL = {v: k for k, v in TO_CELL.items()}
CELL_DIM = {"vertex": 0, "line": 1, "line3": 1, "triangle": 2, "triangle6": 2, "quad": 2, "quad8": 2, "quad9": 2,
            "tetra": 3, "tetra10": 3, "pyramid": 3, "wedge": 3, "hexahedron": 3}

#: BC types that say a node type (the tag's name is asked first, see the module docstring).
BC_NODE_TYPES = {
    **{t: NodeType.WALL for t in ("BCWall", "BCWallViscous", "BCWallViscousHeatFlux", "BCWallViscousIsothermal",
                                  "BCWallInviscid")},
    **{t: NodeType.INFLOW for t in ("BCInflow", "BCInflowSubsonic", "BCInflowSupersonic", "BCTunnelInflow")},
    **{t: NodeType.OUTFLOW for t in ("BCOutflow", "BCOutflowSubsonic", "BCOutflowSupersonic", "BCTunnelOutflow")},
}
#: The BC type written for a node-type tag.
NODE_TYPE_BC: dict[int, str] = {NodeType.WALL: "BCWall", NodeType.INFLOW: "BCInflow", NodeType.OUTFLOW: "BCOutflow"}

_NUMERIC_TYPES = {"I4": np.int32, "I8": np.int64, "U4": np.uint32, "U8": np.uint64, "R4": np.float32,
                  "R8": np.float64}
_CGNS_TYPE = {np.dtype(v): k for k, v in _NUMERIC_TYPES.items()}
#: dtypes CGNS has no type for, and the one they are written as.
_WIDEN = {"b": np.int32, "i1": np.int32, "i2": np.int32, "u1": np.int32, "u2": np.int32, "f2": np.float32}
_SAMPLE = re.compile(r"^sample_(\d+)$")
_MESH = re.compile(r"^mesh_(\d+)\.cgns$")
MAX_NAME = 32  # CGNS node names


def _json(value: Any) -> Any:
    """``value`` (from YAML) as plain JSON (dates and other objects as text)."""
    return json.loads(json.dumps(value, default=str))


def _text(value: Any) -> str:
    if isinstance(value, np.ndarray):
        value = value.tobytes()
    if isinstance(value, (bytes, np.bytes_)):
        value = bytes(value).decode("utf-8", "replace")
    return str(value).rstrip("\x00 ")


# ----------------------------------------------------------------------------- CGNS/HDF5 nodes
@dataclass
class _Node:
    """One CGNS node of an open CGNS/HDF5 file (its value is read only when asked)."""

    group: h5py.Group
    path: str  # CGNS path from the root, e.g. "Base_2_2/Zone/GridCoordinates"
    name: str
    label: str
    kind: str  # MT, I4, I8, U4, U8, R4, R8, C1, B1, LK, ...

    def children(self) -> list["_Node"]:
        out = []
        for key, item in self.group.items():
            if key.startswith(" "):
                continue
            if not isinstance(item, h5py.Group):
                raise SimError(f"CGNS node {self.path + '/' + key if self.path else key!r} is not an HDF5 group "
                               "(not a CGNS/HDF5 file?)")
            out.append(_node(item, f"{self.path}/{key}" if self.path else key))
        return out

    def child(self, name: str) -> "_Node | None":
        item = self.group.get(name)
        return _node(item, f"{self.path}/{name}" if self.path else name) if isinstance(item, h5py.Group) else None

    @property
    def shape(self) -> tuple[int, ...]:
        ds = self.group.get(" data")
        return tuple(reversed(ds.shape)) if isinstance(ds, h5py.Dataset) else ()

    def value(self) -> np.ndarray | str | None:
        """The node's value in CGNS (Fortran) axis order: an array, a string (C1) or None (MT)."""
        if self.kind == "MT":
            return None
        ds = self.group.get(" data")
        if not isinstance(ds, h5py.Dataset):
            raise SimError(f"CGNS node {self.path!r} of type {self.kind} has no ' data'")
        a = ds[()]
        if self.kind == "C1":
            a = np.asarray(a)
            if a.ndim > 1:
                raise SimError(f"CGNS node {self.path!r} holds a {a.ndim}D character array, which the store "
                               "does not hold (text is one string)")
            return a.astype(np.uint8).tobytes().decode("utf-8", "replace").rstrip("\x00")
        if self.kind not in _NUMERIC_TYPES:
            raise SimError(f"CGNS node {self.path!r} has the data type {self.kind!r}, which the store does not hold")
        return np.ascontiguousarray(np.asarray(a).T)


def _node(group: h5py.Group, path: str) -> _Node:
    attrs = group.attrs
    if "label" not in attrs or "type" not in attrs:
        raise SimError(f"HDF5 group {path!r} has no CGNS 'label'/'type' attributes (not a CGNS/HDF5 file?)")
    kind = _text(attrs["type"])
    node = _Node(group, path, path.rsplit("/", 1)[-1], _text(attrs["label"]), kind)
    if kind == "LK":
        raise SimError(f"CGNS node {path!r} is a link to another file; links are not followed (give a dataset "
                       "whose CGNS files hold their data)")
    return node


def _open_cgns(path: Path) -> tuple[h5py.File, _Node]:
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        text = str(exc)
        why = ("the file is truncated (an interrupted copy or write?)" if "truncated" in text else
               "not a CGNS/HDF5 file (a CGNS file in the older ADF format? convert it with cgnsconvert)"
               if "signature" in text else f"cannot be opened as HDF5 ({text})")
        raise FileFormatError(why, path) from None
    if " hdf5version" not in f and _text(f.attrs.get("label", b"")) != "Root Node of HDF5 File":
        f.close()
        raise FileFormatError("an HDF5 file but not a CGNS tree (no ' hdf5version' / root node)", path)
    return f, _Node(f, "", "", "Root Node of HDF5 File", "MT")


# ----------------------------------------------------------------------------- reading
@dataclass
class _Ref:
    """Where one PLAID sample is."""

    entry: str
    split: str | None
    id: int
    folder: Path


@dataclass
class _Plan:
    """The structure of one sample (found before any array is read) and where its arrays are."""

    ref: _Ref
    file: Path
    time: float = 0.0
    base: str = ""
    zone: str = ""
    n_points: int = 0
    coords: list[str] = field(default_factory=list)
    blocks: list[tuple[int, int, str, str]] = field(default_factory=list)  # start, end, cell name, h5 path
    point_fields: dict[str, str] = field(default_factory=dict)
    cell_fields: dict[str, str] = field(default_factory=dict)
    point_tags: dict[str, tuple[str, str]] = field(default_factory=dict)  # name -> (h5 path, "list"/"range")
    cell_tags: dict[str, tuple[str, str]] = field(default_factory=dict)
    bc_types: dict[str, str] = field(default_factory=dict)
    globals: dict[str, str] = field(default_factory=dict)
    csv_scalars: dict[str, float] = field(default_factory=dict)
    features: dict[str, str] = field(default_factory=dict)  # PLAID path -> store place

    def keys(self) -> set[str]:
        """What the sample holds, as store places (compared across a split)."""
        return ({f"point_data/{k}" for k in self.point_fields} | {f"cell_data/{k}" for k in self.cell_fields}
                | {f"point_data/set:{k}" for k in self.point_tags} | {f"cell_data/set:{k}" for k in self.cell_tags}
                | {f"field_data/{k}" for k in (*self.globals, *self.csv_scalars)})


def _locate(path: Path) -> tuple[Path, str, str | None]:
    """(root, layout, the one split asked for or None) of a PLAID folder, or a FileFormatError."""
    if (path / "data").is_dir() or (path / "problem_definitions").is_dir() or (path / "infos.yaml").is_file() \
            and not (path / "dataset").is_dir():
        return path, "cgns", None
    if (path / "dataset").is_dir() or (path / "problem_definition").is_dir():
        return path, "legacy", None
    if path.parent.name == "data" and any(_SAMPLE.match(p.name) for p in path.iterdir()):
        return path.parent.parent, "cgns", path.name
    if path.name == "dataset" and (path / "samples").is_dir():
        return path.parent, "legacy", None
    raise FileFormatError("is not a PLAID dataset (no data/ and problem_definitions/, nor dataset/ and "
                          "problem_definition/)", path)


def looks_like_plaid(path: str | os.PathLike) -> bool:
    """A folder laid out as a PLAID dataset, a split of one (``<root>/data/<split>``) or ours (cheap)."""
    path = Path(path)
    if not path.is_dir():
        return False
    if (path / SIDECAR).is_file():
        return True
    if (path / "data").is_dir() and ((path / "infos.yaml").is_file() or (path / "problem_definitions").is_dir()):
        return True
    if (path / "dataset" / "samples").is_dir() or (path / "samples").is_dir() and path.name == "dataset":
        return True
    if path.parent.name == "data" and (path.parent.parent / "infos.yaml").is_file():
        try:
            return any(_SAMPLE.match(p.name) for p in path.iterdir())
        except OSError:
            return False
    return False


def _yaml(path: Path) -> Any:
    import yaml

    try:
        return yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise FileFormatError(f"cannot be read as YAML ({' '.join(str(exc).split())})", path) from None


class PlaidDataset:
    """The samples of a PLAID dataset (all splits, or one ``data/<split>`` folder), read one at a time.

    Every sample's structure is checked when the dataset is opened (cheap: the CGNS trees,
    not their arrays), so a dataset that cannot be converted whole is refused before
    anything is written.
    """

    format = "plaid"

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        if not self.path.is_dir():
            raise FileFormatError("no such folder" if not self.path.exists() else
                                  "is a file: a PLAID dataset is a folder (data/, problem_definitions/, infos.yaml)",
                                  self.path)
        self.root, self.layout, self.only_split = _locate(self.path)
        sidecar = self.root / SIDECAR
        self.sidecar: dict[str, Any] | None = None
        if sidecar.is_file():
            try:
                self.sidecar = json.loads(sidecar.read_text())
            except (OSError, UnicodeDecodeError, ValueError) as exc:
                raise FileFormatError(f"cannot be read as JSON ({exc})", sidecar) from None
            if not isinstance(self.sidecar, dict) or self.sidecar.get("format") != SIDECAR_FORMAT:
                raise FileFormatError(f"is not a sim export record (format {SIDECAR_FORMAT!r})", sidecar)
        if self.layout == "cgns":
            self.infos, refs = self._cgns_layout()
            self.definitions, problems_raw = self._cgns_problems()
        else:
            self.infos, refs = self._legacy_layout()
            self.definitions, problems_raw = self._legacy_problems(refs)
        if not refs:
            raise FileFormatError("holds no samples", self.path)
        self.plans = [self._plan(r) for r in refs]
        self._check_splits()
        self.problems = {name: self._problem(name, raw) for name, raw in problems_raw.items()}
        self.metadata = self._metadata()

    # ----- layouts
    def _cgns_layout(self) -> tuple[dict[str, Any], list[_Ref]]:
        infos_path = self.root / "infos.yaml"
        infos = _yaml(infos_path) if infos_path.is_file() else {}
        if not isinstance(infos, dict):
            raise FileFormatError("must hold a mapping (owner, license, num_samples, storage_backend)", infos_path)
        backend = infos.get("storage_backend", "cgns")
        if backend != "cgns":
            raise FileFormatError(
                f"the dataset is stored with PLAID's {backend!r} backend (columnar files); sim reads the per-sample "
                "CGNS layout: save it again with plaid.storage.save_to_disk(..., backend='cgns')", infos_path)
        data = self.root / "data"
        if not data.is_dir():
            raise FileFormatError("has no data/ folder (data/<split>/sample_<id>/meshes/*.cgns)", self.root)
        splits = sorted(p.name for p in data.iterdir() if p.is_dir() and not p.name.startswith("."))
        if self.only_split is not None:
            splits = [self.only_split]
        refs: list[_Ref] = []
        for split in splits:
            folder = data / split
            for item in sorted(folder.iterdir()):
                if item.name.startswith("."):
                    continue
                m = _SAMPLE.match(item.name)
                if not item.is_dir() or m is None:
                    if item.suffix in (".arrow", ".parquet") or item.name.endswith(".zarr") or item.name == "zarr.json":
                        raise FileFormatError("is a columnar file of PLAID's hf_datasets/zarr backends; sim reads "
                                              "the per-sample CGNS layout (backend 'cgns')", item)
                    raise FileFormatError("is not a sample folder (sample_<id>/); a PLAID split holds only those",
                                          item)
                sid = int(m[1])
                name = f"{split}_{sid:09d}"
                refs.append(_Ref(check_entry_name(name, item), split, sid, item))
        return infos, refs

    def _legacy_layout(self) -> tuple[dict[str, Any], list[_Ref]]:
        dataset = self.root / "dataset"
        infos_path = dataset / "infos.yaml"
        infos = _yaml(infos_path) if infos_path.is_file() else {}
        samples = dataset / "samples"
        if not samples.is_dir():
            raise FileFormatError("has no dataset/samples/ folder (dataset/samples/sample_<id>/meshes/*.cgns)",
                                  self.root)
        refs = []
        for item in sorted(samples.iterdir()):
            if item.name.startswith("."):
                continue
            m = _SAMPLE.match(item.name)
            if not item.is_dir() or m is None:
                raise FileFormatError("is not a sample folder (sample_<id>/)", item)
            refs.append(_Ref(f"sample_{int(m[1]):09d}", None, int(m[1]), item))
        return infos if isinstance(infos, dict) else {"infos": infos}, refs

    def _cgns_problems(self) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
        folder = self.root / "problem_definitions"
        files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix in (".yaml", ".yml")) \
            if folder.is_dir() else []
        if not files:
            raise FileFormatError("has no problem definition (problem_definitions/<name>.yaml with input_features, "
                                  "output_features, train_split, test_split): which features are inputs and which "
                                  "outputs is part of a PLAID dataset", self.root)
        definitions, raw = {}, {}
        for p in files:
            d = _yaml(p)
            if not isinstance(d, dict):
                raise FileFormatError("must hold a mapping (input_features, output_features, ...)", p)
            for key in ("input_features", "output_features"):
                v = d.get(key)
                if not isinstance(v, list) or not v or not all(isinstance(x, str) for x in v):
                    raise FileFormatError(f"{key!r} must be a non-empty list of feature paths, got {v!r}", p)
            for key in ("train_split", "test_split"):
                v = d.get(key, {})
                if not isinstance(v, dict) or not all(x == "all" or (isinstance(x, list) and all(
                        isinstance(i, int) and not isinstance(i, bool) for i in x)) for x in v.values()):
                    raise FileFormatError(f"{key!r} must map split names to 'all' or a list of sample ids, "
                                          f"got {v!r}", p)
            definitions[p.stem] = _json(d)
            raw[p.stem] = {"file": p, "inputs": d["input_features"], "outputs": d["output_features"],
                           "train": d.get("train_split", {}), "test": d.get("test_split", {})}
        return definitions, raw

    def _legacy_problems(self, refs: list[_Ref]) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
        folder = self.root / "problem_definition"
        p = folder / "problem_infos.yaml"
        if not p.is_file():
            raise FileFormatError("has no problem definition (problem_definition/problem_infos.yaml): which "
                                  "features are inputs and which outputs is part of a PLAID dataset", self.root)
        d = _yaml(p)
        if not isinstance(d, dict):
            raise FileFormatError("must hold a mapping (input_features, output_features, ...)", p)
        split: dict[str, Any] = {}
        if (folder / "split.json").is_file():
            try:
                split = json.loads((folder / "split.json").read_text())
            except (OSError, UnicodeDecodeError, ValueError) as exc:
                raise FileFormatError(f"cannot be read as JSON ({exc})", folder / "split.json") from None
        elif (folder / "split.csv").is_file():
            with open(folder / "split.csv", newline="") as f:
                for row in csv.reader(f):
                    if row:
                        try:
                            split[row[0]] = [int(i) for i in row[1:]]
                        except ValueError:
                            raise FileFormatError(f"split {row[0]!r} holds a sample id that is not an integer",
                                                  folder / "split.csv") from None
        if not isinstance(split, dict) or not all(isinstance(v, list) for v in split.values()):
            raise FileFormatError("the split must map split names to lists of sample ids", folder)
        inputs, outputs = [], []
        for side, out in (("input", inputs), ("output", outputs)):
            out.extend(d.get(f"{side}_features") or [])
            for kind in ("scalars", "fields", "meshes", "timeseries"):
                out.extend({"type": kind, "name": n} for n in (d.get(f"{side}_{kind}") or []))
        if not inputs and not outputs:
            raise FileFormatError("names no input or output feature", p)
        definition = {**_json(d), "split": _json(split)}
        raw = {"file": p, "inputs": inputs, "outputs": outputs,
               "train": {k: split[k] for k in split if "train" in k} or d.get("train_split") or {},
               "test": {k: split[k] for k in split if "test" in k} or d.get("test_split") or {}, "legacy": split}
        return {"problem_definition": definition}, {"problem_definition": raw}

    # ----- samples
    def _plan(self, ref: _Ref) -> _Plan:
        meshes = ref.folder / "meshes"
        files = sorted(meshes.iterdir()) if meshes.is_dir() else []
        extra = [p for p in ref.folder.iterdir()
                 if p.name not in ("meshes", "scalars.csv") and not p.name.startswith(".")]
        if extra:
            what = ("time series (plaid <= 0.1.9 time_series_*.csv), which a steady sample does not hold"
                    if extra[0].name.startswith("time_series") else "a file outside the PLAID sample layout")
            raise FileFormatError(f"is {what}", extra[0])
        files = [p for p in files if not p.name.startswith(".")]
        bad = [p for p in files if not _MESH.match(p.name)]
        if bad:
            raise FileFormatError("is not a PLAID mesh file (meshes/mesh_<index>.cgns)", bad[0])
        if not files:
            raise FileFormatError("holds no mesh (meshes/mesh_000000000.cgns); a store entry is a mesh", ref.folder)
        if len(files) > 1:
            times = []
            for p in files:
                f, root = _open_cgns(p)
                with f:
                    times.append(self._time(root, p))
            raise FileFormatError(
                f"holds {len(files)} time steps ({', '.join(p.name for p in files[:4])}"
                f"{' ...' if len(files) > 4 else ''}"
                f"; t = {', '.join(f'{t:g}' for t in times[:4])}); a steady sample in the store is one mesh, so "
                "time-dependent PLAID samples are not converted", ref.folder)
        plan = _Plan(ref, files[0])
        f, root = _open_cgns(plan.file)
        with f:
            try:
                self._tree(plan, root)
            except SimError as exc:
                if isinstance(exc, FileFormatError) and exc.path is not None:
                    raise
                raise FileFormatError(exc.message, plan.file) from None
            except (KeyError, OSError, ValueError) as exc:
                raise FileFormatError(f"cannot be read ({exc})", plan.file) from None
        if (ref.folder / "scalars.csv").is_file():
            plan.csv_scalars = self._csv_scalars(ref.folder / "scalars.csv", plan)
        return plan

    @staticmethod
    def _time(root: _Node, where: Path) -> float:
        times = set()
        for base in root.children():
            if base.label != "CGNSBase_t":
                continue
            tv = base.child("Time")
            tv = tv.child("TimeValues") if tv is not None else None
            if tv is not None:
                v = np.asarray(tv.value()).reshape(-1)
                if v.size != 1:
                    raise FileFormatError(f"base {base.name!r} holds {v.size} time values; a PLAID mesh file is one "
                                          "time step", where)
                times.add(float(v[0]))
        if len(times) > 1:
            raise FileFormatError(f"its bases disagree on the time ({sorted(times)})", where)
        return times.pop() if times else 0.0

    def _csv_scalars(self, path: Path, plan: _Plan) -> dict[str, float]:
        try:
            rows = [r for r in csv.reader(path.read_text().splitlines()) if r]
            values = {n.strip(): float(v) for n, v in zip(rows[0], rows[1], strict=True)} if len(rows) == 2 else None
        except (OSError, UnicodeDecodeError, ValueError, IndexError):
            values = None
        if values is None:
            raise FileFormatError("must hold one row of scalar names and one row of numbers", path)
        clash = sorted(set(values) & set(plan.globals))
        if clash:
            raise FileFormatError(f"scalar(s) {clash} are also in the CGNS tree's Global base", path)
        for n in values:
            plan.features[f"Global/{n}"] = f"field_data/{n}"
        return values

    def _tree(self, plan: _Plan, root: _Node) -> None:
        plan.time = self._time(root, plan.file)
        mesh_bases = []
        for node in root.children():
            if node.label == "CGNSLibraryVersion_t":
                continue
            if node.label != "CGNSBase_t":
                raise SimError(f"CGNS node {node.path!r} ({node.label}) has no place in a sim store entry")
            if node.name == "Global":
                self._globals(plan, node)
            else:
                mesh_bases.append(node)
        if len(mesh_bases) != 1:
            raise SimError(f"holds {len(mesh_bases)} mesh bases ({', '.join(b.name for b in mesh_bases) or 'none'}); "
                           "a store entry holds one mesh")
        base = mesh_bases[0]
        zones = []
        for node in base.children():
            if node.label == "Zone_t":
                zones.append(node)
            elif node.label != "BaseIterativeData_t":
                raise SimError(f"CGNS node {node.path!r} ({node.label}) has no place in a sim store entry")
        if len(zones) != 1:
            shown = ", ".join(z.name for z in zones) or "none"
            raise SimError(f"base {base.name!r} holds {len(zones)} zones ({shown}); a store entry holds one mesh")
        plan.base, plan.zone = base.name, zones[0].name
        plan.features[base.name] = plan.features[f"{base.name}/{zones[0].name}"] = "mesh"
        self._zone(plan, zones[0])

    def _globals(self, plan: _Plan, base: _Node) -> None:
        plan.features["Global"] = "field_data"
        for node in base.children():
            if node.label == "BaseIterativeData_t":
                continue
            if node.label != "DataArray_t" or node.children():
                raise SimError(f"CGNS node {node.path!r} ({node.label}) is not a scalar of the Global base")
            plan.globals[node.name] = node.group.name
            plan.features[node.path] = f"field_data/{node.name}"

    def _zone(self, plan: _Plan, zone: _Node) -> None:
        size = np.asarray(zone.value()).reshape(-1)
        ztype = zone.child("ZoneType")
        if ztype is None or ztype.value() != "Unstructured":
            raise SimError(f"zone {zone.path!r} is {ztype.value() if ztype else 'of no ZoneType'}; the store holds "
                           "unstructured meshes")
        n_points = int(size[0])
        plan.n_points = n_points
        p = zone.path
        for node in zone.children():
            if node.label == "ZoneType_t":
                plan.features[node.path] = "mesh"
            elif node.label == "GridCoordinates_t":
                self._coordinates(plan, node, n_points)
            elif node.label == "Elements_t":
                self._elements(plan, node)
            elif node.label == "FlowSolution_t":
                self._solution(plan, node)
            elif node.label == "ZoneBC_t":
                self._tags(plan, node)
            else:
                raise SimError(f"CGNS node {node.path!r} ({node.label}) has no place in a sim store entry")
        if not plan.coords:
            raise SimError(f"zone {p!r} has no GridCoordinates")
        plan.blocks.sort()
        start = 1
        for s, e, name, _ in plan.blocks:
            if s != start:
                raise SimError(f"the element ranges of zone {p!r} do not number the elements 1, 2, ... without gaps "
                               f"or overlaps ({name} starts at {s}, expected {start})")
            start = e + 1
        n_cells = start - 1
        top = max((CELL_DIM[b[2]] for b in plan.blocks), default=0)
        n_top = sum(b[1] - b[0] + 1 for b in plan.blocks if CELL_DIM[b[2]] == top)
        for name, (path, count) in list(plan.cell_fields.items()):
            if count != n_cells:
                raise SimError(f"cell field {name!r} has {count} values"
                               + (f", one per {top}D element, but the zone also holds {n_cells - n_top} lower-"
                                  "dimensional elements: the store's cell data runs over all cells"
                                  if count == n_top else f" but the zone has {n_cells} elements"))
            plan.cell_fields[name] = path

    def _coordinates(self, plan: _Plan, node: _Node, n: int) -> None:
        if plan.coords:
            raise SimError(f"zone {node.path.rsplit('/', 1)[0]!r} holds two GridCoordinates; a store entry has one "
                           "set of points")
        plan.features[node.path] = "points"
        found = {}
        for c in node.children():
            if c.name not in ("CoordinateX", "CoordinateY", "CoordinateZ") or c.label != "DataArray_t":
                raise SimError(f"CGNS node {c.path!r} ({c.label}) is not a Cartesian coordinate (CoordinateX/Y/Z)")
            if c.shape != (n,) or c.kind not in ("R4", "R8"):
                raise SimError(f"coordinate {c.path!r} has shape {c.shape} and type {c.kind}; expected {n} reals")
            found[c.name] = c.group.name
            plan.features[c.path] = "points"
        order = [k for k in ("CoordinateX", "CoordinateY", "CoordinateZ") if k in found]
        if order != ["CoordinateX", "CoordinateY", "CoordinateZ"][: len(order)]:
            raise SimError(f"{node.path!r} holds {order}; the store's points are X, X-Y or X-Y-Z")
        plan.coords = [found[k] for k in order]

    def _elements(self, plan: _Plan, node: _Node) -> None:
        head = np.asarray(node.value()).reshape(-1)
        code = int(head[0])
        cgns = CGNS_ELEMENTS[code] if 0 <= code < len(CGNS_ELEMENTS) else f"code {code}"
        if cgns not in TO_CELL:
            raise SimError(f"{node.path!r} holds {cgns} elements, which the store cannot hold (supported: "
                           f"{', '.join(TO_CELL)}; the node orders of the others differ from VTK's)")
        rng = node.child("ElementRange")
        conn = node.child("ElementConnectivity")
        others = [c for c in node.children() if c.name not in ("ElementRange", "ElementConnectivity")]
        if rng is None or conn is None or others:
            raise SimError(f"{node.path!r} must hold ElementRange and ElementConnectivity"
                           + (f" (and holds {others[0].name!r} ({others[0].label}), which has no place in the store)"
                              if others else ""))
        s, e = (int(v) for v in np.asarray(rng.value()).reshape(-1)[:2])
        name = TO_CELL[cgns]
        from sim.mesh.cells import CELL_TYPES

        k = CELL_TYPES[name].num_nodes
        if e < s or conn.shape != ((e - s + 1) * k,) or conn.kind not in ("I4", "I8"):
            raise SimError(f"{node.path!r}: {conn.shape} connectivity values of type {conn.kind} for elements {s}..{e}"
                           f" of {k} nodes")
        plan.blocks.append((s, e, name, conn.group.name))
        plan.features[node.path] = "cells"
        for c in node.children():
            plan.features[c.path] = "cells"

    def _solution(self, plan: _Plan, node: _Node) -> None:
        loc = node.child("GridLocation")
        location = loc.value() if loc is not None else "Vertex"
        if location not in ("Vertex", "CellCenter"):
            raise SimError(f"{node.path!r} holds fields at {location}; the store holds fields at vertices and cells")
        target = plan.point_fields if location == "Vertex" else plan.cell_fields
        where = "point_data" if location == "Vertex" else "cell_data"
        for c in node.children():
            if c.name == "GridLocation":
                continue
            if c.label != "DataArray_t" or c.children():
                raise SimError(f"CGNS node {c.path!r} ({c.label}) is not a field")
            if c.name in target:
                raise SimError(f"two {location} fields are named {c.name!r} ({c.path!r} and another solution node)")
            if len(c.shape) != 1 or c.kind not in _NUMERIC_TYPES:
                raise SimError(f"field {c.path!r} has shape {c.shape} and type {c.kind}; PLAID fields are 1D numbers")
            if location == "Vertex":
                if c.shape[0] != plan.n_points:
                    raise SimError(f"field {c.path!r} has {c.shape[0]} values but the zone has {plan.n_points} "
                                   "vertices")
                target[c.name] = c.group.name
            else:
                target[c.name] = (c.group.name, c.shape[0])  # checked against the elements in _zone
            plan.features[c.path] = f"{where}/{c.name}"

    def _tags(self, plan: _Plan, node: _Node) -> None:
        for bc in node.children():
            if bc.label != "BC_t":
                raise SimError(f"CGNS node {bc.path!r} ({bc.label}) is not a BC_t tag")
            loc = bc.child("GridLocation")
            location = loc.value() if loc is not None else "Vertex"
            lst, rng = bc.child("PointList"), bc.child("PointRange")
            others = [c for c in bc.children() if c.name not in ("GridLocation", "PointList", "PointRange")]
            if others:
                raise SimError(f"CGNS node {others[0].path!r} ({others[0].label}) in a tag has no place in the store "
                               "(a tag is a PointList or PointRange at a GridLocation)")
            if (lst is None) == (rng is None):
                raise SimError(f"tag {bc.path!r} must hold one PointList or PointRange")
            which = lst or rng
            where = "point_data" if location == "Vertex" else "cell_data"
            if location not in ("Vertex", "CellCenter", "FaceCenter", "EdgeCenter"):
                raise SimError(f"tag {bc.path!r} is at {location}; tags are at vertices or on elements")
            target = plan.point_tags if location == "Vertex" else plan.cell_tags
            if bc.name in target:
                raise SimError(f"two tags are named {bc.name!r}")
            target[bc.name] = (which.group.name, "list" if lst is not None else "range")
            if bc.kind == "C1":
                plan.bc_types[bc.name] = bc.value()
            plan.features[bc.path] = f"{where}/set:{bc.name}"
            for c in bc.children():
                plan.features[c.path] = f"{where}/set:{bc.name}"

    def _check_splits(self) -> None:
        first: dict[str | None, _Plan] = {}
        for plan in self.plans:
            ref = first.setdefault(plan.ref.split, plan)
            a, b = ref.keys(), plan.keys()
            if a != b:
                missing, extra = sorted(a - b), sorted(b - a)
                raise FileFormatError(
                    f"the sample has no {', '.join(missing)} that sample {ref.ref.folder.name} of its split has"
                    if missing else f"the sample has {', '.join(extra)} that sample {ref.ref.folder.name} of its "
                    "split has not", plan.file)

    # ----- problem definitions
    def _place(self, plan: _Plan, feature: Any, file: Path) -> str | None:
        """Where ``feature`` (a CGNS path, or a PLAID 0.1 identifier) is in ``plan``'s entry; None when absent."""
        if isinstance(feature, str):
            path = feature.strip("/")
            if path.startswith("CGNSTree/"):
                path = path[len("CGNSTree/"):]
            return plan.features.get(path)
        if not isinstance(feature, dict) or "type" not in feature:
            raise FileFormatError(f"feature {feature!r} is neither a CGNS path nor a feature identifier", file)
        kind, name = feature["type"], feature.get("name")
        if kind in ("scalar", "scalars"):
            return f"field_data/{name}" if name in plan.globals or name in plan.csv_scalars else None
        if kind in ("field", "fields"):
            loc = feature.get("location")
            if loc in (None, "Vertex") and name in plan.point_fields:
                return f"point_data/{name}"
            if loc in (None, "CellCenter") and name in plan.cell_fields:
                return f"cell_data/{name}"
            return None
        if kind in ("nodes", "meshes", "mesh"):
            return "points" if kind == "nodes" else "mesh"
        if kind in ("time_series", "timeseries"):
            raise FileFormatError(f"feature {feature!r} is a time series, which a steady sample does not hold", file)
        raise FileFormatError(f"feature {feature!r} has the unknown type {kind!r}", file)

    def _split_entries(self, splits: dict[str, Any], file: Path) -> list[str]:
        out = []
        for split, ids in splits.items():
            if self.layout == "legacy":
                wanted = set(ids) if isinstance(ids, list) else None
                out += [p.ref.entry for p in self.plans if wanted is None or p.ref.id in wanted]
                continue
            if self.only_split is not None and split != self.only_split:
                continue
            have = [p for p in self.plans if p.ref.split == split]
            if ids == "all":
                out += [p.ref.entry for p in have]
            else:
                by_id = {p.ref.id: p.ref.entry for p in have}
                missing = [i for i in ids if i not in by_id]
                if missing:
                    raise FileFormatError(f"split {split!r} names sample(s) {missing[:5]} that data/{split}/ does not "
                                          "hold", file)
                out += [by_id[i] for i in ids]
        return out

    def _problem(self, name: str, raw: dict[str, Any]) -> dict[str, Any]:
        file = raw["file"]
        train = self._split_entries(raw["train"], file)
        train_set = set(train)
        sides: dict[str, Any] = {}
        for side in ("inputs", "outputs"):
            places: list[str] = []
            for feature in raw[side]:
                found = None
                for plan in self.plans:
                    place = self._place(plan, feature, file)
                    if place is None and (side == "inputs" or plan.ref.entry in train_set):
                        shown = feature if isinstance(feature, str) else json.dumps(feature)
                        raise FileFormatError(f"sample {plan.ref.folder.name}"
                                              f"{f' of split {plan.ref.split}' if plan.ref.split else ''} has no "
                                              f"{shown!r}, which problem definition {file.name} names as an "
                                              f"{side[:-1]}", plan.file)
                    found = found or place
                if found is not None and found not in places:
                    places.append(found)
            group: dict[str, Any] = {"scalars": [], "point_data": [], "cell_data": [], "mesh": False}
            for place in places:
                where, _, key = place.partition("/")
                if where == "field_data" and key:
                    group["scalars"].append(key)
                elif where in ("point_data", "cell_data"):
                    group[where].append(key)
                elif where == "field_data":
                    group["scalars"] += sorted({k for p in self.plans for k in (*p.globals, *p.csv_scalars)})
                else:  # points, cells, mesh
                    group["mesh"] = True
            if self.sidecar is not None:  # the store's names of fields written as columns
                layout = self.sidecar.get("layout", {})
                for where in ("point_data", "cell_data"):
                    owner = {c: k for k, spec in layout.get(where, {}).items() for c in spec.get("columns") or ()}
                    group[where] = list(dict.fromkeys(owner.get(k, k) for k in group[where]))
            sides[side] = group
        return {**sides, "train": train, "test": self._split_entries(raw["test"], file)}

    def _metadata(self) -> dict[str, Any]:
        first = self.plans[0]
        zones = {f"{p.base}/{p.zone}" for p in self.plans}
        features: dict[str, str] = {}
        for p in self.plans:
            features.update(p.features)
        bc_types: dict[str, str] = {}
        for p in self.plans:
            bc_types.update(p.bc_types)
        plaid: dict[str, Any] = {
            "layout": self.layout,
            "infos": _json(self.infos),
            "problem_definitions": self.definitions,
            "problems": self.problems,
            "splits": {},
            "features": dict(sorted(features.items())),
            "node_types": "from vertex tags: a tag named after a node type (any case, or node_type_<NAME>/<code>), "
                          "else BCWall*/BCInflow*/BCOutflow* BC types; the highest code wins; untagged nodes 0",
            "bc_types": bc_types,
            "zone": f"{first.base}/{first.zone}" if len(zones) == 1 else {p.ref.entry: f"{p.base}/{p.zone}"
                                                                          for p in self.plans},
        }
        if self.layout == "cgns":
            plaid["samples"] = {p.ref.entry: {"split": p.ref.split, "id": p.ref.id} for p in self.plans}
            for p in self.plans:
                plaid["splits"].setdefault(p.ref.split, []).append(p.ref.entry)
        else:
            for name, ids in self._legacy_splits().items():
                wanted = set(ids)
                plaid["splits"][name] = [p.ref.entry for p in self.plans if p.ref.id in wanted]
        times = {p.ref.entry: p.time for p in self.plans if p.time != 0.0}
        if times:
            plaid["times"] = times
        meta: dict[str, Any] = {"source": {"format": "plaid", "folder": self.root.name, "layout": self.layout}}
        if self.only_split is not None:
            meta["source"]["split"] = self.only_split
            meta["split"] = self.only_split
        if self.sidecar is not None:
            meta = {**self.sidecar.get("metadata", {}), **meta}
        meta["plaid"] = plaid
        return meta

    def _legacy_splits(self) -> dict[str, list[int]]:
        d = self.definitions.get("problem_definition", {})
        split = d.get("split", {}) if isinstance(d, dict) else {}
        return {k: v for k, v in split.items() if isinstance(v, list)}

    # ----- iteration
    def __len__(self) -> int:
        return len(self.plans)

    def __iter__(self) -> Iterator[tuple[str, Mesh]]:
        for plan in self.plans:
            yield self.read(plan)

    def close(self) -> None:
        pass

    def read(self, plan: _Plan) -> tuple[str, Mesh]:
        """(entry name, Mesh) of one sample."""
        try:
            with h5py.File(plan.file, "r") as f:
                mesh = self._mesh(plan, f)
            name = plan.ref.entry
            if self.sidecar is not None:
                name, mesh = self._restore(plan, mesh)
            return name, mesh.validate()
        except FileFormatError as exc:
            if exc.path is not None:
                raise
            raise FileFormatError(exc.message, plan.file) from None
        except SimError as exc:
            raise FileFormatError(exc.message, plan.file) from None
        except (KeyError, OSError, ValueError) as exc:
            raise FileFormatError(f"cannot be read ({exc})", plan.file) from None

    @staticmethod
    def _array(f: h5py.File, path: str) -> np.ndarray:
        return np.ascontiguousarray(np.asarray(f[path][" data"][()]).T)

    def _mesh(self, plan: _Plan, f: h5py.File) -> Mesh:
        coords = [self._array(f, p).reshape(-1) for p in plan.coords]
        if len({a.dtype for a in coords}) > 1:
            raise SimError("its coordinates have different types (CoordinateX/Y/Z must share one)")
        points = np.stack(coords, axis=1)
        cells: dict[str, list[np.ndarray]] = {}
        order: dict[str, list[np.ndarray]] = {}
        from sim.mesh.cells import CELL_TYPES

        for s, e, name, path in plan.blocks:
            conn = self._array(f, path).reshape(-1, CELL_TYPES[name].num_nodes).astype(np.int64) - 1
            cells.setdefault(name, []).append(conn)
            order.setdefault(name, []).append(np.arange(s - 1, e))
        merged = {k: np.concatenate(v) for k, v in cells.items()}
        perm = np.concatenate([np.concatenate(v) for v in order.values()]) if order else np.zeros(0, np.int64)
        n_cells = len(perm)
        point_data = {k: self._array(f, p).reshape(-1) for k, p in plan.point_fields.items()}
        cell_data = {k: self._array(f, p).reshape(-1)[perm] for k, p in plan.cell_fields.items()}
        for target, tags, size, pos in ((point_data, plan.point_tags, plan.n_points, None),
                                        (cell_data, plan.cell_tags, n_cells, perm)):
            for k, (path, how) in tags.items():
                ids = self._array(f, path).reshape(-1).astype(np.int64)
                if how == "range":
                    ids = np.arange(ids[0], ids[-1] + 1)
                if ids.size and (ids.min() < 1 or ids.max() > size):
                    raise SimError(f"tag {k!r} refers to {'vertices' if pos is None else 'elements'} outside 1..{size}")
                mask = np.zeros(size, dtype=np.int8)
                mask[ids - 1] = 1
                name = f"set:{k}"
                if name in target:
                    raise SimError(f"tag {k!r} and a field are both named {name!r}")
                target[name] = mask if pos is None else mask[pos]
        field_data: dict[str, Any] = {}
        for k, path in plan.globals.items():
            node = _node(f[path], path)
            v = node.value()
            field_data[k] = v if isinstance(v, str) else np.atleast_1d(v)
        for k, v in plan.csv_scalars.items():
            field_data[k] = np.array([v])
        node_type = _node_types(point_data, plan.bc_types, plan.n_points)
        return Mesh(points, merged, point_data=point_data, cell_data=cell_data, field_data=field_data,
                    node_type=node_type)

    def _restore(self, plan: _Plan, mesh: Mesh) -> tuple[str, Mesh]:
        """The store entry that ``write_plaid`` wrote this sample from (its ``sim_store.json``)."""
        side = self.sidecar or {}
        names = side.get("entries", {}).get(plan.ref.split or "", {})
        name = names.get(str(plan.ref.id))
        if name is None:
            raise SimError(f"{SIDECAR} does not name sample {plan.ref.id} of split {plan.ref.split!r}")
        layout = side.get("layout", {})
        pd, cd, fd = dict(mesh.point_data), dict(mesh.cell_data), dict(mesh.field_data)
        node_type = mesh.node_type
        nt = layout.get("node_type")
        if nt is None:
            node_type = None
        else:
            if nt.get("tags") is not None:
                node_type = np.zeros(mesh.num_points, dtype=np.int64)
                for tag, code in nt["tags"].items():
                    mask = pd.pop(f"set:{tag}", None)
                    if mask is None:
                        raise SimError(f"has no node-type tag {tag!r} that {SIDECAR} names")
                    node_type[mask.astype(bool)] = code
            elif node_type is None:
                node_type = np.zeros(mesh.num_points, dtype=np.int64)
            node_type = _cast(node_type, nt["dtype"], "node_type")
        for where, data in (("point_data", pd), ("cell_data", cd)):
            for k, spec in layout.get(where, {}).items():
                cols = spec.get("columns")
                if cols is not None:
                    missing = [c for c in cols if c not in data]
                    if missing:
                        raise SimError(f"has no field(s) {missing} of {where} {k!r} ({SIDECAR})")
                    a = np.stack([data.pop(c) for c in cols], axis=1)
                    data[k] = a.reshape(a.shape[0], *spec["shape"])
                if k not in data:
                    raise SimError(f"has no {where} {k!r} that {SIDECAR} names")
                data[k] = _cast(data[k], spec["dtype"], k)
        for k, spec in layout.get("field_data", {}).items():
            if k not in fd:
                raise SimError(f"has no scalar {k!r} that {SIDECAR} names")
            if spec["dtype"] != "str":
                fd[k] = _cast(fd[k], spec["dtype"], k).reshape(spec["shape"])
        mesh = Mesh(mesh.points, mesh.cells, point_data=pd, cell_data=cd, field_data=fd, node_type=node_type)
        return check_entry_name(name, self.root / SIDECAR), mesh


def _cast(a: np.ndarray, dtype: str, name: str) -> np.ndarray:
    """``a`` as ``dtype`` (the dtype it had before a widening write), refusing a change of value."""
    out = np.asarray(a).astype(dtype)
    if not np.array_equal(out.astype(a.dtype), a, equal_nan=a.dtype.kind == "f"):
        raise SimError(f"{name!r} holds values that {dtype} cannot hold (edited after sim wrote it?)")
    return out


def _code_of(name: str) -> int | None:
    """The node type a tag's name gives (see the module docstring), or None."""
    n = name[len("node_type_"):] if name.lower().startswith("node_type_") else name
    if re.fullmatch(r"-?\d+", n) and name.lower().startswith("node_type_"):
        return int(n)
    try:
        return int(NodeType[n.upper()])
    except KeyError:
        return None


def _node_types(point_data: dict[str, np.ndarray], bc_types: dict[str, str], n: int) -> np.ndarray | None:
    codes = []
    for key, mask in point_data.items():
        if not key.startswith("set:"):
            continue
        tag = key[4:]
        code = _code_of(tag)
        if code is None:
            code = BC_NODE_TYPES.get(bc_types.get(tag, ""))
        if code is not None:
            codes.append((int(code), mask.astype(bool)))
    if not codes:
        return None
    nt = np.zeros(n, dtype=np.int32)
    for code, mask in sorted(codes, key=lambda c: c[0]):  # the highest code wins
        nt[mask] = code
    return nt


# ----------------------------------------------------------------------------- writing
def _str_attr(obj: h5py.Group, key: str, text: str, size: int) -> None:
    """A CGNS/HDF5 string attribute: fixed ``size`` bytes, null-terminated (CGNS readers such as
    pyCGNS read it into a buffer of that size)."""
    tid = h5py.h5t.C_S1.copy()
    tid.set_size(size)
    tid.set_strpad(h5py.h5t.STR_NULLTERM)
    raw = text.encode("utf-8")[: size - 1]
    obj.attrs.create(key, np.array(raw, dtype=f"S{size}"), dtype=h5py.Datatype(tid))


def _data(g: h5py.Group, a: np.ndarray) -> None:
    """The node's ``" data"`` dataset (compact when small, as the CGNS library writes it)."""
    a = np.ascontiguousarray(a)
    if a.nbytes < 32_000:
        dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
        dcpl.set_layout(h5py.h5d.COMPACT)
        space = h5py.h5s.create_simple(a.shape)
        ds = h5py.h5d.create(g.id, b" data", h5py.h5t.py_create(a.dtype), space, dcpl=dcpl)
        if a.size:
            ds.write(h5py.h5s.ALL, h5py.h5s.ALL, a)
    else:
        g.create_dataset(" data", data=a)


def _put(parent: h5py.Group, name: str, label: str, value: Any = None) -> h5py.Group:
    """One CGNS node under ``parent`` (the CGNS/HDF5 mapping: a group whose children keep their
    creation order, attributes name/label (33 bytes) and type (3 bytes), the value in ``" data"``
    with the axes reversed)."""
    g = parent.create_group(name, track_order=True)
    if value is None:
        kind = "MT"
    elif isinstance(value, str):
        kind = "C1"
        _data(g, np.frombuffer(value.encode("utf-8"), dtype=np.int8))
    else:
        a = np.asarray(value)
        kind = _CGNS_TYPE[a.dtype]
        _data(g, a.T)
    _str_attr(g, "name", name, 33)
    _str_attr(g, "label", label, 33)
    _str_attr(g, "type", kind, 3)
    g.attrs.create("flags", np.array([0], dtype=np.int32))
    return g


def _cgns_name(name: str, what: str, where: Any) -> str:
    if not name or "/" in name or name in (".", "..") or name.startswith(" ") or len(name.encode()) > MAX_NAME:
        raise SimError(f"{what} {name!r} cannot be a CGNS node name (1 to {MAX_NAME} characters, no '/', no "
                       "leading space)", where)
    return name


def _widened(a: np.ndarray, what: str, where: Any) -> np.ndarray:
    a = np.asarray(a)
    if a.dtype.byteorder == ">":
        a = a.astype(a.dtype.newbyteorder("="))
    if a.dtype in _CGNS_TYPE:
        return a
    key = "b" if a.dtype.kind == "b" else f"{a.dtype.kind}{a.dtype.itemsize}"
    if key not in _WIDEN:
        raise SimError(f"{what} has dtype {a.dtype}, which CGNS has no type for", where)
    return a.astype(_WIDEN[key])


def _time_node(base: h5py.Group, t: float) -> None:
    it = _put(base, "Time", "BaseIterativeData_t", np.array([1], dtype=np.int32))
    _put(it, "IterationValues", "DataArray_t", np.array([1], dtype=np.int32))
    _put(it, "TimeValues", "DataArray_t", np.array([t], dtype=np.float64))


def _field_layout(store: Any, names: list[str]) -> dict[str, Any]:
    """One layout per field name across the entries (dtype, trailing shape), or an error naming both."""
    layout: dict[str, dict[str, Any]] = {"point_data": {}, "cell_data": {}, "field_data": {}}
    seen: dict[tuple[str, str], tuple[str, Any]] = {}
    for name in names:
        g = store.entry(name).group
        for where in ("point_data", "cell_data", "field_data"):
            if where not in g:
                continue
            for k, ds in g[where].items():
                is_text = h5py.check_string_dtype(ds.dtype) is not None
                sig = ("str", ds.shape) if is_text else (str(ds.dtype), ds.shape[1:] if where != "field_data"
                                                         else ds.shape)
                prev = seen.setdefault((where, k), (name, sig))
                if prev[1] != sig:
                    raise SimError(f"{where} {k!r} is {prev[1]} in entry {prev[0]!r} and {sig} in entry {name!r}; "
                                   "a PLAID export needs one layout per field", store.label)
                layout[where][k] = {"dtype": sig[0], "shape": list(sig[1])}
    return layout


def _zone_name(meta: dict[str, Any], entry: str, tdim: int, pdim: int) -> tuple[str, str]:
    zone = (meta.get("plaid") or {}).get("zone")
    if isinstance(zone, dict):
        zone = zone.get(entry)
    if isinstance(zone, str) and zone.count("/") == 1:
        base, z = zone.split("/")
        if base.startswith("Base_") and base != "Global":
            return base, z
    return f"Base_{tdim}_{pdim}", "Zone"


def _write_sample(path: Path, mesh: Mesh, layout: dict[str, Any], base_name: str, zone_name: str, t: float,
                  nt_tags: dict[str, int] | None, bc_types: dict[str, str], where: Any) -> dict[str, str]:
    """One CGNS file of ``mesh``; returns the PLAID path of every feature written (store place -> path)."""
    top = max((CELL_DIM[c] for c in mesh.cells), default=mesh.dim)
    n_top = sum(len(c) for k, c in mesh.cells.items() if CELL_DIM[k] == top)
    mixed = n_top != mesh.num_cells
    paths: dict[str, str] = {}
    with h5py.File(path, "w", track_order=True) as f:
        _str_attr(f, "name", "HDF5 MotherNode", 33)
        _str_attr(f, "label", "Root Node of HDF5 File", 33)
        _str_attr(f, "type", "MT", 3)
        _data(f, np.frombuffer(b"NATIVE\x00", dtype=np.int8))
        f.move(" data", " format")
        version = f"HDF5 Version {h5py.version.hdf5_version}".encode()[:32].ljust(33, b"\x00")
        _data(f, np.frombuffer(version, dtype=np.int8))
        f.move(" data", " hdf5version")
        _put(f, "CGNSLibraryVersion", "CGNSLibraryVersion_t", np.array([4.0], dtype=np.float32))
        base = _put(f, base_name, "CGNSBase_t", np.array([top, mesh.dim], dtype=np.int32))
        _time_node(base, t)
        zone = _put(base, zone_name, "Zone_t", np.array([[mesh.num_points, n_top, 0]], dtype=np.int64))
        zp = f"{base_name}/{zone_name}"
        paths["mesh"] = zp
        _put(zone, "ZoneType", "ZoneType_t", "Unstructured")
        gc = _put(zone, "GridCoordinates", "GridCoordinates_t")
        paths["points"] = f"{zp}/GridCoordinates"
        for i, axis in enumerate("XYZ"[: mesh.dim]):
            _put(gc, f"Coordinate{axis}", "DataArray_t", np.ascontiguousarray(mesh.points[:, i]))
        start = 1
        for name, conn in mesh.cells.items():
            cgns = FROM_CELL.get(name)
            if cgns is None:
                raise SimError(f"cells {name!r} have no PLAID (CGNS) element type that sim writes (writes: "
                               f"{', '.join(FROM_CELL)})", where)
            el = _put(zone, f"Elements_{cgns}", "Elements_t", np.array([CGNS_ELEMENTS.index(cgns), 0], dtype=np.int32))
            _put(el, "ElementRange", "IndexRange_t", np.array([start, start + len(conn) - 1], dtype=np.int64))
            _put(el, "ElementConnectivity", "DataArray_t", (conn.astype(np.int64) + 1).reshape(-1))
            start += len(conn)
        tags: list[tuple[str, str, np.ndarray, str]] = []  # name, location, 1-based ids, bc type
        fields: dict[str, dict[str, np.ndarray]] = {"Vertex": {}, "CellCenter": {}}
        for where_, loc, data in (("point_data", "Vertex", mesh.point_data), ("cell_data", "CellCenter",
                                                                               mesh.cell_data)):
            for k, a in data.items():
                spec = layout[where_][k]
                if spec.get("tag"):
                    ids = np.flatnonzero(np.asarray(a) != 0) + 1
                    tags.append((k[4:], loc, ids, bc_types.get(k[4:], "UserDefined")))
                    continue
                if where_ == "cell_data" and mixed:
                    raise SimError(f"cell_data {k!r}: the mesh mixes cells of several dimensions "
                                   f"({', '.join(mesh.cells)}), and PLAID's cell fields run over the "
                                   f"{top}D cells only", where)
                a = _widened(np.asarray(a), f"{where_} {k!r}", where)
                cols = spec.get("columns")
                if cols is None:
                    fields[loc][k] = a
                else:
                    flat = a.reshape(a.shape[0], -1)
                    for i, c in enumerate(cols):
                        fields[loc][c] = np.ascontiguousarray(flat[:, i])
                paths[f"{where_}/{k}"] = f"{zp}/{loc}Fields/{cols[0] if cols else k}"
        if nt_tags is not None and mesh.node_type is not None:
            for tag, code in nt_tags.items():
                ids = np.flatnonzero(mesh.node_type == code) + 1
                if ids.size:
                    tags.append((tag, "Vertex", ids, NODE_TYPE_BC.get(code, "UserDefined")))
        if tags:
            zbc = _put(zone, "ZoneBC", "ZoneBC_t")
            for name, loc, ids, bctype in tags:
                bc = _put(zbc, name, "BC_t", bctype)
                index = np.int32 if ids.size == 0 or ids.max() < 2**31 else np.int64
                _put(bc, "PointList", "IndexArray_t", ids.astype(index).reshape(1, -1))
                _put(bc, "GridLocation", "GridLocation_t", loc)
                paths[f"{'point_data' if loc == 'Vertex' else 'cell_data'}/set:{name}"] = f"{zp}/ZoneBC/{name}"
        for loc, data in fields.items():
            if not data:
                continue
            fs = _put(zone, f"{loc}Fields", "FlowSolution_t")
            _put(fs, "GridLocation", "GridLocation_t", loc)
            for k, a in data.items():
                _put(fs, k, "DataArray_t", a)
        glob = _put(f, "Global", "CGNSBase_t", np.array([1, 1], dtype=np.int32))
        _time_node(glob, t)
        for k, v in mesh.field_data.items():
            if isinstance(v, str):
                _put(glob, k, "DataArray_t", v)
            elif np.asarray(v).dtype.kind == "U":
                raise SimError(f"field_data {k!r} is an array of strings, which a PLAID scalar cannot hold", where)
            else:
                _put(glob, k, "DataArray_t", _widened(np.asarray(v), f"field_data {k!r}", where))
            paths[f"field_data/{k}"] = f"Global/{k}"
    return paths


def write_plaid(src: str | os.PathLike, dst: str | os.PathLike, progress: bool = False) -> int:
    """Write the steady samples of the store ``src`` as the PLAID dataset folder ``dst`` (storage
    backend ``cgns``, see the module docstring); returns the number of samples. ``dst`` appears
    (or replaces an older folder) only when every sample is written."""
    import shutil

    import yaml
    from tqdm import tqdm

    from sim.mesh.atomic import clean_stale, staging_dir, swap_in, write_error
    from sim.mesh.store import Store

    src, dst = Path(src), Path(dst)
    if src.is_dir():
        raise FileFormatError("is a folder; a PLAID dataset is written from a sim store of steady samples (.h5)", src)
    if dst.exists() and not dst.is_dir():
        raise SimError("is a file; a PLAID dataset is a folder", dst)
    if dst.is_dir() and any(dst.iterdir()) and not (dst / SIDECAR).is_file():
        raise SimError(f"exists and is not a PLAID dataset that sim wrote (no {SIDECAR}); give a new folder, "
                       "sim replaces only its own", dst)
    with Store(src) as store:
        names = store.names()
        if not names:
            raise SimError("the store has no entries", src)
        for name in names:
            if store.entry(name).kind != "mesh":
                raise SimError(f"entry {name!r} is a trajectory; a PLAID dataset written by sim holds steady samples "
                               "(store entries of kind mesh)", src)
        meta = dict(store.metadata)
        plaid_meta = meta.get("plaid") if isinstance(meta.get("plaid"), dict) else {}
        layout = _field_layout(store, names)
        _plan_columns(layout, src)
        samples = plaid_meta.get("samples") if isinstance(plaid_meta.get("samples"), dict) else {}
        default_split = str(meta.get("split") or src.stem)
        where: dict[str, tuple[str, int]] = {}
        counters: dict[str, int] = {}
        taken: set[tuple[str, int]] = set()
        for name in names:
            s = samples.get(name)
            if isinstance(s, dict) and isinstance(s.get("split"), str) and isinstance(s.get("id"), int) \
                    and (s["split"], s["id"]) not in taken:
                key = (s["split"], s["id"])
            else:
                split = default_split
                i = counters.get(split, 0)
                while (split, i) in taken:
                    i += 1
                key = (split, i)
                counters[split] = i + 1
            taken.add(key)
            where[name] = key
        for split, _ in taken:
            if not split or "/" in split or split.startswith("."):
                raise SimError(f"split name {split!r} cannot be a folder name", src)
        bc_types = plaid_meta.get("bc_types") if isinstance(plaid_meta.get("bc_types"), dict) else {}
        times = plaid_meta.get("times") if isinstance(plaid_meta.get("times"), dict) else {}
        node_layout = _node_type_layout(store, names, bc_types, layout)
        clean_stale(dst.parent)
        stage = staging_dir(dst)
        try:
            features: dict[str, str] = {}
            bar = tqdm(names, desc="samples", unit="sample", disable=None if progress else True)
            for name in bar:
                mesh = store.read(name)
                split, sid = where[name]
                top = max((CELL_DIM.get(c, mesh.dim) for c in mesh.cells), default=mesh.dim)
                base, zone = _zone_name(meta, name, top, mesh.dim)
                folder = stage / "data" / split / f"sample_{sid:09d}" / "meshes"
                folder.mkdir(parents=True, exist_ok=True)
                paths = _write_sample(folder / "mesh_000000000.cgns", mesh, layout, base, zone,
                                      float(times.get(name, 0.0)), node_layout.get("tags"), bc_types,
                                      f"{src}: entry {name!r}")
                features.update(paths)
            num = {s: sum(1 for v in where.values() if v[0] == s) for s in sorted({v[0] for v in where.values()})}
            infos = _infos(plaid_meta.get("infos"), num)
            (stage / "infos.yaml").write_text(yaml.safe_dump(infos, sort_keys=False))
            pdir = stage / "problem_definitions"
            pdir.mkdir()
            for pname, definition in _definitions(plaid_meta, layout, features, where, num, src).items():
                (pdir / f"{pname}.yaml").write_text(yaml.safe_dump(definition, sort_keys=False))
            entries: dict[str, dict[str, str]] = {}
            for name, (split, sid) in where.items():
                entries.setdefault(split, {})[str(sid)] = name
            sidecar = {"format": SIDECAR_FORMAT, "version": 1, "store": src.name, "metadata": meta,
                       "entries": entries, "layout": {**layout, "node_type": node_layout.get("record")}}
            (stage / SIDECAR).write_text(json.dumps(sidecar, indent=1))
            swap_in([(stage, dst)])
        except OSError as exc:
            raise write_error(dst, exc) from None
        finally:
            shutil.rmtree(stage, ignore_errors=True)
    return len(names)


def _plan_columns(layout: dict[str, Any], where: Any) -> None:
    """Decide how each field is written: a 0/1 ``set:`` array as a tag, a (N, k) array as k columns."""
    for kind in ("point_data", "cell_data"):
        taken = {k for k, s in layout[kind].items() if not s["shape"]}
        for k, spec in layout[kind].items():
            _cgns_name(k[4:] if k.startswith("set:") else k, kind, where)
            if k.startswith("set:") and not spec["shape"] and spec["dtype"] != "str" and \
                    np.dtype(spec["dtype"]).kind in "biu":
                spec["tag"] = True  # values checked when written (0/1 only; others are refused below)
            elif spec["shape"]:
                n = int(np.prod(spec["shape"]))
                cols = [f"{k}_{i}" for i in range(n)]
                clash = [c for c in cols if c in taken or c in layout[kind]]
                if clash:
                    raise SimError(f"{kind} {k!r} is written as PLAID fields {cols[0]} ... but {clash[0]!r} is a "
                                   "field already", where)
                for c in cols:
                    _cgns_name(c, f"{kind} component", where)
                taken.update(cols)
                spec["columns"] = cols
    for k in layout["field_data"]:
        _cgns_name(k, "field_data", where)


def _node_type_layout(store: Any, names: list[str], bc_types: dict[str, str],
                      layout: dict[str, Any]) -> dict[str, Any]:
    """How node types travel: as the store's own tags (when they give them) or as node_type_<NAME> tags."""
    for kind in ("point_data", "cell_data"):  # set: arrays of other values than 0/1 are written as fields
        for k, spec in layout[kind].items():
            if spec.get("tag"):
                for name in names:
                    g = store.entry(name).group
                    if kind in g and k in g[kind] and not np.isin(g[kind][k][()], (0, 1)).all():
                        spec.pop("tag")
                        break
    dtypes, derivable = set(), True
    codes: set[int] = set()
    has = None
    for name in names:
        g = store.entry(name).group
        here = "node_type" in g
        if has is not None and here != has:
            raise SimError(f"some entries have node types and others not (entry {name!r}); a PLAID export needs "
                           "one layout", store.label)
        has = here
        if not here:
            continue
        nt = g["node_type"][()]
        dtypes.add(str(nt.dtype))
        codes.update(int(c) for c in np.unique(nt))
        pd = {k: g["point_data"][k][()] for k, spec in layout["point_data"].items() if spec.get("tag")}
        derived = _node_types(pd, bc_types, len(nt))
        if derived is None or not np.array_equal(derived, nt):
            derivable = False
    if not has:
        return {"record": None}
    if len(dtypes) > 1:
        raise SimError(f"node_type has dtypes {sorted(dtypes)} across entries; a PLAID export needs one", store.label)
    dtype = dtypes.pop()
    if derivable:
        return {"record": {"dtype": dtype, "tags": None}}
    tags = {}
    for code in sorted(codes - {0}):
        try:
            tag = f"node_type_{NodeType(code).name}"
        except ValueError:
            tag = f"node_type_{code}"
        if f"set:{tag}" in layout["point_data"]:
            raise SimError(f"point_data 'set:{tag}' collides with the tag written for node type {code}", store.label)
        tags[tag] = code
    return {"record": {"dtype": dtype, "tags": tags}, "tags": tags}


def _infos(imported: Any, num: dict[str, int]) -> dict[str, Any]:
    src = imported if isinstance(imported, dict) else {}
    legal = src.get("legal") if isinstance(src.get("legal"), dict) else {}
    out: dict[str, Any] = {"owner": str(src.get("owner") or legal.get("owner") or "unknown"),
                           "license": str(src.get("license") or legal.get("license") or "unknown")}
    prod = src.get("data_production")
    keys = ("type", "physics", "simulator", "hardware", "computation_duration", "script", "contact")
    if isinstance(prod, dict) and prod:
        out["data_production"] = {k: str(v) for k, v in prod.items() if k in keys and v is not None}
    if isinstance(src.get("data_description"), str):
        out["data_description"] = src["data_description"]
    out["num_samples"] = num
    out["storage_backend"] = "cgns"
    return out


def _definitions(plaid_meta: dict[str, Any], layout: dict[str, Any], features: dict[str, str],
                 where: dict[str, tuple[str, int]], num: dict[str, int], src: Path) -> dict[str, dict[str, Any]]:
    """The problem definitions written: the dataset's own (CGNS paths kept) when they came from PLAID
    >= 0.2 and every path is still there, else built from ``plaid.problems``, else one, ``sim``."""
    written = set(features.values())
    prefixes = {p.rsplit("/", 1)[0] for p in written} | {"Global"}
    own = plaid_meta.get("problem_definitions") if plaid_meta.get("layout") == "cgns" else None
    if isinstance(own, dict) and own:
        ok = all(isinstance(d, dict) and all(
            isinstance(p, str) and (p in written or p in prefixes or any(w.startswith(p + "/") for w in written))
            for p in (*d.get("input_features", []), *d.get("output_features", []))) for d in own.values())
        if ok:
            return own

    def split_of(entries: list[str]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for e in entries:
            if e in where:
                out.setdefault(where[e][0], []).append(where[e][1])
        return {s: ("all" if len(ids) == num.get(s) else sorted(ids)) for s, ids in out.items()}

    def paths(group: dict[str, Any]) -> list[str]:
        out = []
        for key in ("scalars", "point_data", "cell_data"):
            for k in group.get(key, []):
                place = f"{'field_data' if key == 'scalars' else key}/{k}"
                spec = layout["field_data" if key == "scalars" else key].get(k, {})
                if place in features:
                    p = features[place]
                    if spec.get("columns"):
                        base = p.rsplit("/", 1)[0]
                        out += [f"{base}/{c}" for c in spec["columns"]]
                    else:
                        out.append(p)
        if group.get("mesh") and "points" in features:
            out.append(features["points"])
        return out

    problems = plaid_meta.get("problems")
    defs: dict[str, dict[str, Any]] = {}
    if isinstance(problems, dict) and problems:
        for name, pb in problems.items():
            if not isinstance(pb, dict):
                continue
            ins, outs = paths(pb.get("inputs", {})), paths(pb.get("outputs", {}))
            if ins and outs:
                defs[str(name)] = {"input_features": ins, "output_features": outs,
                                   "train_split": split_of(pb.get("train", [])),
                                   "test_split": split_of(pb.get("test", []))}
        if defs:
            return defs
    scalars = sorted(k for k, s in layout["field_data"].items() if s["dtype"] != "str" and s["shape"] == [1])
    fields = sorted(k for k, s in layout["point_data"].items() if not s.get("tag"))
    ins = paths({"scalars": scalars})
    outs = paths({"point_data": fields})
    if not ins or not outs:
        raise SimError("the samples need input scalars (field data) and output point fields for a PLAID problem "
                       f"definition; they have scalars {scalars} and point fields {fields}", src)
    return {"sim": {"input_features": ins, "output_features": outs,
                    "train_split": {s: "all" for s in num}, "test_split": {}}}
