"""The ``sim`` command line.

Every user error ends as one line on stderr (``sim: error: <file>: <problem>``) and a
non-zero exit; no traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from sim.errors import SimError

EXIT_USER_ERROR = 2


class UsageError(SimError):
    """A command line argparse refuses (unknown command or option, a value of the wrong type)."""


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one ``sim: error:`` line like every other error (argparse
    prints the usage block and exits from inside ``parse_args``)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{self.prog}: {message} (see `{self.prog} --help`)")


def _number(kind: type, low: float, strict: bool = True):
    """An argparse ``type``: a number of ``kind`` above ``low`` (or at least it, ``strict=False``),
    so a bad count or budget is refused before any work starts."""

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {'an integer' if kind is int else 'a number'}, "
                                             f"got {text!r}") from None
        if not (value > low if strict else value >= low) or value != value:
            raise argparse.ArgumentTypeError(f"must be {'>' if strict else '>='} {low:g}, got {text}")
        return value

    parse.__name__ = kind.__name__
    return parse


POSITIVE_INT, NON_NEGATIVE_INT, POSITIVE_FLOAT = _number(int, 0), _number(int, 0, strict=False), _number(float, 0.0)


def PORT(text: str) -> int:  # noqa: N802 (an argparse type, named like the others)
    value = NON_NEGATIVE_INT(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"{value} is not a port (0-65535; 0: any free port)")
    return value


def _fmt_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


def cmd_convert(args: argparse.Namespace) -> None:
    from tqdm import tqdm

    from sim.mesh import Store, StoreWriter, Trajectory, read
    from sim.mesh.io import STORE_SUFFIXES, write

    src, dst = Path(args.input), Path(args.output)
    if src.resolve() == dst.resolve():
        raise SimError("input and output are the same file", dst)
    _check_output(dst)
    typed = _node_typer(args, src, dst)
    if _convert_foreign(args, src, dst):
        return
    obj = read(src)
    if not isinstance(obj, Store):
        obj = typed(obj)
    if args.all and not isinstance(obj, Store):
        raise SimError("--all writes one file per store entry; this input is not a store", src)
    if isinstance(obj, Store):
        with obj:
            names = _select_entries(obj, args.entry, src)
            if dst.suffix.lower() in STORE_SUFFIXES:
                with StoreWriter(dst, metadata=obj.metadata) as out:
                    for name in tqdm(names, desc="entries", disable=len(names) < 2):
                        out.append(typed(obj.read(name)), name=name)
                print(f"wrote {dst} ({len(names)} entries)")
                return
            if len(names) > 1 and not args.all:
                shown = ", ".join(names[:8]) + (" ..." if len(names) > 8 else "")
                raise SimError(
                    f"the store has {len(names)} entries ({shown}); choose one with --entry NAME "
                    f"or write one file per entry with --all", src)
            for name in tqdm(names, desc="entries", disable=len(names) < 2):
                target = dst if len(names) == 1 else dst.with_name(f"{dst.stem}_{name}{dst.suffix}")
                _write_one(typed(obj.read(name)), target)
        return
    if isinstance(obj, Trajectory) or dst.suffix.lower() in STORE_SUFFIXES:
        _write_one(obj, dst)
    else:
        write(obj, dst)
        print(f"wrote {dst}")


def _node_typer(args: argparse.Namespace, src: Path, dst: Path):
    """``--node-types NAME=TYPE,...``: a function that gives a mesh or series its node types from
    its named groups (identity without the option), checked against the first mesh it meets."""
    if not args.node_types:
        return lambda obj: obj
    from sim.mesh import io as mesh_io
    from sim.mesh.groups import parse_node_types, with_node_types

    mapping = parse_node_types(args.node_types)
    target = getattr(mesh_io, "detect_foreign_target", lambda path: None)(dst)
    if args.source_format or getattr(args, "target_format", None) or target or mesh_io.detect_foreign(src):
        raise SimError("--node-types gives a mesh or series its node types from its groups; it does not apply "
                       "to another project's dataset", src)
    return lambda obj: with_node_types(obj, mapping, where=src)


def _convert_foreign(args: argparse.Namespace, src: Path, dst: Path) -> bool:
    """Another project's dataset (``--from`` or found from the file) streamed into a store, or a
    store written out as one (``--to``, or an output named ``NAME.plaid``); False when neither."""
    from sim.mesh.io import convert_foreign, detect_foreign, detect_foreign_target, export_foreign

    target = args.target_format or detect_foreign_target(dst)
    if target is not None:
        if args.source_format is not None or args.entry is not None or args.all:
            raise SimError(f"--to {target} writes every entry of a sim store; --from, --entry and --all do not "
                           "apply", src)
        count = export_foreign(src, dst, target, progress=True)
        print(f"wrote {dst} ({count} {'sample' if count == 1 else 'samples'} as a {target} dataset)")
        return True
    fmt = args.source_format or detect_foreign(src)
    if fmt is None:
        return False
    if args.entry is not None or args.all:
        raise SimError(f"--entry and --all choose entries of a sim store; a {fmt} dataset converts whole into a "
                       "store (then convert an entry of that store)", src)
    count = convert_foreign(src, dst, fmt, progress=True)
    print(f"wrote {dst} ({count} {'entry' if count == 1 else 'entries'} from the {fmt} dataset {src.name})")
    return True


def _write_one(obj, dst: Path) -> None:
    from sim.mesh import Trajectory
    from sim.mesh.io import write

    write(obj, dst, progress=isinstance(obj, Trajectory) and obj.num_steps >= 20)
    print(f"wrote {dst}")


def _describe_mesh(mesh) -> list[str]:
    cells = ", ".join(f"{len(c)} {k}" for k, c in mesh.cells.items()) or "no cells"
    lines = [f"  points: {mesh.num_points} x {mesh.dim}D ({mesh.points.dtype})", f"  cells: {cells}"]
    for kind in ("point_data", "cell_data"):
        for k, a in getattr(mesh, kind).items():
            lines.append(f"  {kind} {k}: shape {tuple(a.shape)} {a.dtype}")
    for k, v in mesh.field_data.items():
        lines.append(f"  field_data {k}: {v!r}" if isinstance(v, str) else f"  field_data {k}: shape {v.shape} {v.dtype}")
    if mesh.node_type is not None:
        import numpy as np

        from sim.mesh import NodeType

        vals, counts = np.unique(mesh.node_type, return_counts=True)
        names = [NodeType(v).name.lower() if v in NodeType._value2member_map_ else str(v) for v in vals]
        lines.append("  node types: " + ", ".join(f"{n} {c}" for n, c in zip(names, counts)))
    return lines


def cmd_info(args: argparse.Namespace) -> None:
    from sim.mesh import Store, Trajectory, read

    path = Path(args.file)
    obj = read(path)
    if isinstance(obj, Store):
        with obj:
            info = obj.info()
        if args.json:
            print(json.dumps(info, indent=2))
            return
        entries = info["entries"]
        total = sum(e["stored_bytes"] for e in entries)
        print(f"{path}: sim store (schema v{info['schema_version']}), {len(entries)} entries, "
              f"{_fmt_bytes(total)} stored, {_fmt_bytes(path.stat().st_size)} on disk")
        if info["metadata"]:
            print(f"metadata: {json.dumps(info['metadata'])[:200]}")
        print(f"{'entry':<12} {'kind':<10} {'steps':>6} {'nodes':>8} {'cells':>8} {'dt':>10} {'stored':>10}  fields")
        shown = entries if args.all or len(entries) <= 20 else entries[:10] + entries[-5:]
        for i, e in enumerate(shown):
            if not args.all and len(entries) > 20 and i == 10:
                print(f"... {len(entries) - 15} more (--all shows every entry)")
            # time-dependent fields with their per-node shape, e.g. velocity(2,)
            fields = ", ".join(f"{k.split('/', 1)[-1]}{tuple(v['shape'][2:])}" for k, v in e["fields"].items()
                               if k.startswith(("point_fields/", "cell_fields/")) or k == "positions")
            dt = f"{e['dt']:.4g}" if e["dt"] is not None else "-"
            flag = "" if e["complete"] else "  [incomplete]"
            print(f"{e['name']:<12} {e['kind']:<10} {e['num_steps']:>6} {e['num_points']:>8} {e['num_cells']:>8} "
                  f"{dt:>10} {_fmt_bytes(e['stored_bytes']):>10}  {fields}{flag}")
        return
    if isinstance(obj, Trajectory):
        print(f"{path}: trajectory, {obj.num_steps} steps, t = {obj.times[0]:.6g} .. {obj.times[-1]:.6g}"
              + (f", dt {obj.dt:.6g}" if obj.dt is not None else ""))
        for line in _describe_mesh(obj.mesh):
            print(line)
        for kind in ("point_fields", "cell_fields"):
            for k, a in getattr(obj, kind).items():
                print(f"  {kind[:-1].replace('_', ' ')} {k}: shape {tuple(a.shape)} {a.dtype}")
        if obj.positions is not None:
            print(f"  positions: shape {obj.positions.shape} (moving points)")
        if obj.params:
            print(f"  params: {json.dumps(obj.params)}")
        return
    print(f"{path}: mesh")
    for line in _describe_mesh(obj):
        print(line)


def cmd_generate(args: argparse.Namespace) -> None:
    from solvers.recipes import generate, load_recipe, parse_shard

    recipe = load_recipe(args.recipe)
    paths = generate(recipe, args.size, out=Path(args.out) if args.out else None, workers=args.workers,
                     shard=parse_shard(args.shard))
    for split, p in paths.items():
        print(f"{split}: {p}")


def cmd_merge(args: argparse.Namespace) -> None:
    from solvers.recipes import load_recipe, merge_shards

    recipe = load_recipe(args.recipe) if args.recipe else None
    for split, p in merge_shards(args.directory, recipe).items():
        print(f"{split}: {p}")


def cmd_train(args: argparse.Namespace) -> None:
    from sim.families import configure, train, train_ensemble
    from sim.train.config import load_config

    cfg = load_config(args.config)
    if args.steps is not None:
        if args.steps < 1:
            raise SimError(f"--steps must be >= 1, got {args.steps}")
        cfg.train.steps = args.steps
    if args.out:
        cfg.train.out = args.out
    configure(cfg, args.config).require("train")
    allow = [k.strip() for item in args.allow_change or [] for k in item.split(",") if k.strip()]
    if allow and not args.resume:
        raise SimError("--allow-change accepts configuration changes when resuming: pass --resume too")
    if args.ensemble:
        summary = train_ensemble(cfg, args.ensemble, resume=args.resume, allow_change=allow)
        print(f"ensemble of {args.ensemble} members: {summary['checkpoint']}")
        return
    summary = train(cfg, resume=args.resume, allow_change=allow)
    keys = ["steps", "final_loss", "seconds", "checkpoint"] + sorted(k for k in summary if k.startswith("valid_"))
    for k in keys:
        v = summary.get(k)
        print(f"{k}: {v:.6g}" if isinstance(v, float) else f"{k}: {v}")


def _load(args: argparse.Namespace, command: str):
    """(family, model) of the checkpoint argument, after the family says it supports ``command``."""
    from sim.families import load_model_file

    family, model, _ = load_model_file(args.checkpoint)
    family.require(command)
    return family, model


def _check_output(path: str | Path | None, folder: bool = False) -> None:
    """Refuse, before any work, an output path that cannot be written: one of its parents is a
    file (or, for a ``folder`` output, the path itself is)."""
    if path is None:
        return
    path = Path(path)
    if folder and path.exists() and not path.is_dir():
        raise SimError("is a file; the output must be a folder", path)
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise SimError(f"cannot be written: {parent} is a file, not a folder", path)
            return


def _select_entries(store, entry: str | None, path) -> list[str]:
    """``[entry]`` or every entry of an open store, each name checked as the file name it becomes;
    one error for an empty store or an entry it does not hold."""
    from sim.mesh import check_entry_name

    names = store.names()
    if not names:
        raise SimError("the store has no entries", path)
    if entry is not None:
        check_entry_name(entry, path)
        if entry not in names:
            raise SimError(f"no entry {entry!r} in the store (entries: {', '.join(names[:8])}"
                           f"{' ...' if len(names) > 8 else ''})", path)
        return [entry]
    for name in names:
        check_entry_name(name, path)
    return names


def _entries(args: argparse.Namespace, every_entry: bool) -> list[str] | None:
    from sim.mesh import Store

    with Store(args.data) as store:
        names = _select_entries(store, args.entry, args.data)
    return names if every_entry or args.entry is not None else names[:1]


def _blowup_factor(text: str | None) -> dict[str, float]:
    """``--blowup-factor X`` as the keyword of ``Family.evaluate`` (none when not given, so the
    engine's default holds; ``0`` or ``none``: only NaN/inf stop a rollout)."""
    from sim.rollout.engine import check_blowup_factor

    if text is None:
        return {}
    return {"blowup_factor": 0.0 if text.strip().lower() == "none" else check_blowup_factor(text)}


def _evaluate(args: argparse.Namespace, command: str, out: Path | None, every_entry: bool):
    _check_output(out, folder=True)
    _check_output(getattr(args, "json", None))
    blowup = _blowup_factor(args.blowup_factor)
    family, model = _load(args, command)
    plot: bool | Path = getattr(args, "plot", False)
    if command == "eval" and plot:
        _check_output(plot, folder=True)
        if family.name not in ("mesh", "particle"):
            hint = "sim rollout --out DIR --plot draws its predictions" if "rollout" in family.commands else (
                "its models do not roll out")
            raise SimError(f"--plot draws the rollouts of mesh and particle models; this is a {family.name} model "
                           f"({hint})")
        plot = Path(plot)
    if getattr(args, "steps", None) is not None and args.steps < 1:
        raise SimError(f"--steps must be >= 1, got {args.steps}")
    if blowup and "rollout" not in family.commands:
        raise SimError(f"--blowup-factor limits the rollouts of time-stepping models; {family.name} models do not "
                       "roll out")
    if getattr(args, "correction", None) is not None:
        if family.name != "mesh":
            raise SimError(f"--correction applies to the rollouts of mesh models; this is a {family.name} model")
        from sim.families.mesh import set_correction

        set_correction(model, args.correction)
    if getattr(args, "precision", None) is not None:
        if family.name not in ("mesh", "particle"):
            raise SimError(f"--precision applies to the rollouts of mesh and particle models; this is a "
                           f"{family.name} model")
        from sim.families.base import set_precision

        set_precision(model, args.precision)
    ev = family.evaluate(model, Path(args.data), _entries(args, every_entry), getattr(args, "steps", None), out,
                         getattr(args, "format", "pvd"), plot,
                         compile=getattr(args, "compile", False), **blowup)
    print(ev.table())
    if getattr(args, "json", None):
        _write_json(Path(args.json), ev.to_dict())
    return ev


def cmd_rollout(args: argparse.Namespace) -> None:
    out = Path(args.out)
    if args.partitions is not None or args.partition is not None:
        return _partitioned_rollout(args, out)
    ev = _evaluate(args, "rollout", out, every_entry=args.all)
    for p in ev.outputs:
        print(f"wrote {p}")
    for p in sorted(out.glob("*.png")):
        print(f"wrote {p}")
    if args.view:
        series = [Path(p) for p in ev.outputs if Path(p).suffix in (".pvd", ".xdmf")]
        if not series:
            raise SimError("--view: the rollout wrote no series to show")
        if len(series) > 1:
            print(f"showing {series[0].name}; the others: sim view {out}/<entry>{series[0].suffix}")
        _serve(series[0], None, args)


def _partitioned_rollout(args: argparse.Namespace, out: Path) -> None:
    from sim.families.partitioned import partitioned_rollout
    from sim.mesh import Store

    for flag in ("plot", "compile", "view", "all"):
        if getattr(args, flag, False):
            raise SimError(f"--{flag} is not available with --partitions (one entry per partitioned run)")
    if args.format != "pvd":
        raise SimError("partitioned rollouts write a partitioned VTK series (.pvtu per step + .pvd); --format "
                       "xdmf is not available with --partitions")
    if args.blowup_factor is not None:
        raise SimError("--blowup-factor is not available with --partitions")
    if args.precision is not None:
        raise SimError("--precision is not available with --partitions")
    _check_output(out, folder=True)
    _check_output(args.json)
    ranks = args.partitions
    if ranks is None:
        from sim.distributed import read_partition

        ranks = int(read_partition(args.partition).owner.max()) + 1
    with Store(args.data) as s:
        entry = _select_entries(s, args.entry, args.data)[0]
    res = partitioned_rollout(args.checkpoint, args.data, ranks, out=out, entry=entry, steps=args.steps,
                              partition=args.partition, method=args.method, correction=args.correction,
                              threads=getattr(args, "threads", None))
    if res["rank"] != 0:  # a torchrun job: rank 0 reports
        return
    rmse = ", ".join(f"rollout-{k} {v:.4g}" for k, v in res["rmse"].items())
    print(f"{entry}: {res['steps']} steps on {ranks} ranks (halo {res['halo']} hops): RMSE {rmse}")
    for r in res["ranks"]:
        print(f"  rank {r['rank']}: {r['owned']} nodes owned, {r['local']} with the halo, "
              f"{1e3 * r['step_cpu_s']:.1f} CPU-ms per step, peak memory {r['peak_mem_mb']:.0f} MB")
    print(f"wrote {res['series']}")
    if args.json:
        _write_json(Path(args.json), res)


def cmd_partition(args: argparse.Namespace) -> None:
    from sim.distributed import partition_mesh, write_partition
    from sim.distributed.partition import model_halo
    from sim.mesh import Mesh, Store, Trajectory, read

    src, out = Path(args.input), Path(args.out)
    _check_output(out)
    if (args.halo is None) == (args.model is None):
        raise SimError("give the halo depth: --halo K (hops) or --model CHECKPOINT (its receptive field)")
    halo = args.halo
    if args.model is not None:
        from sim.families import load_model_file

        family, model, _ = load_model_file(args.model)
        if family.name != "mesh" or isinstance(model, (list, tuple)):
            raise SimError(f"--model: partitions serve mesh models; this is a {family.name} model", args.model)
        halo = model_halo(model.network)
    obj = read(src)
    if isinstance(obj, Store):
        with obj:
            mesh = obj.entry(_select_entries(obj, args.entry, src)[0]).mesh()
    elif isinstance(obj, Trajectory):
        mesh = obj.mesh
    else:
        assert isinstance(obj, Mesh)
        mesh = obj
    part = partition_mesh(mesh, args.parts, halo, method=args.method, seed=args.seed)
    write_partition(part, out, source=str(src))
    info = part.summary()
    print(f"{src}: {info['nodes']} nodes in {info['parts']} parts ({info['method']}), halo {halo} hops: owned "
          f"{info['owned']}, with halo {info['local']} ({100 * info['halo_fraction']:.1f}% halo overhead)")
    print(f"wrote {out}")


def _serve(path: Path, entry: str | None, args: argparse.Namespace) -> None:
    from sim.view.app import Viewer

    viewer = Viewer(path, entry, local=getattr(args, "local", False), fps=getattr(args, "fps", 8.0))
    try:
        viewer.start(port=args.port, host=args.host, open_browser=getattr(args, "open", False))
    finally:
        viewer.close()


def cmd_view(args: argparse.Namespace) -> None:
    _serve(Path(args.path), args.entry, args)


def cmd_eval(args: argparse.Namespace) -> None:
    ev = _evaluate(args, "eval", None, every_entry=True)
    if args.plot:
        for row in ev.rows:
            for kind in ("error", "probe", "step"):
                png = Path(args.plot) / f"{row['entry']}_{kind}.png"
                if png.exists():
                    print(f"wrote {png}")


def _parse_params(items: list[str]) -> dict[str, float]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        try:
            if not sep or not key:
                raise ValueError
            out[key] = float(value)
        except ValueError:
            raise SimError(f"--param takes NAME=NUMBER, got {item!r}") from None
    return out


def cmd_predict(args: argparse.Namespace) -> None:
    from sim.mesh import Mesh, read, write

    _check_output(args.out)
    family, model = _load(args, "predict")
    surrogate = family.surrogate(model, {}, Path(args.checkpoint))
    mesh = read(args.mesh)
    if not isinstance(mesh, Mesh):
        raise SimError("give one mesh (a static mesh file), not a series or a store", args.mesh)
    try:
        grid = surrogate.predict(mesh, **_parse_params(args.param))
    except SimError as exc:
        raise exc.with_path(args.mesh) if exc.path is None else exc
    result = Mesh.from_pyvista(grid)
    write(result, Path(args.out))
    fields = ", ".join(sorted(result.point_data))
    print(f"wrote {args.out} ({fields})")


def _strategy(text: str) -> str | dict:
    """``--strategy``: a plugin name, or a YAML flow mapping with a ``name`` and its parameters."""
    if not text.lstrip().startswith("{"):
        return text
    import yaml

    try:
        spec = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SimError(f"--strategy {text!r} is not a YAML mapping ({str(exc).splitlines()[0]})") from None
    if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
        raise SimError(f"--strategy {text!r}: a mapping needs a 'name' (e.g. {{name: kecor, objective: pool}})")
    return spec


def _strategy_label(spec: str | dict) -> str:
    if isinstance(spec, str):
        return spec
    return "_".join([spec["name"]] + [f"{k}-{v}" for k, v in spec.items() if k != "name"])


def cmd_active(args: argparse.Namespace) -> None:
    from sim.active import run_active

    strategy = _strategy(args.strategy)
    label = _strategy_label(strategy)
    out = Path(args.out) if args.out else Path("runs") / f"active_{Path(args.recipe).stem}_{label}_s{args.seed}"
    _check_output(out, folder=True)
    result = run_active(args.recipe, args.model, size=args.size, strategy=strategy, budget=args.budget,
                        batch=args.batch, initial=args.initial, pool=args.pool, seed=args.seed, out=out,
                        workers=args.workers, resume=args.resume, test=args.test)
    print(f"{'round':>5} {'solver calls':>12} {'test error':>11}")
    for r in result.rounds:
        print(f"{r['round']:>5} {r['solver_calls']:>12} {r['error']:>11.4g}")
    print(f"wrote {out / 'log.csv'}, {out / 'log.json'}; model {result.model}; simulations {result.train}")


def cmd_families(args: argparse.Namespace) -> None:
    from sim.families import COMMANDS, available_families

    for fam in available_families():
        print(f"{fam.name:<10} {fam.summary}")
        print(f"{'':<10} commands: {', '.join(c for c in COMMANDS if c in fam.commands)}")


def cmd_plugins_list(args: argparse.Namespace) -> None:
    from sim.plugins import KINDS, available_plugins

    kinds = [args.kind] if args.kind else list(KINDS)
    width = max([18] + [len(s.name) for s in available_plugins()])
    for kind in kinds:
        specs = available_plugins(kind)
        print(f"{kind}:" + ("" if specs else " (none installed)"))
        for spec in specs:
            print(f"  {spec.name:<{width}} {spec.summary}")
            print(f"  {'':<{width}} paper: {spec.paper}")


def _diagnose_inputs(args: argparse.Namespace):
    from sim.mesh import Store

    _check_output(getattr(args, "out", None), folder=True)
    _check_output(getattr(args, "json", None))
    family, model = _load(args, "diagnose")
    with Store(args.data) as store:
        entry = _select_entries(store, args.entry, args.data)[0]
    return model, family.diagnose_sample(model, Path(args.data), entry, args.step), entry


def _write_json(path: Path, payload: dict) -> None:
    from sim.mesh.atomic import atomic_path

    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps(payload, indent=2))
    print(f"wrote {path}")


