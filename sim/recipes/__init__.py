"""The dataset recipes that ship with sim (package data, one ``<name>.yaml`` each).

``sim data generate cylinder_flow --size small`` finds a recipe here by name from any folder
(:func:`solvers.recipes.load_recipe`); ``datasets/<name>.yaml`` in the source tree are links to
these files, so paths to them keep working. The recipe format is described in
:mod:`solvers.recipes`.
"""
