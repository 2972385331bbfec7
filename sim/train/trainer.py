"""The one trainer of every trainable model family, single process or ``torchrun`` DDP.

The family (:class:`Task`: ``sim.families`` looks it up from ``model.family``) supplies the
dataset, the model, the collate function, the loss and the validation; the trainer owns the
rest, the same for all: optimiser and learning-rate schedule, deterministic batches,
gradient clipping, CPU or wall-time budgets, the CSV and TensorBoard logs, checkpoints and
resume, DDP. A family that is fitted rather than trained (MMGP) implements ``fit`` instead.

Determinism: the batch at step ``s`` and the noise drawn for it depend only on
(seed, s), so an interrupted run resumed from its checkpoint ends with exactly the
weights of an uninterrupted run (on a deterministic CPU run), whatever the number of
DataLoader workers. Under DDP the global batch at step ``s`` is the same as a single
process with ``batch_size * world_size``; rank r takes every world_size-th sample of it.
With ``train.augment_coreset`` (:mod:`sim.plugins.training.coreset`) the checkpoint also holds the
current coreset, and its selection draws no random numbers, so that holds too; with
``train.self_tuning`` (:mod:`sim.plugins.training.self_tuning`) it holds the tuned hyperparameters, their
responses and optimiser, whose perturbations and tuning batches depend on (seed, step) alone.

Resume continues the run in ``train.out`` from its checkpoint at step k: with the same
configuration (the checkpoint holds it; :data:`RESUMABLE` lists the keys that may change, and
``allow_change`` accepts others on purpose), and with ``metrics.csv`` cut back to step k
before the resumed run appends, so no step is logged twice.

A loss that turns NaN/inf stops the run with its cause: when the samples of that batch hold
NaN/inf, the error names the training file, the entry and the field (no learning rate fixes
broken data); only when they are finite does it say the model diverged. The samples are
checked then rather than the stores up front: that costs nothing until the loss breaks and
looks only at what the model reads, where a scan would read every store in full at each
start (and each probe of :func:`steps_for_budget`) and refuse fields no model uses.
"""

from __future__ import annotations

import csv
import math
import os
import random
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from sim.errors import SimError
from sim.mesh.atomic import atomic_path
from sim.train.checkpoint import read_checkpoint, save_checkpoint, save_ensemble
from sim.train.config import Config, ConfigError, augment_coreset_options, self_tuning_options

# Configuration keys a resumed run may change without --allow-change: how long it runs, where
# it writes, how often it logs, validates and checkpoints, how it loads batches (the batches do
# not depend on it). None changes what a step computes; a longer train.steps stretches the
# learning-rate schedule over the longer run, which is what continuing for longer means.
RESUMABLE = ("train.steps", "train.max_seconds", "train.out", "train.log_every", "train.checkpoint_every",
             "train.valid_every", "train.tensorboard", "train.partitions", "data.num_workers")


class StepBatchSampler(torch.utils.data.Sampler[list[int]]):
    """Batches for steps ``start, start + 1, ...``: a fresh permutation of the dataset per epoch,
    seeded by (seed, epoch); this rank's share of each global batch."""

    def __init__(self, size: int, batch_size: int, seed: int, start_step: int, steps: int,
                 rank: int = 0, world: int = 1):
        self.size, self.batch_size, self.seed = size, batch_size, seed
        self.start, self.steps, self.rank, self.world = start_step, steps, rank, world
        self._perms: dict[int, np.ndarray] = {}

    def _perm(self, epoch: int) -> np.ndarray:
        if epoch not in self._perms:  # a batch spans at most two epochs: keep the latest two
            self._perms = {e: p for e, p in self._perms.items() if e >= epoch - 1}
            self._perms[epoch] = np.random.default_rng([self.seed, epoch]).permutation(self.size)
        return self._perms[epoch]

    def global_batch(self, step: int) -> list[int]:
        g = self.batch_size * self.world
        first = step * g
        out = []
        for pos in range(first, first + g):
            epoch, i = divmod(pos, self.size)
            out.append(int(self._perm(epoch)[i]))
        return out

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        for step in range(self.start, self.steps):
            yield [(step, i) for i in self.global_batch(step)[self.rank::self.world]]

    def __len__(self) -> int:
        return max(0, self.steps - self.start)