def cmd_diagnose_range(args: argparse.Namespace) -> None:
    from sim.plugins.diagnostics.hop_influence import hop_influence, influence_png

    model, graph, entry = _diagnose_inputs(args)
    res = hop_influence(model, graph, max_hops=args.max_hops, num_seeds=args.seeds, seed=args.seed, mode=args.mode,
                        progress=True)
    out = Path(args.out) if args.out else Path(args.checkpoint).parent
    print("hop  T_h")
    for h, t in enumerate(res.curve):
        print(f"{h:>3}  {t:.4g}")
    print(f"range score R = {res.range_score:.4g}")
    _write_json(out / "range.json", {"checkpoint": str(args.checkpoint), "data": str(args.data), "entry": entry,
                                     "step": args.step, **res.to_dict()})
    influence_png(out / "range.png", {Path(args.checkpoint).parent.name or "model": res},
                  title=f"hop influence, {entry} step {args.step}")
    print(f"wrote {out / 'range.png'}")


def cmd_diagnose_lipschitz(args: argparse.Namespace) -> None:
    from sim.plugins.diagnostics.lipschitz import mesh_lipschitz

    model, graph, entry = _diagnose_inputs(args)
    res = mesh_lipschitz(model, graph, eps=args.eps, nodes=args.nodes, seed=args.seed, method=args.method,
                         samples=args.samples, map=args.map, progress=True)
    print(f"local l_inf Lipschitz constant of the one-{'step' if args.map == 'step' else 'update'} map "
          f"(box: {args.eps:g} x training std, {len(res.extra['nodes'])} output nodes)")
    print(f"  upper bound ({res.method}): {res.upper:.6g}")
    print(f"  sampled lower bound:  {res.lower:.6g}")
    if res.unstable_relu_fraction == res.unstable_relu_fraction:  # not counted by the centred form
        print(f"  unstable ReLUs: {100 * res.unstable_relu_fraction:.1f} %")
    if args.json:
        _write_json(Path(args.json), {"checkpoint": str(args.checkpoint), "data": str(args.data), "entry": entry,
                                      "step": args.step, **res.to_dict()})


