"""What a job needs of its run, profile and project, cached per process for a few seconds."""

from __future__ import annotations

import threading
import time

from generation.client import ProfileSnapshot
from generation.models import Run

# What a job needs of its run, profile and project, kept per process for a few seconds: one
# read per run instead of three joined tables per job. An edit to the profile mid-run (say, a
# lower in-flight limit) reaches the workers within this many seconds.
RUN_FACTS_SECONDS = 5.0
_run_facts: dict[int, tuple[float, dict]] = {}
_run_facts_lock = threading.Lock()


def run_facts(run_id: int) -> dict:
    now = time.monotonic()
    with _run_facts_lock:
        hit = _run_facts.get(run_id)
    if hit is not None and now - hit[0] < RUN_FACTS_SECONDS:
        return hit[1]
    run = Run.objects.select_related("profile", "project").get(pk=run_id)
    facts = {
        "hands_off": run.hands_off,
        "profile": ProfileSnapshot.of(run.profile),
        "alternate_models": run.profile.models_for_rotation(),
        "project_id": run.project_id,
        "expansion_factor": run.project.expansion_factor,
        "reanswer_limit": run.project.reanswer_attempts,
    }
    with _run_facts_lock:
        _run_facts[run_id] = (now, facts)
    return facts


def run_facts_clear() -> None:
    with _run_facts_lock:
        _run_facts.clear()
