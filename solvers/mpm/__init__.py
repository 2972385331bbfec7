"""MLS-MPM particle solver (ground truth for GIOROM): elastic, fluid, von Mises and
Drucker-Prager materials in 2D and 3D, random scenes and GNS-style statistics."""

from solvers.mpm.mls_mpm import MATERIALS, Material, MPMSolver
from solvers.mpm.scenes import coarse_sample, dataset_statistics, generate, simulate

__all__ = ["MATERIALS", "MPMSolver", "Material", "coarse_sample", "dataset_statistics", "generate", "simulate"]