def cmd_diagnose_harmful(args: argparse.Namespace) -> None:
    from sim.families import load_model_file
    from sim.plugins.diagnostics.harmful import harmful_samples

    _check_output(args.json)
    family, model, payload = load_model_file(args.checkpoint)
    family.require("diagnose")
    if isinstance(model, list):
        raise family.refuse("diagnose", "diagnose one member checkpoint of the ensemble")
    valid = args.valid or ((payload.get("train") or {}).get("config") or {}).get("data", {}).get("valid")
    if not valid:
        raise SimError("the checkpoint's training had no validation store: give --valid VALID.h5", args.checkpoint)
    for path in (args.data, valid):
        if not Path(path).is_file():
            raise SimError("no such store", path)
    res = harmful_samples(model, args.data, valid, samples_per_entry=args.samples_per_entry,
                          valid_entries=args.valid_entries, valid_steps=args.valid_steps, lr=args.lr, seed=args.seed,
                          progress=True)
    ranking = res.ranking()
    print(f"validation rollout error (mean squared, {args.valid_steps} steps, {res.extra['valid_entries']} "
          f"trajectories of {valid}): {res.valid_error:.6g}")
    print("estimated change if removed (negative: removing it lowers the validation error)")
    for name, score in ranking[: args.top]:
        print(f"  {name}  {score:+.4g}")
    if len(ranking) > args.top:
        print(f"  ... {len(ranking) - args.top} more (--top N, or --json for all)")
    if args.json:
        _write_json(Path(args.json), {"checkpoint": str(args.checkpoint), "train": str(args.data), "valid": str(valid),
                                      **res.to_dict()})


