import os
import sys

from django.apps import AppConfig


class GenerationConfig(AppConfig):
    name = "generation"
    verbose_name = "Generation"

    def ready(self) -> None:
        from celery.signals import worker_init, worker_ready

        worker_init.connect(_worker_init, weak=False)
        worker_ready.connect(_worker_ready, weak=False)


def _worker_init(sender=None, **kwargs) -> None:
    """A worker on the asyncio pool (generation/aiopool.py) or Celery's thread pool runs many
    LLM tasks at once; give it a small pool of database threads so connections do not grow
    with the number of calls in flight."""
    from generation import dbexec

    pool = getattr(sender, "pool_cls", None)
    name = pool if isinstance(pool, str) else getattr(pool, "__module__", "") or ""
    if "thread" in name.lower() or "aiopool" in name.lower():
        dbexec.enable(dbexec.threads_from_env())
        # Many threads mostly wait on sockets; a short switch interval lets the one that just
        # got its database or HTTP reply take the GIL back quickly instead of queueing behind
        # a thread parsing JSON for the default 5 ms.
        interval = os.getenv("MEDCOT_GIL_SWITCH_INTERVAL", "")
        if interval:
            sys.setswitchinterval(float(interval))


def _worker_ready(sender=None, **kwargs) -> None:
    """A worker starting (often after one died) first sends again any job whose dispatch was
    lost, or whose message died with a worker, instead of waiting for the next beat."""
    import logging

    from django.db import connections

    from generation.services import jobs_redispatch_lost

    try:
        jobs_redispatch_lost(broker_check=True)
    except Exception:  # the database may not be up yet; beat sweeps again soon
        logging.getLogger(__name__).exception("Start-up sweep for lost LLM job dispatches failed")
    finally:
        connections.close_all()
