"""The rollout engine: integration, boundary conditions, streaming writers, metrics, divergence checks."""

from sim.rollout.engine import HORIZONS, RolloutDiverged, RolloutResult, rollout, series_layout, split_fields

__all__ = ["HORIZONS", "RolloutDiverged", "RolloutResult", "rollout", "series_layout", "split_fields"]
