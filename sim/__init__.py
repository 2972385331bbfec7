"""sim: learned surrogates of physics simulations that run like solvers on your own meshes."""

__version__ = "0.1.0"