class Task(Protocol):
    """What the trainer asks of a model family."""

    trainable: bool

    def build_dataset(self, cfg: Config) -> Any: ...

    def build_model(self, cfg: Config, dataset: Any) -> nn.Module: ...

    def collator(self, cfg: Config, dataset: Any, model: nn.Module) -> Callable[[list[Any], int], Any]: ...

    def loss(self, model: nn.Module, batch: Any, generator: torch.Generator, cfg: Config
             ) -> tuple[torch.Tensor, dict[str, float]]: ...

    def validate(self, model: nn.Module, cfg: Config, device: torch.device) -> dict[str, float]: ...

    def tuning_dataset(self, cfg: Config, path: Any) -> Any: ...

    def tuning_loss(self, model: nn.Module, batch: Any, cfg: Config) -> torch.Tensor: ...

    def fit(self, cfg: Config, progress: bool | None = None) -> dict[str, Any]: ...


class _LossModule(nn.Module):
    """Puts the loss in ``forward`` so DDP sees it (DDP synchronises gradients of forward calls)."""

    def __init__(self, model: nn.Module, task: Task, cfg: Config):
        super().__init__()
        self.model, self.task, self.cfg = model, task, cfg

    def forward(self, batch: Any, generator: torch.Generator) -> tuple[torch.Tensor, dict[str, float]]:
        return self.task.loss(self.model, batch, generator, self.cfg)


class _PartitionedLoss(nn.Module):
    """The loss of this rank's part of every training graph (:mod:`sim.distributed.training`),
    scaled by the number of parts so DDP's mean over all ranks is the mean over sample groups of
    each group's summed parts."""

    def __init__(self, model: nn.Module, task: Task, cfg: Config, partitioner: Any):
        super().__init__()
        self.model, self.task, self.cfg, self.partitioner = model, task, cfg, partitioner

    def forward(self, batch: Any, generator: torch.Generator) -> tuple[torch.Tensor, dict[str, float]]:
        local, ctx = self.partitioner.split(batch, self.model.predicted_mask)
        self.model.halo = ctx
        try:
            loss, part = self.task.loss(self.model, local, generator, self.cfg)
        finally:
            self.model.halo = None
        return loss * self.partitioner.parts, part


def _partition_groups(world: int, rank: int, parts: int, simulator: nn.Module) -> tuple[int, int, Any]:
    """(sample group of this rank, number of groups, the partitioner of its part)."""
    from sim.distributed.partition import model_halo
    from sim.distributed.training import GraphPartitioner

    if getattr(simulator, "halo", False) is False:
        raise ConfigError("train.partitions splits the graphs of mesh models (MeshGraphNet, the graph transformer); "
                          f"this family's model ({type(simulator).__name__}) cannot be partitioned")
    if world % parts:
        raise ConfigError(f"train.partitions = {parts} does not divide the {world} ranks (torchrun --nproc-per-node "
                          "x nodes)")
    groups = world // parts
    mine = None
    for g in range(groups):  # every rank creates every group, in the same order
        group = torch.distributed.new_group(list(range(g * parts, (g + 1) * parts)))
        if g == rank // parts:
            mine = group
    return rank // parts, groups, GraphPartitioner(parts, rank % parts, model_halo(simulator.network), mine)


class _StepSamples(torch.utils.data.Dataset):
    """The dataset's samples with the training step they are drawn for, so a collate function
    can seed its noise by (seed, step) in any DataLoader worker."""

    def __init__(self, dataset: Any, collate: Callable[[list[Any], int], Any]):
        self.dataset, self.collate_fn = dataset, collate

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]) -> tuple[int, Any]:
        step, i = key
        return step, self.dataset[i]

    def collate(self, items: list[tuple[int, Any]]) -> Any:
        return self.collate_fn([x for _, x in items], items[0][0])


def budget_clock(cfg: Config) -> Any:
    """The clock of ``train.max_seconds`` and the logged seconds: wall time, or this process's CPU
    time (``clock: process``), which stays a fair budget when other jobs share the machine."""
    return time.process_time if cfg.train.clock == "process" else time.perf_counter


