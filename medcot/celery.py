"""The Celery application. Tasks live in each app's tasks.py and are autodiscovered."""

import os

from celery import Celery, concurrency

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "medcot.settings")
# `-P custom` is the asyncio pool for LLM workers (generation/aiopool.py: thousands of calls in
# flight per process without a thread each) unless CELERY_CUSTOM_WORKER_POOL names another.
if not os.environ.get("CELERY_CUSTOM_WORKER_POOL"):
    concurrency.ALIASES["custom"] = "generation.aiopool:TaskPool"

app = Celery("medcot")
app.config_from_object("django.conf:settings", namespace="CELERY")
# Each task declares its queue (`@shared_task(queue=…)`): LLM work has one of its own
# (generation/tasks.py) so that a long backlog of model calls never delays the short
# bookkeeping tasks (imports, releases) that people are waiting on in the browser.
app.autodiscover_tasks()