def cmd_prune(args: argparse.Namespace) -> None:
    import torch

    from sim.families import load_model_file
    from sim.plugins.diagnostics.harmful import valid_rollout_error, validation_starts
    from sim.plugins.pruning import prune_model, step_cpu_seconds
    from sim.train.checkpoint import save_checkpoint

    out = Path(args.out)
    _check_output(out)
    if out.suffix != ".pt":
        raise SimError("the pruned model is a checkpoint: give OUT.pt", out)
    if not 0.0 < args.sparsity < 1.0:
        raise UsageError(f"--sparsity must be in (0, 1), got {args.sparsity:g}")
    family, model, payload = load_model_file(args.checkpoint)
    if family.name != "mesh" or isinstance(model, list):
        raise SimError(f"`sim prune` prunes mesh time-stepping MeshGraphNet checkpoints, not {family.name} models",
                       args.checkpoint)
    dataset = model.step_dataset(args.data)
    valid = args.valid or ((payload.get("train") or {}).get("config") or {}).get("data", {}).get("valid")
    vsamples = validation_starts(model, valid, args.valid_steps, 4) if valid else []
    probe = dataset[0]

    def error(m) -> float | None:
        if not vsamples:
            return None
        with torch.no_grad():
            return float(valid_rollout_error(m, vsamples, args.valid_steps))

    before_s, before_err = step_cpu_seconds(model, probe), error(model)
    res = prune_model(model, dataset, args.sparsity, method=args.method, meta_steps=args.meta_steps,
                      finetune_steps=args.finetune_steps, lr=args.lr, refit_samples=args.refit_samples,
                      seed=args.seed, progress=True)
    after_s, after_err = step_cpu_seconds(res.model, probe), error(res.model)
    report = {**res.to_dict(), "cpu_s_per_step_before": before_s, "cpu_s_per_step_after": after_s,
              "speedup": before_s / after_s, "valid_error_before": before_err, "valid_error_after": after_err,
              "valid": str(valid) if valid else None, "valid_steps": args.valid_steps, "source": str(args.checkpoint)}
    save_checkpoint(out, res.model, {**(payload.get("train") or {}), "pruned": report})
    print(f"hidden width {res.hidden_before} -> {res.hidden_after}, parameters {res.params_before:,} -> "
          f"{res.params_after:,} ({args.method}, {res.seconds:.0f} CPU-s)")
    print(f"one step: {1e3 * before_s:.2f} -> {1e3 * after_s:.2f} ms CPU ({before_s / after_s:.2f}x) on "
          f"{int(probe.num_nodes)} nodes")
    if vsamples:
        print(f"validation rollout error ({args.valid_steps} steps, mean squared): {before_err:.4g} -> {after_err:.4g}")
    else:
        print("no validation store (--valid): error not measured")
    print(f"wrote {out}")