def lr_factor(step: int, cfg: Config) -> float:
    o, total = cfg.optim, cfg.train.steps
    if o.warmup_steps and step < o.warmup_steps:
        return (step + 1) / o.warmup_steps
    ratio = o.lr_final / o.lr
    frac = min(1.0, (step - o.warmup_steps) / max(1, total - o.warmup_steps))
    if o.schedule == "exponential":
        return ratio**frac
    if o.schedule == "cosine":
        return ratio + (1 - ratio) * 0.5 * (1 + math.cos(math.pi * frac))
    if o.schedule == "inverse_sqrt":  # after the warmup: lr * sqrt(warmup / step) (transformers, PROSE)
        return math.sqrt(max(1, o.warmup_steps) / (step + 1))
    return 1.0


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    return {"torch": torch.get_rng_state(), "python": list(random.getstate()[1]),
            "numpy": torch.from_numpy(np_state[1].astype(np.int64)), "numpy_pos": int(np_state[2])}


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate((3, tuple(state["python"]), None))
    np.random.set_state(("MT19937", state["numpy"].numpy().astype(np.uint32), state["numpy_pos"]))


def _tensorboard(out: Path) -> Any:
    """A TensorBoard writer into ``out/tensorboard`` when the ``tensorboard`` package is installed
    (optional: ``pip install tensorboard``); None otherwise, and the CSV log stays the record."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(log_dir=str(out / "tensorboard"))


def _flat(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"train": {"steps": 5}}`` -> ``{"train.steps": 5}`` (nested mappings such as
    ``model.family_args`` too, so a change names the innermost key)."""
    out: dict[str, Any] = {}
    for k, v in tree.items():
        if isinstance(v, Mapping):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


_UNSET = object()


def _covers(key: str, changed: str) -> bool:
    return changed == key or changed.startswith(key + ".")


def config_changes(stored: Mapping[str, Any], cfg: Config) -> dict[str, tuple[Any, Any]]:
    """Key -> (value in the checkpoint, value now) for every key that differs. A key the
    checkpoint lacks (written before the key existed) counts as its default."""
    stored_flat = _flat(stored)
    # a default None stands for a mapping the checkpoint may hold (train.augment_coreset): its keys replace it
    defaults = {k: v for k, v in _flat(Config().to_dict()).items()
                if not any(s.startswith(k + ".") for s in stored_flat)}
    before = {**defaults, **stored_flat}
    now = _flat(cfg.to_dict())
    return {k: (before.get(k, _UNSET), now.get(k, _UNSET)) for k in sorted(before.keys() | now.keys())
            if before.get(k, _UNSET) != now.get(k, _UNSET)}


def check_resume_config(stored: Mapping[str, Any], cfg: Config, allow_change: Sequence[str] = (),
                        path: Any = None) -> None:
    """Refuse to resume a run whose configuration changed (a resumed run must continue the one
    it resumes, not silently become another), except the keys of :data:`RESUMABLE` and those
    in ``allow_change`` (a key, or a section such as ``model.family_args``)."""
    keys = _flat(Config().to_dict()).keys() | _flat(stored).keys() | _flat(cfg.to_dict()).keys()
    unknown = [a for a in allow_change if not any(_covers(a, k) for k in keys)]
    if unknown:
        raise SimError(f"--allow-change: no configuration key {', '.join(map(repr, unknown))} (keys look like "
                       "optim.lr or model.network_args)")
    refused = {k: v for k, v in config_changes(stored, cfg).items()
               if not any(_covers(a, k) for a in (*RESUMABLE, *allow_change))}
    if refused:
        def show(v: Any) -> str:
            return "unset" if v is _UNSET else repr(v)

        listed = "; ".join(f"{k}: {show(a)} -> {show(b)}" for k, (a, b) in refused.items())
        raise SimError(f"the configuration differs from the one this run was trained with ({listed}); resume with "
                       f"the same configuration, or accept the change with --allow-change {','.join(refused)}", path)


def resume_payload(path: Path, cfg: Config, allow_change: Sequence[str] = ()) -> dict[str, Any]:
    """The checkpoint a run resumes from, after :func:`check_resume_config`."""
    payload = read_checkpoint(path)
    if "train" not in payload:
        raise SimError(f"{path} holds no training state (an inference export?)")
    check_resume_config(payload["train"].get("config") or {}, cfg, allow_change, path)
    return payload


