"""sim: learned surrogates of physics simulations that run like solvers on your own meshes."""

from sim._version import __version__


def load(path):  # sim.api is imported on first use: torch is heavy
    """Load a saved model as a :class:`sim.api.Surrogate` (see :func:`sim.api.load`)."""
    from sim.api import load as _load

    return _load(path)


def evaluate(model, data, **kwargs):
    """The model family's metrics on a store, as ``sim eval`` reports them (see :func:`sim.api.evaluate`)."""
    from sim.api import evaluate as _evaluate

    return _evaluate(model, data, **kwargs)
