"""Ground-truth numerical solvers that generate training data into the sim store.

Each dataset is a recipe (``datasets/<name>.yaml``) naming a generator function
``fn(params, seed) -> Trajectory | Mesh`` from an allow-list (ours, and those installed
packages register); :mod:`solvers.recipes` runs it for every entry of every split, in
parallel, resumably and in shards.
"""


class Rejected(Exception):
    """A random draw is unusable (e.g. the solution blows up); the generator is called again with another seed."""