def _cut_log(path: Path, step: int) -> bool:
    """Drop the rows of ``metrics.csv`` logged after ``step`` (a run stopped after its last
    checkpoint logged steps the resumed run logs again) and a row cut short by the stop;
    rewritten atomically. False when the file has no header to append under."""
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if not rows or not rows[0] or rows[0][0] != "step":
        return False
    header, body = rows[0], rows[1:]

    def kept(row: list[str]) -> bool:
        try:
            return len(row) == len(header) and int(row[0]) <= step
        except ValueError:
            return False

    keep = [r for r in body if kept(r)]
    if keep != body:
        with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
            csv.writer(f).writerows([header, *keep])
    return True


class _CsvLog:
    """``metrics.csv``, created (with its folder) at the first row, so a run that fails before
    it has logged anything leaves nothing behind; ``append`` continues a resumed run's log."""

    def __init__(self, path: Path, append: bool):
        self.path, self.append = path, append
        self._file: Any = None

    def row(self, values: list[Any]) -> None:
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "a" if self.append else "w", newline="")
        csv.writer(self._file).writerow(values)
        self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


def _sample_fields(sample: Any) -> dict[str, Any]:
    """The named values of one dataset sample (a graph ``Data``, a mapping or a dataclass)."""
    if hasattr(sample, "to_dict"):
        return dict(sample.to_dict())
    if isinstance(sample, Mapping):
        return dict(sample)
    return dict(getattr(sample, "__dict__", {}))


def _finite(value: Any) -> bool:
    if isinstance(value, torch.Tensor):
        return not (value.is_floating_point() or value.is_complex()) or bool(torch.isfinite(value).all())
    if isinstance(value, np.ndarray):
        return value.dtype.kind not in "fc" or bool(np.isfinite(value).all())
    return not isinstance(value, float) or math.isfinite(value)


def non_finite_loss(loss: float, step: int, dataset: Any, indices: Sequence[int], cfg: Config) -> SimError:
    """Why the loss of ``step`` (its batch: samples ``indices``) is not finite: a sample holding
    NaN/inf, named by entry and field in the training file, or else a model that diverged."""
    for i in indices:
        fields = _sample_fields(dataset[i])
        bad = next((k for k, v in fields.items() if not _finite(v)), None)
        if bad is None:
            continue
        entry, frame = fields.get("entry", fields.get("name")), fields.get("step")
        where = f"training sample {i}" if entry is None else f"entry {str(entry)!r}"
        where += "" if frame is None else f" (frame {int(frame)})"
        return SimError(f"{where}: field {bad!r} of the training sample holds NaN or infinite values, so the training "
                        f"loss became {loss} at step {step}; fix or remove the entry (no learning rate fixes the "
                        "data)", cfg.data.train)
    return SimError(f"the training loss became {loss} at step {step} while the {len(indices)} samples of its batch are "
                    f"finite: the model diverged; lower optim.lr (now {cfg.optim.lr:g})")


