"""Mesh or point cloud -> torch_geometric ``Data``: edges from cells, radius graphs, hop neighbourhoods."""

from sim.graph.edges import adjacency, bipartite_radius_graph, cell_edges, hop_edges, knn_bipartite, radius_graph
from sim.graph.mesh_graph import edge_features, mesh_graph, point_cloud_graph

__all__ = ["adjacency", "bipartite_radius_graph", "cell_edges", "knn_bipartite", "hop_edges", "radius_graph",
           "edge_features", "mesh_graph", "point_cloud_graph"]