def cmd_export(args: argparse.Namespace) -> None:
    from sim.export import export

    result = export(args.checkpoint, args.out)
    print(f"wrote {result.path} (one step of the {result.network} {result.family} model; any node and edge count)")
    print(f"wrote {result.card} (model card: the inputs, their shapes, units and how to build them)")
    sizes = " and ".join(str(next(iter(c["sizes"].values()))) for c in result.checks)
    print(f"checked on graphs of {sizes} nodes: largest relative difference to the model {result.max_difference:.2g}")


def cmd_demo(args: argparse.Namespace) -> None:
    from sim.demo import run_demo
    from sim.threads import set_threads

    if getattr(args, "threads", None) is None:
        # the demo's meshes (~2k nodes) gain nothing from a second thread, and on a loaded machine a
        # thread pool waits for busy cores: one thread trains the most steps per CPU second
        set_threads(1)
    run_demo(Path(args.out), quick=args.quick, train_seconds=args.train_seconds, workers=args.workers)


def _view_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--port", type=PORT, default=8080, help="viewer port (default 8080; 0: any free port)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address the viewer listens on (default 127.0.0.1, this machine only; another address "
                        "lets others see the data, with a warning)")


def _add_threads(sub: argparse._SubParsersAction) -> None:
    """``--threads`` after any (sub)command too, without overriding one given before it."""
    for parser in set(sub.choices.values()):
        actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if actions:
            _add_threads(actions[0])
        elif "--threads" not in parser._option_string_actions:
            parser.add_argument("--threads", type=POSITIVE_INT, default=argparse.SUPPRESS,
                                help="CPU threads of torch and BLAS (default: the CPUs this process may use)")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="sim", description="Learned surrogates of physics simulations.")
    from sim._version import __version__

    p.add_argument("--version", action="version", version=f"sim {__version__}")
    p.add_argument("--threads", type=POSITIVE_INT, default=None,
                   help="CPU threads of torch and BLAS (default: OMP_NUM_THREADS, else the CPUs this process may use)")
    sub = p.add_subparsers(dest="command", required=True)

    c = sub.add_parser("convert", help="convert between the sim store, VTU/PVD, XDMF and meshio formats")
    c.add_argument("input")
    c.add_argument("output", help="format from the extension: .h5 (store), .pvd, .xdmf, .vtu, .msh, .vtk, ...")
    c.add_argument("--entry", help="store entry to convert (default: the only one)")
    c.add_argument("--all", action="store_true", help="one output file per store entry (OUTPUT_<entry>.ext)")
    c.add_argument("--node-types", action="append", metavar="GROUP=TYPE[,GROUP=TYPE...]",
                   help="set node types from named groups (gmsh physical groups, meshio sets, multi-block names, "
                        "or ARRAY=VALUE of an integer tag array), e.g. inlet=inflow,outlet=outflow,walls=wall; "
                        "types: interior, obstacle, airfoil, handle, inflow, outflow, wall, fixed; other nodes are "
                        "interior, and a node in several groups takes the last one's type")
    c.add_argument("--from", dest="source_format", choices=["deepmind", "lagrangebench", "plaid"],
                   help="read INPUT as another project's dataset (default: found from the file): a DeepMind "
                        "MeshGraphNets <split>.tfrecord with meta.json, a LagrangeBench <split>.h5 with "
                        "metadata.json, or a PLAID dataset folder; OUTPUT is then a store (.h5)")
    c.add_argument("--to", dest="target_format", choices=["plaid"],
                   help="write the steady samples of the store INPUT as a PLAID dataset in the folder OUTPUT "
                        "(default for an OUTPUT named NAME.plaid)")
    c.set_defaults(func=cmd_convert)

    d = sub.add_parser("data", help="dataset commands")
    dsub = d.add_subparsers(dest="data_command", required=True)
    i = dsub.add_parser("info", help="what is inside a store, series or mesh file")
    i.add_argument("file")
    i.add_argument("--json", action="store_true", help="machine-readable summary (stores)")
    i.add_argument("--all", action="store_true", help="list every entry of a large store")
    i.set_defaults(func=cmd_info)

    g = dsub.add_parser("generate", help="generate a dataset from a recipe (cylinder_flow, ... or a YAML file)")
    g.add_argument("recipe", help="a recipe that ships with sim, by name (cylinder_flow, elasticity_shapes, "
                                  "diffusion3d, mpm_water_2d, ode_systems, ...), or a recipe file")
    g.add_argument("--size", default="small", help="recipe size: small (CI), medium, large")
    g.add_argument("--out", help="output folder (default: ./datasets/<name>/<size>/ for a recipe by name, "
                                 "<name>/<size>/ beside a recipe file)")
    g.add_argument("--workers", type=POSITIVE_INT, default=1, help="generator processes (default 1)")
    g.add_argument("--shard", help="i/n: generate only entries with index %% n == i (merge with `sim data merge`)")
    g.set_defaults(func=cmd_generate)
    mg = dsub.add_parser("merge", help="join the shard files of a generated dataset")
    mg.add_argument("directory")
    mg.add_argument("--recipe", help="recipe, to compute its dataset statistics after merging")
    mg.set_defaults(func=cmd_merge)

    t = sub.add_parser("train", help="train (or fit) a model of any family from a YAML configuration")
    t.add_argument("config")
    t.add_argument("--resume", action="store_true", help="continue from train.out/checkpoint.pt")
    t.add_argument("--allow-change", action="append", metavar="KEY[,KEY]",
                   help="with --resume: accept these configuration keys differing from the checkpoint's (e.g. "
                        "optim.lr); train.steps, train.max_seconds, train.out, the log/valid/checkpoint frequencies, "
                        "train.tensorboard and data.num_workers may always change")
    t.add_argument("--steps", type=POSITIVE_INT, help="override train.steps")
    t.add_argument("--out", help="override train.out")
    t.add_argument("--ensemble", type=POSITIVE_INT, metavar="N",
                   help="train N members with seeds seed..seed+N-1 and write train.out/ensemble.json")
    t.set_defaults(func=cmd_train)

    r = sub.add_parser("rollout", help="roll a trained model over a store's trajectories and write series")
    r.add_argument("checkpoint")
    r.add_argument("data", help="store with the trajectories to start from (and compare with)")
    r.add_argument("--out", required=True, help="output folder")
    r.add_argument("--format", choices=["pvd", "xdmf"], default="pvd")
    r.add_argument("--steps", type=POSITIVE_INT, help="steps to predict (default: the trajectory's length)")
    r.add_argument("--entry", help="entry to roll out (default: the first)")
    r.add_argument("--all", action="store_true", help="roll out every entry")
    r.add_argument("--plot", action="store_true", help="write PNGs: error vs step, prediction/truth/error")
    r.add_argument("--json", help="write the metrics as JSON")
    r.add_argument("--compile", action="store_true", help="torch.compile the one-step map (long rollouts)")
    correction_help = ("mesh models: what to enforce after each step instead of the model's own setting: none, "
                       "or divergence_free (project the velocity update of an incompressible flow)")
    blowup_help = ("stop a rollout as diverged beyond X times the data's largest magnitude (default 10; 0 or none: "
                   "only on NaN/inf)")
    r.add_argument("--blowup-factor", metavar="X", help=blowup_help)
    r.add_argument("--correction", metavar="NAME", help=correction_help)
    precision_help = ("mesh and particle models: bf16 runs the network's matrix products in bfloat16 (faster on "
                      "CPUs with bfloat16 instructions and on GPUs; check the error with sim eval --precision "
                      "bf16); default fp32")
    r.add_argument("--precision", choices=["fp32", "bf16"], help=precision_help)
    r.add_argument("--view", action="store_true", help="then open the viewer on the series written (as sim view)")
    r.add_argument("--partitions", type=POSITIVE_INT, metavar="N",
                   help="split the mesh over N ranks (local processes, or the ranks of the torchrun job this runs "
                        "in) with halos as deep as the model's receptive field; writes a .pvtu per step + .pvd")
    r.add_argument("--partition", metavar="P.h5", help="use this partition (from sim partition) for --partitions")
    r.add_argument("--method", choices=["auto", "metis", "geometric"], default="auto",
                   help="how --partitions splits the mesh without --partition (default auto: METIS when pymetis "
                        "is installed, else coordinate bisection)")
    _view_options(r)
    r.set_defaults(func=cmd_rollout)

    z = sub.add_parser("zoo", help="the pretrained models shipped with sim (zoo:<name> as a checkpoint)")
    z.add_argument("action", choices=["list", "show"], nargs="?", default="list")
    z.add_argument("name", nargs="?", help="the model (show)")
    z.add_argument("--json", action="store_true", help="list as JSON")
    z.set_defaults(func=cmd_zoo)

    pa = sub.add_parser("partition", help="split a mesh over ranks, with halos, for partitioned rollouts")
    pa.add_argument("input", help="a mesh file, series or store (its --entry, default the first)")
    pa.add_argument("--parts", type=POSITIVE_INT, required=True, help="number of parts (ranks)")
    pa.add_argument("--halo", type=POSITIVE_INT, help="halo depth in hops")
    pa.add_argument("--model", metavar="CHECKPOINT", help="use the halo depth this mesh model needs")
    pa.add_argument("--method", choices=["auto", "metis", "geometric"], default="auto",
                    help="METIS (pymetis) or recursive coordinate bisection (default auto: METIS when installed)")
    pa.add_argument("--seed", type=int, default=0, help="METIS seed")
    pa.add_argument("--entry", help="store entry whose mesh to split (default: the first)")
    pa.add_argument("--out", required=True, help="the partition file to write (.h5)")
    pa.set_defaults(func=cmd_partition)

    v = sub.add_parser("view", help="inspect a series, store entry or mesh in the browser (no display needed)")
    v.add_argument("path", help="a series (.pvd, .series, .xdmf), a store (.h5) or any mesh file sim reads")
    v.add_argument("--entry", help="the store entry to show (default: the store's only entry)")
    _view_options(v)
    v.add_argument("--local", action="store_true",
                   help="render in the browser (vtk.js: the mesh is sent to it) instead of on this machine")
    v.add_argument("--fps", type=POSITIVE_FLOAT, default=8.0, help="frames per second when playing (default 8)")
    v.add_argument("--open", action="store_true", help="open a browser on this machine too")
    v.set_defaults(func=cmd_view)

    e = sub.add_parser("eval", help="rollout metrics of a trained model on every trajectory of a store")
    e.add_argument("checkpoint")
    e.add_argument("data")
    e.add_argument("--steps", type=POSITIVE_INT)
    e.add_argument("--entry")
    e.add_argument("--json", help="write the metrics as JSON")
    e.add_argument("--plot", metavar="DIR",
                   help="write PNGs per entry to DIR: error vs step; for flows past an obstacle the transverse "
                        "velocity behind it, predicted and true, with its spectrum; one step's prediction/truth/error")
    e.add_argument("--blowup-factor", metavar="X", help=blowup_help)
    e.add_argument("--correction", metavar="NAME", help=correction_help)
    e.add_argument("--precision", choices=["fp32", "bf16"], help=precision_help)
    e.set_defaults(func=cmd_eval)

    pr = sub.add_parser("predict", help="fields of a steady model (graph network, MMGP) on a mesh file")
    pr.add_argument("checkpoint")
    pr.add_argument("mesh", help="mesh file (.vtu, .msh, ... any format sim reads)")
    pr.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                    help="an input scalar of the model (repeat for each), e.g. --param E=100")
    pr.add_argument("--out", required=True, help="output mesh file with the fields (and <field>_std)")
    pr.set_defaults(func=cmd_predict)

    al = sub.add_parser("active", help="active learning: the surrogate picks which simulations the solver runs, "
                                       "until a budget of solver calls is spent (resumable)")
    al.add_argument("recipe", help="a recipe by name (elasticity_shapes, cylinder_flow) or file, whose generator can "
                                   "draw a sample without solving it")
    al.add_argument("--model", required=True, metavar="CONFIG.yaml",
                    help="the surrogate's configuration (a `model` section as for `sim train`, e.g. "
                         "model.family: mmgp; for mesh models also the optim and train sections it fits with)")
    al.add_argument("--budget", type=POSITIVE_INT, required=True, help="solver calls in all, the initial ones included")
    al.add_argument("--batch", type=POSITIVE_INT, required=True, help="solver calls per round")
    al.add_argument("--strategy", required=True,
                    help="a selection plugin: kecor, random, variance (`sim plugins list --kind selection`), or "
                         "one with parameters as a YAML mapping: '{name: kecor, objective: pool}'")
    al.add_argument("--initial", type=POSITIVE_INT, default=4, help="simulations before the first fit (default 4)")
    al.add_argument("--pool", type=POSITIVE_INT, default=200,
                    help="candidates drawn (meshed, not solved) to choose from (default 200)")
    al.add_argument("--size", default="small", help="recipe size: its parameters and test split (default small)")
    al.add_argument("--seed", type=int, default=0, help="the pool, the initial draws and the strategy's draws")
    al.add_argument("--out", help="the run's folder (default runs/active_<recipe>_<strategy>_s<seed>)")
    al.add_argument("--workers", type=POSITIVE_INT, default=1, help="solver processes (default 1)")
    al.add_argument("--test", metavar="STORE", help="test store (default OUT/test.h5, the recipe's test split, "
                                                   "generated once)")
    al.add_argument("--resume", action="store_true", help="continue the run in --out (the budget may grow)")
    al.set_defaults(func=cmd_active)

    fa = sub.add_parser("families", help="the model families (model.family of a config) and their commands")
    fa.set_defaults(func=cmd_families)

    pl = sub.add_parser("plugins", help="graph-learning plugins (layers, init, diagnostics, ...)")
    plsub = pl.add_subparsers(dest="plugins_command", required=True)
    pll = plsub.add_parser("list", help="installed plugins: name, kind, paper, summary")
    pll.add_argument("--kind", choices=["layer", "feature", "conditioning", "init", "diagnostic", "pruning",
                                        "selection", "generator"])
    pll.set_defaults(func=cmd_plugins_list)

    dg = sub.add_parser("diagnose", help="diagnostics of a trained model on data")
    dgsub = dg.add_subparsers(dest="diagnose_command", required=True)
    for name, func, text in (("range", cmd_diagnose_range, "hop-influence curve T_h and range score R"),
                             ("lipschitz", cmd_diagnose_lipschitz, "local Lipschitz bounds of the one-step map")):
        q = dgsub.add_parser(name, help=text)
        q.add_argument("checkpoint")
        q.add_argument("data", help="store with the trajectory to evaluate on")
        q.add_argument("--entry", help="store entry (default: the first)")
        q.add_argument("--step", type=NON_NEGATIVE_INT, default=0, help="time step of the input state (default 0)")
        q.add_argument("--seed", type=int, default=0, help="seed of the node sampling")
        q.set_defaults(func=func)
        if name == "range":
            q.add_argument("--max-hops", type=POSITIVE_INT, default=20, help="largest hop distance (default 20)")
            q.add_argument("--seeds", type=POSITIVE_INT, default=32, help="seed nodes sampled (default 32)")
            q.add_argument("--mode", choices=["auto", "subgraph", "full"], default="auto",
                           help="k-hop subgraphs (torch_geometric), the whole graph, or auto: subgraphs when the "
                                "model's receptive field is within --max-hops (then they are exact)")
            q.add_argument("--out", help="folder for range.json and range.png (default: the checkpoint's)")
        else:
            q.add_argument("--eps", type=POSITIVE_FLOAT, default=1e-3,
                           help="box radius in training standard deviations of each state feature (default 1e-3)")
            q.add_argument("--nodes", type=POSITIVE_INT, default=8, help="output nodes sampled (default 8)")
            q.add_argument("--samples", type=POSITIVE_INT, default=16, help="sampled points for the lower bound")
            q.add_argument("--method", choices=["crown", "centred", "ibp"], default="crown",
                           help="crown: backward Jacobian pass (default); centred: forward-mode centred form, "
                                "tighter for smooth activations, costlier on large receptive fields")
            q.add_argument("--map", choices=["step", "update"], default="step",
                           help="next state (what a rollout iterates) or the update alone")
            q.add_argument("--json", help="write the bounds as JSON")
    q = dgsub.add_parser("harmful", help="training trajectories ranked by their estimated effect on the validation "
                                         "rollout error (SGD-influence)")
    q.add_argument("checkpoint")
    q.add_argument("data", help="the training store to rank")
    q.add_argument("--valid", help="validation store (default: the one the checkpoint was trained with)")
    q.add_argument("--samples-per-entry", type=POSITIVE_INT, default=8,
                   help="one-step samples replayed per training trajectory (default 8)")
    q.add_argument("--valid-entries", type=POSITIVE_INT, default=4, help="validation trajectories (default 4)")
    q.add_argument("--valid-steps", type=POSITIVE_INT, default=10, help="validation rollout steps (default 10)")
    q.add_argument("--lr", type=POSITIVE_FLOAT, default=1e-3, help="learning rate of the replayed SGD (default 1e-3)")
    q.add_argument("--seed", type=int, default=0, help="seed of the sample choice")
    q.add_argument("--top", type=POSITIVE_INT, default=10, help="trajectories printed (default 10)")
    q.add_argument("--json", help="write the whole ranking and per-sample scores as JSON")
    q.set_defaults(func=cmd_diagnose_harmful)

    pr = sub.add_parser("prune", help="a smaller, faster MeshGraphNet: channels chosen by a graph metanetwork, "
                                      "pruned, fine-tuned")
    pr.add_argument("checkpoint")
    pr.add_argument("data", help="the training store (for the metanetwork and the fine-tuning)")
    pr.add_argument("--out", required=True, help="the pruned checkpoint (OUT.pt)")
    pr.add_argument("--sparsity", type=POSITIVE_FLOAT, default=0.5,
                    help="fraction of every hidden layer's channels removed (default 0.5)")
    pr.add_argument("--method", choices=["meta", "magnitude"], default="meta",
                    help="meta: the metanetwork's gates (default); magnitude: weight norms (the baseline)")
    pr.add_argument("--meta-steps", type=NON_NEGATIVE_INT, default=50, help="metanetwork training steps")
    pr.add_argument("--finetune-steps", type=NON_NEGATIVE_INT, default=300, help="fine-tuning steps after pruning")
    pr.add_argument("--lr", type=POSITIVE_FLOAT, default=1e-4, help="fine-tuning learning rate (default 1e-4)")
    pr.add_argument("--refit-samples", type=NON_NEGATIVE_INT, default=16,
                    help="training samples the pruned layers' outgoing weights are refitted to (0: no refit)")
    pr.add_argument("--valid", help="validation store for the error before and after (default: the checkpoint's)")
    pr.add_argument("--valid-steps", type=POSITIVE_INT, default=10, help="validation rollout steps (default 10)")
    pr.add_argument("--seed", type=int, default=0)
    pr.set_defaults(func=cmd_prune)

    x = sub.add_parser("export", help="the one-step map of a mesh or particle model as ONNX or torch.export, "
                                      "with a model card")
    x.add_argument("checkpoint")
    x.add_argument("out", help="OUT.onnx (ONNX; needs the 'export' extra) or OUT.pt2 (torch.export); the model card "
                               "is written to OUT.json beside it (e.g. model.onnx.json)")
    x.set_defaults(func=cmd_export)

    m = sub.add_parser("demo", help="generate cylinder-flow data, train MeshGraphNet, roll it out for ParaView")
    m.add_argument("--out", default="demo_output", help="output folder (default: demo_output)")
    m.add_argument("--train-seconds", type=POSITIVE_FLOAT, default=180.0,
                   help="training budget in CPU seconds of this process (default 180)")
    m.add_argument("--workers", type=POSITIVE_INT, default=2, help="data generation processes")
    m.add_argument("--quick", action="store_true", help="tiny data and a few training steps (a smoke test)")
    m.set_defaults(func=cmd_demo)
    _add_threads(sub)
    return p


