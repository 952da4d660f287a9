import os
import sys

from django.apps import AppConfig


class GenerationConfig(AppConfig):
    name = "generation"
    verbose_name = "Generation"

    def ready(self) -> None:
        from celery.signals import worker_init

        worker_init.connect(_worker_init, weak=False)


def _worker_init(sender=None, **kwargs) -> None:
    """A worker on Celery's thread pool runs many LLM tasks at once; give it a small pool of
    database threads so connections do not grow with the number of calls in flight."""
    from generation import dbexec

    pool = getattr(sender, "pool_cls", None)
    name = pool if isinstance(pool, str) else getattr(pool, "__module__", "") or ""
    if "thread" in name.lower():
        dbexec.enable(dbexec.threads_from_env())
        # Many threads mostly wait on sockets; a short switch interval lets the one that just
        # got its database or HTTP reply take the GIL back quickly instead of queueing behind
        # a thread parsing JSON for the default 5 ms.
        interval = os.getenv("MEDCOT_GIL_SWITCH_INTERVAL", "")
        if interval:
            sys.setswitchinterval(float(interval))
