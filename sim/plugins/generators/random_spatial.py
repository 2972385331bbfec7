"""Random spatial networks: nodes at random in space, edges by distance and expected degree.

Lang, De Sterck, Kaiser, Miller, *Random Spatial Networks: Small Worlds without Clustering,
Traveling Waves, and Hop-and-Spread Disease Dynamics*, 2017.

``n`` nodes are placed uniformly (density rho = n / volume) in the box ``[0, size]^d`` (a torus
by default, so no node sees a boundary); node u gets an expected degree kappa_u (all equal to
``mean_degree``, or drawn from a gamma distribution with that mean and a coefficient of
variation ``degree_cv``). Nodes u, v are joined independently with probability

    p_uv = kappa_u kappa_v h(|x_u - x_v|) / (rho <kappa>)

where h is a kernel that integrates to 1 over R^d (Gaussian, exponential, or the slowly
decaying power law that gives the long-range "hops"). Summing p_uv over the other nodes
gives kappa_u, so the expected degree of every node is its kappa (the paper's tractability),
and an edge's length r has density proportional to h(r) r^(d-1) (the shell of radius r).

Kernels are truncated at ``cutoff`` (default: the radius holding all but 1e-6 of a Gaussian or
exponential kernel's mass; the power law's must be given) and renormalised on that ball, so
the expected degrees stay exact. p_uv must stay <= 1; a combination that exceeds it (high
degrees on a narrow kernel) is an error, not a silent cap that would lower the degrees.
Candidate pairs come from KD-trees (periodic through ``boxsize``), a chunk of nodes at a time,
so memory stays bounded for graphs of millions of nodes; time grows with n times the expected
number of nodes within the cutoff, so a kernel whose probabilities stay close to 1 near the
node (``scale`` about the node spacing) is the cheapest.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import gamma, pi

import numpy as np
from scipy import special
from scipy.spatial import cKDTree

from sim.plugins.registry import PluginError, register_plugin

KERNELS = ("gaussian", "exponential", "power")


def _ball_mass(kernel: str, r: float, scale: float, dim: int, exponent: float) -> float:
    """Unnormalised mass of the radial profile over the ball of radius ``r`` in R^dim
    (profile: exp(-x^2 / 2 s^2), exp(-x / s) or (1 + x / s)^-exponent)."""
    shell = 2 * pi ** (dim / 2) / gamma(dim / 2)  # surface of the unit sphere
    if kernel == "gaussian":  # int_0^r x^(d-1) e^{-x^2/2s^2} dx = s^d 2^(d/2-1) Gamma(d/2) P(d/2, r^2/2s^2)
        return (shell * scale ** dim * 2 ** (dim / 2 - 1) * gamma(dim / 2)
                * special.gammainc(dim / 2, r ** 2 / (2 * scale ** 2)))
    if kernel == "exponential":  # int_0^r x^(d-1) e^{-x/s} dx = s^d Gamma(d) P(d, r/s)
        return shell * scale ** dim * gamma(dim) * special.gammainc(dim, r / scale)
    xs = np.linspace(0.0, r, 20001)  # power law: numerical (smooth integrand, fine grid)
    return shell * float(np.trapezoid(xs ** (dim - 1) * (1 + xs / scale) ** (-exponent), xs))


def _profile(kernel: str, x: np.ndarray, scale: float, exponent: float) -> np.ndarray:
    if kernel == "gaussian":
        return np.exp(-x ** 2 / (2 * scale ** 2))
    if kernel == "exponential":
        return np.exp(-x / scale)
    return (1 + x / scale) ** (-exponent)


@dataclass
class SpatialGraph:
    """A generated graph: ``pos`` (n, d), ``edge_index`` (2, E) with both directions of every
    edge, ``expected_degree`` (n,) the kappa of each node, ``lengths`` (E,) edge lengths (the
    periodic distance on a torus), and the model's parameters."""

    pos: np.ndarray
    edge_index: np.ndarray
    expected_degree: np.ndarray
    lengths: np.ndarray
    kernel: str
    scale: float
    cutoff: float
    size: float
    periodic: bool
    exponent: float

    @property
    def num_nodes(self) -> int:
        return int(self.pos.shape[0])

    def degrees(self) -> np.ndarray:
        return np.bincount(self.edge_index[0], minlength=self.num_nodes)

    def kernel_density(self, r: np.ndarray) -> np.ndarray:
        """The model's density of an edge's length at ``r`` (h(r) r^(d-1), normalised on [0, cutoff])."""
        d = self.pos.shape[1]
        shell = 2 * pi ** (d / 2) / gamma(d / 2)
        mass = _ball_mass(self.kernel, self.cutoff, self.scale, d, self.exponent)
        r = np.asarray(r, dtype=float)
        density = shell * r ** (d - 1) * _profile(self.kernel, r, self.scale, self.exponent) / mass
        return np.where(r <= self.cutoff, density, 0.0)

    def length_cdf(self, r: np.ndarray) -> np.ndarray:
        """The model's distribution function of an edge's length."""
        d = self.pos.shape[1]
        r = np.clip(np.asarray(r, dtype=float), 0.0, self.cutoff)
        total = _ball_mass(self.kernel, self.cutoff, self.scale, d, self.exponent)
        if self.kernel == "power":  # cumulative trapezoid on a fine grid, interpolated
            xs = np.linspace(0.0, self.cutoff, 200_001)
            f = xs ** (d - 1) * _profile("power", xs, self.scale, self.exponent)
            cum = np.concatenate([[0.0], np.cumsum((f[1:] + f[:-1]) / 2 * np.diff(xs))])
            return np.interp(r, xs, cum / cum[-1])
        return _ball_mass(self.kernel, r, self.scale, d, self.exponent) / total


