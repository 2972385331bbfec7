"""Reusable network building blocks shared by the model families: MLPs and graph-network
blocks (:mod:`~sim.nn.layers`), adjacency-masked attention, Fourier and graph neural
operator layers, and the dense decoder that evaluates sparse-node motion at any point."""
