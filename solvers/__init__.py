"""Ground-truth numerical solvers that generate training data into the sim store."""