def train(cfg: Config, task: Task, resume: bool = False, stop_after: int | None = None, progress: bool | None = None,
          on_step: Callable[[int, float, nn.Module], None] | None = None, allow_change: Sequence[str] = ()
          ) -> dict[str, Any]:
    """Train the model of ``task`` (the configured family); returns a summary. ``stop_after``
    ends the run early at that step (with a checkpoint), as an interruption would;
    ``on_step(step, seconds, model)`` is called after every step (e.g. to keep a snapshot).
    ``resume`` continues the checkpoint in ``train.out`` when its configuration is ``cfg`` but
    for :data:`RESUMABLE` keys and those in ``allow_change``."""
    coreset = _coreset(cfg, task)
    _check_self_tuning(cfg, task)
    if not task.trainable:
        return task.fit(cfg, progress=progress)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    distributed = world > 1
    device = _device(cfg.train.device)
    if distributed and not torch.distributed.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        torch.distributed.init_process_group(backend)
        if device.type == "cuda":
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
            torch.cuda.set_device(device)
    out = Path(cfg.train.out)
    ckpt_path = out / "checkpoint.pt"
    if ckpt_path.exists() and not resume:
        raise SimError(f"{ckpt_path} exists; pass --resume to continue it or choose another train.out")
    if resume and not ckpt_path.exists():  # a typo in train.out must not silently start over
        raise SimError("no checkpoint to resume; start the run without --resume", ckpt_path)
    payload = resume_payload(ckpt_path, cfg, allow_change) if resume else None

    torch.manual_seed(cfg.train.seed)
    np.random.seed(cfg.train.seed)
    random.seed(cfg.train.seed)
    dataset = task.build_dataset(cfg)
    simulator = task.build_model(cfg, dataset).to(device)
    tuner = _self_tuning(cfg, task, simulator, distributed)
    opt_cls = torch.optim.AdamW if cfg.optim.name == "adamw" else torch.optim.Adam
    groups: list[dict[str, Any]] = [{"params": list(simulator.parameters())}]
    if tuner is not None:  # the best-response layers learn with the weights, without decay
        groups.append({"params": tuner.parameters(), "weight_decay": 0.0})
    optimizer = opt_cls(groups, lr=cfg.optim.lr, betas=tuple(cfg.optim.betas), weight_decay=cfg.optim.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, cfg))
    start = 0
    if payload is not None:
        simulator.load_state_dict(payload["state_dict"])
        optimizer.load_state_dict(payload["train"]["optimizer"])
        scheduler.load_state_dict(payload["train"]["scheduler"])
        _set_rng_state(payload["train"]["rng"])
        start = int(payload["train"]["step"])
        if coreset is not None:
            coreset.load_state_dict(payload["train"].get("coreset"))
        if tuner is not None:
            tuner.load_state_dict(payload["train"].get("self_tuning"))
    n_parts = cfg.train.partitions
    if n_parts > 1 and not distributed:
        raise ConfigError(f"train.partitions = {n_parts} splits each graph over ranks: start the run with torchrun "
                          f"(torchrun --nproc-per-node {n_parts} ...) or set train.partitions to 1")
    sample_rank, sample_world, partitioner = rank, world, None
    loss_module: nn.Module = _LossModule(simulator, task, cfg)
    if n_parts > 1:
        sample_rank, sample_world, partitioner = _partition_groups(world, rank, n_parts, simulator)
        loss_module = _PartitionedLoss(simulator, task, cfg, partitioner)
    if distributed:
        loss_module = nn.parallel.DistributedDataParallel(loss_module)
    sampler = StepBatchSampler(len(dataset), cfg.data.batch_size, cfg.train.seed, start, cfg.train.steps,
                               sample_rank, sample_world)
    samples = _StepSamples(dataset, task.collator(cfg, dataset, simulator))
    tuning_batch = None
    if tuner is not None:  # tuned on data.valid when the run has it, else on training samples
        from sim.plugins.training.self_tuning import tuning_batches

        tune_set = task.tuning_dataset(cfg, cfg.data.valid or cfg.data.train)
        tuning_batch = tuning_batches(tune_set, task.collator(cfg, tune_set, simulator), cfg.data.batch_size,
                                      cfg.train.seed)
    loader = torch.utils.data.DataLoader(samples, batch_sampler=sampler, collate_fn=samples.collate,
                                         num_workers=cfg.data.num_workers,
                                         persistent_workers=cfg.data.num_workers > 0)
    from tqdm import tqdm

    log_path = out / "metrics.csv"
    append = start > 0 and log_path.exists() and _cut_log(log_path, start)
    log = _CsvLog(log_path, append) if rank == 0 else None
    columns: list[str] | None = None  # the loss parts a family logs beside the loss
    board = _tensorboard(out) if rank == 0 and cfg.train.tensorboard else None
    bar = tqdm(total=cfg.train.steps, initial=start, desc="train", unit="step",
               disable=(rank != 0) or ((not progress) if progress is not None else None))
    use_amp = cfg.train.amp and device.type == "cuda"
    clock = budget_clock(cfg)
    if coreset is not None:
        coreset.clock = clock
    # a resumed run continues the clock of the one it resumes: budgets and logged seconds are totals
    t0 = clock() - (float(payload["train"].get("seconds", 0.0)) if start else 0.0)
    last = stop_after if stop_after is not None else cfg.train.steps
    recent = (payload["train"].get("recent") or {}) if start else {}
    step, losses, parts = start, list(recent.get("losses", [])), list(recent.get("parts", []))
    summary: dict[str, Any] = {}
    simulator.train()

    def checkpoint(at: int) -> None:
        if rank == 0:
            out.mkdir(parents=True, exist_ok=True)
            save_checkpoint(ckpt_path, simulator, {
                "config": cfg.to_dict(), "step": at, "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "rng": _rng_state(), "seconds": clock() - t0,
                # the losses of the current log window, so a resumed run logs the same means
                "recent": {"losses": losses[-cfg.train.log_every:], "parts": parts[-cfg.train.log_every:]},
                **({"coreset": coreset.state_dict()} if coreset is not None else {}),
                **({"self_tuning": tuner.state_dict()} if tuner is not None else {})})

    # a resumed run whose budget was spent before it stopped is finished: no further step, its checkpoint untouched
    spent = bool(start) and cfg.train.max_seconds is not None and clock() - t0 > cfg.train.max_seconds
    try:
        for batch in loader:
            if step >= last or spent:
                break
            batch = batch.to(device)
            if coreset is not None:  # noise on this period's coreset only, weighted (sim.plugins.training.coreset)
                coreset.prepare(step, simulator, dataset, samples.collate_fn, sampler.global_batch, device)
                coreset.mark(batch, sampler.global_batch(step)[sample_rank::sample_world])
            if tuner is not None:  # this step's hyperparameters: u + sigma * eps (sim.plugins.training.self_tuning)
                _apply_hypers(tuner.sample(step), batch, optimizer, cfg)
            # the ranks sharing a graph (train.partitions) draw the same noise
            gen = torch.Generator(device=device).manual_seed(cfg.train.seed * 1_000_003 + step * 7919 + sample_rank)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
                loss, part = loss_module(batch, gen)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.optim.grad_clip:
                nn.utils.clip_grad_norm_(simulator.parameters(), cfg.optim.grad_clip)
            optimizer.step()
            scheduler.step()
            step += 1
            if tuner is not None:
                tuner.delta = None
                if tuner.due(step):
                    simulator.eval()
                    try:
                        tb = tuning_batch(step).to(device)
                        tuner.tune(step, lambda: task.tuning_loss(simulator, tb, cfg))
                    finally:
                        simulator.train()
            if partitioner is not None:  # the sample group's loss: the sum of its parts
                whole = loss.detach() / n_parts
                torch.distributed.all_reduce(whole, group=partitioner.group)
                loss = whole
            losses.append(float(loss.detach()))
            parts.append(part)
            if not math.isfinite(losses[-1]):
                raise non_finite_loss(losses[-1], step, dataset,
                                      sampler.global_batch(step - 1)[sample_rank::sample_world], cfg)
            bar.update(1)
            if step % cfg.train.log_every == 0 or step == last:
                mean = float(np.mean(losses[-cfg.train.log_every:]))
                window = parts[-cfg.train.log_every:]
                extra = {k: float(np.mean([p[k] for p in window])) for k in window[-1]}
                bar.set_postfix(loss=f"{mean:.4g}")
                if log is not None:
                    if columns is None:
                        columns = sorted(extra)
                        if not append:
                            log.row(["step", "loss", "lr", "seconds", *columns])
                    log.row([step, mean, scheduler.get_last_lr()[0], clock() - t0, *[extra.get(k) for k in columns]])
                del parts[:-cfg.train.log_every]
                if board:
                    board.add_scalar("train/loss", mean, step)
                    board.add_scalar("train/lr", scheduler.get_last_lr()[0], step)
                    for k, v in extra.items():
                        board.add_scalar(f"train/{k}", v, step)
            if cfg.data.valid and cfg.train.valid_every and step % cfg.train.valid_every == 0 and rank == 0:
                simulator.eval()
                try:
                    summary.update(task.validate(simulator, cfg, device))
                finally:
                    simulator.train()
                bar.write(f"step {step}: " + ", ".join(f"{k} {v:.4g}" for k, v in summary.items()))
                if board:
                    for k, v in summary.items():
                        board.add_scalar(f"valid/{k}", v, step)
            if step % cfg.train.checkpoint_every == 0 and step != last:
                checkpoint(step)
            if on_step is not None:
                on_step(step, clock() - t0, simulator)
            if cfg.train.max_seconds is not None and clock() - t0 > cfg.train.max_seconds:
                bar.write(f"stopping at step {step}: train.max_seconds = {cfg.train.max_seconds} reached")
                break
        if step > start or not ckpt_path.exists():
            checkpoint(step)
    finally:
        bar.close()
        if tuner is not None:
            tuner.release()
        if log is not None:
            log.close()
        if board:
            board.close()
    summary.update({"steps": step, "final_loss": float(np.mean(losses[-10:])) if losses else None,
                    "first_loss": losses[0] if losses and start == 0 else None,
                    "seconds": clock() - t0, "clock": cfg.train.clock, "checkpoint": str(ckpt_path)})
    if coreset is not None:
        summary.update(coreset.summary())
    if tuner is not None:
        summary.update(tuner.summary())
        if rank == 0:
            _write_tuning_log(out / "self_tuning.csv", tuner.history)
    return summary


