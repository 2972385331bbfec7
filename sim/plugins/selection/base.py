"""What every selection strategy checks before it picks."""

from __future__ import annotations

from sim.plugins.registry import PluginError


def check_batch(strategy: str, batch: int, pool: int) -> None:
    """A batch of 1..pool candidates (an error naming the strategy otherwise)."""
    if not 0 < batch <= pool:
        raise PluginError(f"{strategy}: batch {batch} must be in 1..{pool} (the candidates left)")
