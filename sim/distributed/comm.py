"""Ranks and their halo exchange on ``torch.distributed``.

:func:`launch` runs a function on N ranks: inside a ``torchrun`` (or SLURM ``srun`` with the
torchrun environment) job it joins that job's process group; otherwise it starts N local
processes itself (gloo on CPU, nccl on GPU). An error in any rank stops all of them and is
raised in the caller as one :class:`~sim.errors.SimError` naming the rank.

:class:`HaloExchange` copies the owners' values of every halo node into the ranks that hold
it as halo: point-to-point sends of only the rows a neighbour needs (no rank ever holds the
whole field).
"""

from __future__ import annotations

import os
import socket
import tempfile
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from sim.errors import SimError


def in_torchrun() -> bool:
    """Whether this process was started by torchrun (its environment names a rank and a world)."""
    return all(k in os.environ for k in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"))


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _backend(device: str) -> str:
    return "nccl" if str(device).startswith("cuda") else "gloo"


def _worker(rank: int, world: int, port: int, errors: str, threads: int, device: str, fn: Callable[..., Any],
            args: tuple) -> None:
    os.environ.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": str(rank),
                       "WORLD_SIZE": str(world), "LOCAL_RANK": str(rank)})
    torch.set_num_threads(max(1, threads))
    try:
        dist.init_process_group(_backend(device), rank=rank, world_size=world)
        try:
            result = fn(rank, world, *args)
            if result is not None and rank == 0:
                torch.save(result, Path(errors) / "result.pt")
        finally:
            dist.destroy_process_group()
    except SimError as exc:
        (Path(errors) / f"rank{rank}.err").write_text(str(exc))
        raise SystemExit(1) from None
    except BaseException:
        (Path(errors) / f"rank{rank}.err").write_text(traceback.format_exc())
        raise SystemExit(1) from None


def launch(fn: Callable[..., Any], world: int, *args: Any, device: str = "cpu", threads: int | None = None) -> Any:
    """Run ``fn(rank, world, *args)`` on ``world`` ranks; returns rank 0's result (a tensor-
    or plain-data value). Inside a torchrun job the ranks are the job's (``world`` must match
    its size) and every rank returns its own result."""
    if world < 1:
        raise SimError(f"the number of ranks must be at least 1, got {world}")
    if dist.is_available() and dist.is_initialized():
        if dist.get_world_size() != world:
            raise SimError(f"asked for {world} ranks inside a job of {dist.get_world_size()}")
        return fn(dist.get_rank(), world, *args)
    if in_torchrun():
        size = int(os.environ["WORLD_SIZE"])
        if size != world:
            raise SimError(f"asked for {world} ranks; this torchrun job has {size} (--nproc-per-node x nodes)")
        dist.init_process_group(_backend(device))
        try:
            return fn(dist.get_rank(), world, *args)
        finally:
            dist.destroy_process_group()
    import torch.multiprocessing as mp

    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    threads = threads or max(1, cpus // world)
    with tempfile.TemporaryDirectory(prefix="sim-ranks-") as errors:
        try:
            mp.start_processes(_worker, args=(world, _free_port(), errors, threads, device, fn, args), nprocs=world,
                               join=True, start_method="spawn")
        except Exception:
            found = sorted(Path(errors).glob("rank*.err"))
            if not found:
                raise
            rank = found[0].stem[4:]
            raise SimError(f"rank {rank} of {world}: {found[0].read_text().strip()}") from None
        result = Path(errors) / "result.pt"
        return torch.load(result, weights_only=True) if result.exists() else None


class HaloExchange:
    """The halo exchange of one part: after :meth:`__call__`, the halo rows of a local array
    hold their owners' values.

    Args:
        nodes: global ids of the local nodes, the ``num_owned`` owned ones first.
        owner: rank owning each global node (N,).
        group: the process group (default: the world).
    """

    def __init__(self, nodes: np.ndarray, num_owned: int, owner: np.ndarray, group: Any = None):
        self.group = group
        self.rank = dist.get_rank(group) if dist.is_initialized() else 0
        self.world = dist.get_world_size(group) if dist.is_initialized() else 1
        nodes = np.asarray(nodes, dtype=np.int64)
        halo = nodes[num_owned:]
        halo_owner = np.asarray(owner)[halo]
        if np.any(halo_owner == self.rank):
            raise SimError("a halo node is owned by the part that holds it as halo")
        need = {int(q): halo[halo_owner == q] for q in np.unique(halo_owner)}
        self.recv = {q: torch.as_tensor(num_owned + np.flatnonzero(halo_owner == q)) for q in need}
        requests: list[Any] = [None] * self.world
        if self.world > 1:
            dist.all_gather_object(requests, need, group=group)
        else:
            requests = [need]
        owned = nodes[:num_owned]
        order = np.argsort(owned)
        self.send: dict[int, torch.Tensor] = {}
        for p, asked in enumerate(requests):
            ids = (asked or {}).get(self.rank)
            if p == self.rank or ids is None or not len(ids):
                continue
            pos = order[np.searchsorted(owned, ids, sorter=order)]
            if not np.array_equal(owned[pos], ids):
                raise SimError(f"rank {p} asks for nodes rank {self.rank} does not own")
            self.send[p] = torch.as_tensor(pos)

    def _peer(self, q: int) -> int:
        """The global rank of rank ``q`` of the group (point-to-point calls take global ranks)."""
        return q if self.group is None else dist.get_global_rank(self.group, q)

    @property
    def neighbours(self) -> list[int]:
        return sorted(set(self.send) | set(self.recv))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Fill the halo rows of ``x`` (num_local, ...) in place from their owners; returns ``x``."""
        if self.world == 1 or not self.neighbours:
            return x
        works, bufs = [], {}
        for q, idx in self.send.items():
            works.append(dist.isend(x.index_select(0, idx.to(x.device)).contiguous(), self._peer(q), group=self.group))
        for q, idx in self.recv.items():
            bufs[q] = x.new_empty((len(idx), *x.shape[1:]))
            works.append(dist.irecv(bufs[q], self._peer(q), group=self.group))
        for w in works:
            w.wait()
        for q, buf in bufs.items():
            x[self.recv[q].to(x.device)] = buf
        return x