@register_plugin("random_spatial_network", "generator",
                 paper="Lang, De Sterck, Kaiser, Miller 2017, Random Spatial Networks: Small Worlds without "
                       "Clustering, Traveling Waves, and Hop-and-Spread Disease Dynamics",
                 summary="graphs of any size without a mesher: random nodes, edges by distance kernel and "
                         "expected degree")
def random_spatial_network(num_nodes: int, dim: int = 2, mean_degree: float = 6.0, kernel: str = "gaussian",
                           scale: float | None = None, cutoff: float | None = None, exponent: float = 4.0,
                           degree_cv: float = 0.0, size: float = 1.0, periodic: bool = True,
                           seed: int | None = 0, chunk: int = 20_000) -> SpatialGraph:
    """Sample a random spatial network.

    Args:
        num_nodes: n.
        dim: space dimension d.
        mean_degree: <kappa>, the mean expected degree.
        kernel: ``gaussian`` (exp(-r^2/2s^2)), ``exponential`` (exp(-r/s)) or ``power``
            ((1 + r/s)^-exponent, long-range hops; needs ``exponent > dim`` or a cutoff).
        scale: the kernel's length s (default: the spacing of the nodes, (volume / n)^(1/d),
            times 1.5, which keeps p_uv <= 1 for mean degrees up to about 10 in 2-D).
        cutoff: the kernel's truncation radius (default: all but 1e-6 of the mass for Gaussian
            and exponential kernels; for the power law, size / 2).
        exponent: the power law's exponent.
        degree_cv: coefficient of variation of kappa (0: every node expects ``mean_degree``;
            else gamma distributed).
        size: edge of the box.
        periodic: the box is a torus (default), so every node has the same surroundings.
        seed: random seed.
        chunk: nodes whose candidate pairs are drawn at once (bounds the memory).
    """
    if kernel not in KERNELS:
        raise PluginError(f"random_spatial_network: unknown kernel {kernel!r} (kernels: {', '.join(KERNELS)})")
    if num_nodes < 2 or dim < 1 or mean_degree <= 0 or size <= 0 or degree_cv < 0:
        raise PluginError("random_spatial_network: needs num_nodes >= 2, dim >= 1, mean_degree > 0, size > 0, "
                          "degree_cv >= 0")
    if mean_degree >= num_nodes - 1:
        raise PluginError(f"random_spatial_network: mean degree {mean_degree} needs more than {num_nodes} nodes")
    rng = np.random.default_rng(seed)
    volume = size ** dim
    rho = num_nodes / volume
    s = float(scale) if scale is not None else 1.5 * (volume / num_nodes) ** (1 / dim)
    if cutoff is None:
        if kernel == "gaussian":
            cutoff = s * float(np.sqrt(2 * special.gammaincinv(dim / 2, 1 - 1e-6)))
        elif kernel == "exponential":
            cutoff = s * float(special.gammaincinv(dim, 1 - 1e-6))
        else:
            cutoff = size / 2
    if periodic and cutoff > size / 2:
        raise PluginError(f"random_spatial_network: the cutoff {cutoff:.4g} exceeds half the periodic box "
                          f"({size / 2:.4g}); use a larger size or a shorter kernel")
    mass = _ball_mass(kernel, cutoff, s, dim, exponent)
    if degree_cv > 0:
        k = 1 / degree_cv ** 2
        kappa = rng.gamma(k, mean_degree / k, num_nodes)
    else:
        kappa = np.full(num_nodes, float(mean_degree))
    mean_kappa = float(kappa.mean())
    # the worst pair: the two largest kappas at distance 0, where h is largest
    p_max = np.sort(kappa)[-2:].prod() / (mass * rho * mean_kappa)
    if p_max > 1:
        raise PluginError(f"random_spatial_network: edge probabilities reach {p_max:.3g} > 1 (degree {mean_degree}, "
                          f"kernel scale {s:.4g}); widen the kernel (scale) or lower the degrees")
    pos = rng.uniform(0.0, size, (num_nodes, dim))
    box = size if periodic else None
    tree = cKDTree(pos, boxsize=box)  # cKDTree's periodic boxsize needs coordinates in [0, size)
    us, vs, rs = [], [], []
    for start in range(0, num_nodes, chunk):  # candidate pairs chunk by chunk: memory stays bounded
        idx = np.arange(start, min(num_nodes, start + chunk))
        m = cKDTree(pos[idx], boxsize=box).sparse_distance_matrix(tree, cutoff, output_type="ndarray")
        u, v, r = idx[m["i"]], m["j"].astype(np.int64), m["v"]
        keep = u < v  # each pair once
        u, v, r = u[keep], v[keep], r[keep]
        p = kappa[u] * kappa[v] * _profile(kernel, r, s, exponent) / (mass * rho * mean_kappa)
        hit = rng.random(len(p)) < p
        us.append(u[hit])
        vs.append(v[hit])
        rs.append(r[hit])
    u, v, r = np.concatenate(us), np.concatenate(vs), np.concatenate(rs)
    edge_index = np.concatenate([np.stack([u, v]), np.stack([v, u])], axis=1).astype(np.int64)
    return SpatialGraph(pos, edge_index, kappa, np.concatenate([r, r]), kernel, s, float(cutoff), float(size),
                        bool(periodic), float(exponent))
