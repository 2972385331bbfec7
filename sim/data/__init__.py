"""Datasets over the HDF5 store, time windows, normalisation statistics and training noise."""

from sim.data.normalizer import Normalizer

__all__ = ["Normalizer"]
