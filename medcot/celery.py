"""The Celery application. Tasks live in each app's tasks.py and are autodiscovered."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "medcot.settings")

app = Celery("medcot")
app.config_from_object("django.conf:settings", namespace="CELERY")
# LLM work has a queue of its own so that a long backlog of model calls never delays the
# short bookkeeping tasks (imports, releases) that people are waiting on in the browser.
app.conf.task_routes = {"generation.tasks.*": {"queue": "llm"}}  # generation.services.LLM_QUEUE
app.autodiscover_tasks()
