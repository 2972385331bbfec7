"""Base of the datasets that read one sim store lazily."""

from __future__ import annotations

import os
from collections import OrderedDict
from typing import Any

import torch

from sim.mesh import Store


class StoreDataset(torch.utils.data.Dataset):
    """Holds one store handle per process (h5py handles do not survive a DataLoader worker's
    fork) and a per-process cache of what subclasses derive from entries, cleared whenever the
    handle is reopened. Subclasses set ``path`` and ``index`` (one item per sample)."""

    path: Any
    index: list

    def _reset_store(self) -> None:
        self._store: Store | None = None
        self._pid: int | None = None
        self._cache: OrderedDict[str, Any] = OrderedDict()

    def __len__(self) -> int:
        return len(self.index)

    def _open(self) -> Store:
        if self._store is None or self._pid != os.getpid():
            self._store = Store(self.path)
            self._pid = os.getpid()
            self._cache.clear()
        return self._store

    def __getstate__(self) -> dict[str, Any]:  # pickled into workers without the handle or cache
        state = dict(self.__dict__)
        state["_store"], state["_pid"], state["_cache"] = None, None, OrderedDict()
        return state
