"""One package per analysis, each with its entry points in its `__init__`.

Analyses build on `app.engine.runtime` and never on each other; the live worker
(`app.engine.live`) and the session drive them. Background analyses are jobs
(`app.core.jobs`): generators that yield progress and return a frozen result.
"""
