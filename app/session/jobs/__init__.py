"""The window's background jobs: one registered job per request type, and the threads
that run them.

`runner` maps a request type to its `(context, request) -> Job` and runs each job on a
niced thread of its own, posting its steps and end as `JobEvent`s; the modules below
register their jobs on import, grouped by what they work on: `units` (a unit's preferred
image and card, icons, a layer's renders), `datasets` (a folder: scan, dissection,
ablation, class units; cached concept labels), `frames` (the frozen frame), `atlas` (a
layer's activation atlas, built or cached).
A new job is a new request type in core and a `@job_for` function in one of these (or a
new) module; nothing else in the session changes.
"""

from app.session.jobs import atlas, datasets, frames, units
from app.session.jobs.runner import (
           JOB_NICENESS,
           JobContext,
           Jobs,
           Refused,
           drain,
           make_job,
           registered,
)

__all__ = ["JOB_NICENESS", "JobContext", "Jobs", "Refused", "atlas", "datasets", "drain",
           "frames", "make_job", "registered", "units"]
