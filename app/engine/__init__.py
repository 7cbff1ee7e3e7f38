"""torch: `runtime` (models, hooks, copies), `analyses` (one package each), `live` (worker).

Imports flow one way, live → analyses → runtime; analyses never import each other.
"""