def _check_self_tuning(cfg: Config, task: Task) -> None:
    """Refuse ``train.self_tuning`` for a family without a tuning loss, before anything is built."""
    if cfg.train.self_tuning is None:
        return
    if not getattr(task, "tunable", False):
        raise ConfigError(f"train.self_tuning: the {getattr(task, 'name', type(task).__name__)} family defines no "
                          "tuning loss (self-tuning applies to mesh models)")


def _self_tuning(cfg: Config, task: Task, model: nn.Module, distributed: bool) -> Any:
    """The run's :class:`~sim.plugins.training.self_tuning.SelfTuning` (None without ``train.self_tuning``)."""
    if cfg.train.self_tuning is None:
        return None
    from sim.plugins import get_plugin

    opts = self_tuning_options(cfg)
    if distributed:
        raise ConfigError("train.self_tuning runs in one process (its hyperparameter steps are not synchronised "
                          "across ranks); train without torchrun or drop train.self_tuning")
    return get_plugin("self_tuning", "training").factory(model, opts["hypers"], every=opts["every"], lr=opts["lr"],
                                                         perturb=opts["perturb"], entropy=opts["entropy"],
                                                         seed=cfg.train.seed, warmup=opts["warmup"],
                                                         log_loss=opts["log_loss"])


def _apply_hypers(values: Mapping[str, float], batch: Any, optimizer: torch.optim.Optimizer, cfg: Config) -> None:
    """Set one training step's self-tuned hyperparameters: the batch's input noise scaled from
    ``model.noise_std`` (its largest entry, for one per state feature) to the tuned value, and the
    weight decay of the model's parameters."""
    if "noise_std" in values:
        std = cfg.model.noise_std
        ref = max(std) if isinstance(std, list) else float(std)
        factor = values["noise_std"] / ref
        scale = getattr(batch, "noise_scale", None)
        batch.noise_scale = factor * (scale if scale is not None else
                                      torch.ones(batch.num_nodes, device=batch.state.device))
    if "weight_decay" in values:
        optimizer.param_groups[0]["weight_decay"] = values["weight_decay"]


