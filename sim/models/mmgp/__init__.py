"""MMGP: mesh morphing + POD + Gaussian processes, with predictive uncertainty."""

from sim.models.mmgp.estimator import MMGP, NotFittedError
from sim.models.mmgp.morphing import floater_map, rbf_morph
from sim.models.mmgp.pod import POD
from sim.models.mmgp.transfer import p1_mass_matrix, p1_transfer

__all__ = ["MMGP", "NotFittedError", "POD", "floater_map", "p1_mass_matrix", "p1_transfer", "rbf_morph"]
