"""Mesh or point cloud -> torch_geometric ``Data``: edges from cells, radius graphs, hop neighbourhoods."""

from sim.graph.edges import adjacency, cell_edges, hop_edges, radius_graph
from sim.graph.mesh_graph import edge_features, mesh_graph, point_cloud_graph

__all__ = ["adjacency", "cell_edges", "hop_edges", "radius_graph", "edge_features", "mesh_graph",
           "point_cloud_graph"]