def _write_tuning_log(path: Path, history: Sequence[Mapping[str, float]]) -> None:
    """``self_tuning.csv``: one row per hyperparameter step (step, values, sigmas, tuning loss)."""
    if not history:
        return
    cols = list(history[0])
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(cols)
        for row in history:
            w.writerow([row[c] for c in cols])


def _coreset(cfg: Config, task: Task) -> Any:
    """The run's :class:`~sim.plugins.training.coreset.CoresetAugmentation` (None without
    ``train.augment_coreset``); refused for a family whose models train without input noise."""
    if cfg.train.augment_coreset is None:
        return None
    from sim.plugins import get_plugin

    fraction, every = augment_coreset_options(cfg)
    if not getattr(task, "input_noise", False):
        raise ConfigError(f"train.augment_coreset chooses which samples get the training input noise; the "
                          f"{getattr(task, 'name', type(task).__name__)} family trains without input noise "
                          "(the option applies to the mesh and particle families)")
    return get_plugin("coreset_augment", "training").factory(fraction, every, task.loss_residual,
                                                           batch_size=cfg.data.batch_size)


def steps_for_budget(cfg: Config, task: Task, seconds: float, probe_steps: int = 20, warmup_steps: int = 0) -> int:
    """Training steps that fit in ``seconds``, from a short probe run (so the learning-rate
    schedule spans the whole budget instead of stopping early in its first part).
    ``warmup_steps``: an untimed run first, so that one-time costs the process keeps (features
    computed once per training graph) are not taken for the cost of every step."""
    import copy
    import tempfile

    probe = copy.deepcopy(cfg)
    probe.train.max_seconds, probe.train.valid_every, probe.train.checkpoint_every = None, 0, 10**9
    if warmup_steps:
        with tempfile.TemporaryDirectory() as tmp:
            probe.train.out, probe.train.steps = tmp, warmup_steps
            train(probe, task, progress=False)

    def seconds_per_step(run: Config, steps: int = probe_steps) -> float:
        with tempfile.TemporaryDirectory() as tmp:
            run.train.out, run.train.steps = tmp, steps
            # the seconds of the training loop on the run's clock: reading the data and building the
            # model are paid once per run, not per step (counting them planned a fifth of the steps a
            # budget holds on a large steady set)
            return max(float(train(run, task, progress=False)["seconds"]) / steps, 1e-9)

    usable = 0.9 * seconds
    if cfg.train.self_tuning is None:
        return max(1, int(usable / seconds_per_step(probe)))
    opts = self_tuning_options(cfg)
    # a self-tuned probe runs whole tuning periods, so that it holds its share of hyperparameter steps
    period_steps = opts["every"] * math.ceil(probe_steps / opts["every"])
    held = opts["warmup"]
    if not held:
        return max(1, int(usable / seconds_per_step(probe, period_steps)))
    # Self-tuning that holds its hyperparameters for the first ``held`` steps: those steps cost
    # less than the later ones, which also take the hyperparameter steps (a rollout of the tuning
    # loss every few steps). A probe inside the warmup alone would plan steps at the cheap rate and
    # the budget would stop the run before its learning-rate schedule ends.
    plain = seconds_per_step(probe)
    if usable <= held * plain:
        return max(1, int(usable / plain))
    tuned_probe = copy.deepcopy(probe)
    tuned_probe.train.self_tuning = {**cfg.train.self_tuning, "warmup": 0}
    return held + int((usable - held * plain) / seconds_per_step(tuned_probe, period_steps))