def _resolve_zoo(args: argparse.Namespace) -> None:
    """Model arguments given as ``zoo:<name>`` become the zoo's file (an error names the zoo's
    models when there is no such entry)."""
    from sim.zoo import is_zoo, resolve

    for key in ("checkpoint", "model"):
        value = getattr(args, key, None)
        if is_zoo(value):
            setattr(args, key, str(resolve(value)))


def cmd_zoo(args: argparse.Namespace) -> None:
    from sim.zoo import entries, entry

    if args.action == "show":
        if not args.name:
            raise SimError("sim zoo show NAME: name the model (sim zoo list shows them)")
        e = entry(args.name)
        print(e.card.read_text() if e.card.exists() else f"{e.name}: no model card")
        print(f"file: {e.file}")
        return
    rows = [e.row() for e in entries()]
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    if not rows:
        print("the zoo is empty")
        return
    wn = max(4, *(len(r["name"]) for r in rows))
    wr = max(24, *(len(r["recipe"]) for r in rows))
    print(f"{'name':<{wn}} {'family':<9} {'recipe (size, data seed)':<{wr}} {'CPU-h':>6} {'MB':>5}  metrics")
    for r in rows:
        metrics = ", ".join(f"{k} {v:.3g}" if isinstance(v, (int, float)) else f"{k} {v}"
                            for k, v in r["metrics"].items())
        print(f"{r['name']:<{wn}} {r['family']:<9} {r['recipe']:<{wr}} {r['train_cpu_hours']:>6.2f} "
              f"{r['size_mb']:>5.1f}  {metrics}")
    print("load one with sim.load('zoo:<name>') or pass zoo:<name> as the checkpoint of any command; "
          "sim zoo show <name> prints its model card")


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        from sim.threads import set_threads

        set_threads(args.threads)  # before torch loads: its default oversubscribes shared or limited CPUs
        _resolve_zoo(args)
        args.func(args)
    except SimError as exc:
        print(f"sim: error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("sim: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `sim data info big.h5 | head`: the reader left, which is fine
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as exc:  # the system refused a read or write (full disk, permissions, a file as folder)
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"sim: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    return 0


if __name__ == "__main__":
    sys.exit(main())
