"""What every part of the generation services shares: the error, the logger, job states, limits."""

from __future__ import annotations

import logging

from generation.models import Job

log = logging.getLogger(__name__)

ACTIVE_JOB_STATES = (Job.State.QUEUED, Job.State.RUNNING)
# A reply longer than the family needs is read this far past what is needed, to make up for
# near-duplicates dropped on the way; the rest is ignored.
MAX_DROPPED_PER_REPLY = 20
# Unparseable replies do not count as strikes, but an item whose replies can never be parsed
# must not loop for ever: beyond this many extra tries it goes to `error`.
UNPARSED_ALLOWANCE = 3


class GenerationError(Exception):
    """A request that cannot be carried out (bad state or bad input), with a clear message."""
