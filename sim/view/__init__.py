"""Rollouts in the browser: ``sim view`` serves a series, a store entry or a mesh as a web page
(trame, server-side VTK rendering), for machines without a display."""