def train_ensemble(cfg: Config, task: Task, members: int, resume: bool = False, progress: bool | None = None,
                   allow_change: Sequence[str] = ()) -> dict[str, Any]:
    """A deep ensemble: ``members`` runs of the same configuration with seeds ``seed + i`` (other
    initial weights, batch orders and noise) into ``train.out/member_<i>``, and the manifest
    ``train.out/ensemble.json`` that ``sim.load`` opens as one surrogate with mean and std.
    ``resume``: as :func:`train`, member by member (a finished member's configuration is
    checked too, so the ensemble stays one configuration)."""
    import copy

    if members < 2:
        raise SimError(f"an ensemble needs at least two members, got {members}")
    out = Path(cfg.train.out)
    summaries, ckpts = [], []
    for i in range(members):
        member = copy.deepcopy(cfg)
        member.train.seed = cfg.train.seed + i
        member.train.out = str(out / f"member_{i}")
        done = Path(member.train.out) / "checkpoint.pt"
        if resume and done.exists() and int(resume_payload(done, member, allow_change)["train"]["step"]) >= \
                member.train.steps:
            summaries.append({"steps": member.train.steps, "checkpoint": str(done)})  # finished before
        else:
            summaries.append(train(member, task, resume=resume and done.exists(), progress=progress,
                                   allow_change=allow_change))  # members not started yet start now
        ckpts.append(summaries[-1]["checkpoint"])
    manifest = save_ensemble(out / "ensemble.json", ckpts)
    return {"members": summaries, "checkpoint": str(manifest), "steps": sum(s["steps"] for s in summaries)}
