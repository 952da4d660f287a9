"""LLM throughput: the machine half of the pipeline against the simulator, end to end.

PostgreSQL, Redis, real Celery worker processes on the `llm` queue (thread pool), and the
simulated OpenAI-compatible server at mean latency L. N seeds go through CoT generation,
expansion to families of ten and re-answering (a stand-in for the reviewers moves each
finished family from first-pass review to re-answering at once). The profile allows C
requests in flight. Prints calls/s, the ideal C/L and utilisation = achieved / ideal, and
utilisation against the achievable bound: the time an ideal scheduler with C places needs for
this run's own calls, where each item's calls follow one another (CoT → synthesis → up to five
re-answers) and each takes L, so that a small run at a large C is not mistaken for a slow one.

It exits non-zero when any item ends in `error` or any in-flight lease is left in Redis.

    .venv/bin/python bench/llm_throughput.py --seeds 300 --concurrency 64 --latency 0.5

It creates (and drops) its own database (`--db`, one per run) on the PostgreSQL server of
--server, and empties and uses the Redis database of --redis, so two runs at once would take
each other's jobs: a lock file refuses a second run while one is going.

Besides the rates it prints where the machine's CPU went (workers, simulator, PostgreSQL,
Redis, the stand-in reviewers), in per cent of one core and in milliseconds per call: on two
cores, 128 calls/s leaves about 15 ms of CPU per call for everything together.
"""

from __future__ import annotations

import argparse
import fcntl
import itertools
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
sys.path.insert(0, str(ROOT))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
LOCK_FILE = Path("/tmp/medcot-llm-throughput.lock")


def cpu_seconds(pid: int | str) -> float:
    """User + system CPU time of one process so far (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def server_processes() -> dict[int, str]:
    """The PostgreSQL and Redis server processes on the machine (backends included)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().split(b"\0", 1)[0].decode(errors="replace")
        except OSError:
            continue
        name = Path(command.split(" ", 1)[0]).name
        if name.startswith("postgres"):
            found[int(entry.name)] = "postgres"
        elif name.startswith("redis-server"):
            found[int(entry.name)] = "redis"
    return found


def proc_status(pid: int) -> dict[str, int]:
    """Peak and current resident memory (kB) and threads of one process."""
    values = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            name, _, rest = line.partition(":")
            if name in ("VmHWM", "VmRSS", "Threads"):
                values[name] = int(rest.split()[0])
    except OSError:
        pass
    return values


class CPUTimeline:
    """CPU time by process group, sampled twice a second from the run's start: the simulator,
    the workers, PostgreSQL, Redis, this process (the stand-in reviewers) and the whole
    machine. PostgreSQL backends come and go (connections are recycled), so the last reading
    of a backend that has exited still counts. `between` gives each group's CPU seconds over
    a stretch of the run, so each phase can be told apart."""

    GROUPS = (
        "workers",
        "simulator",
        "PostgreSQL",
        "Redis",
        "stand-in reviewers",
        "all of these",
        "the whole machine",
    )

    def __init__(self, procs: list[subprocess.Popen]) -> None:
        import threading

        self._procs = procs
        self._servers_start = {pid: cpu_seconds(pid) for pid in server_processes()}
        self._servers_last: dict[int, tuple[str, float]] = {}
        self._samples: list[tuple[float, dict[str, float]]] = []
        self.peak_threads: dict[int, int] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._sample()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        for pid, server in server_processes().items():
            seconds = cpu_seconds(pid)
            if seconds:
                self._servers_last[pid] = (server, seconds)
        servers = {"postgres": 0.0, "redis": 0.0}
        for pid, (server, seconds) in self._servers_last.items():
            servers[server] += seconds - self._servers_start.get(pid, 0.0)
        row = {
            "simulator": cpu_seconds(self._procs[0].pid),
            "workers": sum(cpu_seconds(proc.pid) for proc in self._procs[1:]),
            "PostgreSQL": servers["postgres"],
            "Redis": servers["redis"],
            # The thread CPU of this process is the stand-in reviewers' (and this sampler's).
            "stand-in reviewers": time.process_time(),
            "the whole machine": machine_busy_seconds(),
        }
        row["all of these"] = sum(row[g] for g in self.GROUPS[:5])
        for proc in self._procs[1:]:
            threads = proc_status(proc.pid).get("Threads", 0)
            self.peak_threads[proc.pid] = max(self.peak_threads.get(proc.pid, 0), threads)
        with self._lock:
            self._samples.append((time.time(), row))

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            self._sample()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    def _at(self, moment: float) -> dict[str, float]:
        """Each group's cumulative reading at `moment`, interpolated between samples."""
        with self._lock:
            samples = list(self._samples)
        if moment <= samples[0][0]:
            return samples[0][1]
        for (t0, r0), (t1, r1) in itertools.pairwise(samples):
            if t0 <= moment <= t1:
                share = (moment - t0) / (t1 - t0) if t1 > t0 else 1.0
                return {g: r0[g] + (r1[g] - r0[g]) * share for g in self.GROUPS}
        return samples[-1][1]

    def between(self, start: float, end: float) -> dict[str, float]:
        first, last = self._at(start), self._at(end)
        return {g: last[g] - first[g] for g in self.GROUPS}


def machine_busy_seconds() -> float:
    """CPU time the whole machine has spent busy (not idle, not waiting for I/O)."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]
    return (sum(values[:8]) - idle) / CLOCK_TICKS


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--seeds", type=int, default=300)
    p.add_argument("--concurrency", "-C", type=int, default=64, help="max requests in flight")
    p.add_argument("--latency", "-L", type=float, default=0.5, help="mean simulated latency (s)")
    p.add_argument("--latency-dist", default="const", choices=["const", "exp", "lognormal"])
    p.add_argument("--accuracy", type=float, default=0.7)
    p.add_argument("--expansion", type=int, default=10)
    p.add_argument("--workers", type=int, default=2, help="worker processes")
    p.add_argument(
        "--pool",
        default="custom",
        choices=["custom", "threads"],
        help="the workers' pool: custom = the asyncio pool (generation/aiopool.py), threads = "
        "one thread per job",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=0,
        help="jobs (threads, with --pool threads) per worker (default: 8×C in total on the "
        "asyncio pool, 1.5×C on threads)",
    )
    p.add_argument("--db-threads", type=int, default=8, help="database threads per worker")
    p.add_argument("--server", default="postgres://postgres@127.0.0.1:5432")
    p.add_argument("--db", default=f"medcot_gen_bench_{os.getpid()}", help="(default: one per run)")
    p.add_argument("--redis", default="redis://127.0.0.1:6379/3")
    p.add_argument("--keep", action="store_true", help="keep the database afterwards")
    p.add_argument("--timeout", type=float, default=1800, help="give up after this many seconds")
    return p.parse_args()


def main() -> int:
    args = parse_args()
    lock = LOCK_FILE.open("w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        print(f"another llm_throughput run holds {LOCK_FILE}; run one at a time")
        return 2
    # Jobs per worker. On the asyncio pool a job waiting for a place costs a greenlet, so the
    # workers hold 8·C jobs between them: the places' queue is then (nearly) the whole backlog,
    # first come, first served, and an item's next attempt waits behind new items instead of
    # only behind the 1.5·C held before. With 1.5·C, the items in progress when the backlog ran
    # out each still had attempts to make one after another, and the last ~40 s (at C = 1,024)
    # ran with few calls in flight. A thread per job costs more: 1.5·C with --pool threads.
    per_c = 8 if args.pool == "custom" else 1.5
    threads = args.threads or math.ceil(per_c * args.concurrency / args.workers)
    var_dir = Path(f"/tmp/medcot-gen-bench-{os.getpid()}")
    var_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env.update(
        DATABASE_URL=f"{args.server}/{args.db}",
        CELERY_BROKER_URL=args.redis,
        MEDCOT_VAR_DIR=str(var_dir),
        MEDCOT_DB_THREADS=str(args.db_threads),
        # `-P custom` is the asyncio pool; the celery command reads this before the app loads.
        CELERY_CUSTOM_WORKER_POOL="generation.aiopool:TaskPool",
        LOG_LEVEL="WARNING",
        # Measure what production runs: DEBUG keeps every query in memory and wraps cursors.
        DEBUG="false",
        SECRET_KEY=os.environ.get("SECRET_KEY") or "medcot-bench-only-secret-key-not-for-use",
        DJANGO_SETTINGS_MODULE="medcot.settings",
        PYTHONPATH=str(ROOT),
    )
    os.environ.update(env)

    # A fresh database and an empty queue.
    import psycopg
    import redis

    with psycopg.connect(f"{args.server}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{args.db}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{args.db}"')
    redis.Redis.from_url(args.redis).flushdb()
    subprocess.run(
        [PY, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=env, check=True
    )

    procs: list[subprocess.Popen] = []
    try:
        sim_port = free_port()
        sim_code = (
            "import asyncio, sys\n"
            "from llmsim.server import SimulatorConfig, serve_forever\n"
            f"cfg = SimulatorConfig(port={sim_port}, latency_mean={args.latency}, "
            f"latency_dist={args.latency_dist!r}, accuracy={args.accuracy}, seed=1)\n"
            "asyncio.run(serve_forever(cfg))\n"
        )
        procs.append(subprocess.Popen([PY, "-c", sim_code], cwd=ROOT, env=env))
        for i in range(args.workers):
            procs.append(
                subprocess.Popen(
                    [
                        PY,
                        "-m",
                        "celery",
                        "-A",
                        "medcot",
                        "worker",
                        "-Q",
                        "llm",
                        "-P",
                        args.pool,
                        "-c",
                        str(threads),
                        "--prefetch-multiplier",
                        "1",
                        "-l",
                        "warning",
                        "--without-gossip",
                        "--without-mingle",
                        "--without-heartbeat",
                        "-n",
                        f"gen-bench-{i}@%h",
                    ],
                    cwd=ROOT,
                    env=env,
                )
            )
        for _ in range(100):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{sim_port}/health", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        return run_bench(args, threads, sim_port, procs)
    finally:
        for proc in reversed(procs):
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(var_dir, ignore_errors=True)
        if not args.keep:
            with psycopg.connect(f"{args.server}/postgres", autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{args.db}" WITH (FORCE)')


def run_bench(
    args: argparse.Namespace, threads: int, sim_port: int, procs: list[subprocess.Popen]
) -> int:
    import django

    django.setup()
    from django.db.models import Count, Max, Min

    from generation.models import Job, LLMCall, LLMProfile, Run
    from generation.pipeline import reanswer_enqueue
    from generation.services import run_start
    from medcot.imports.formats import ImportOptions
    from medcot.imports.service import seed_file_import
    from medcot.lifecycle import Status, transition_many
    from medcot.models import Item
    from medcot.services import project_create

    project = project_create(name="bench", slug="bench", expansion_factor=args.expansion)
    source = Path(os.environ.get("MEDCOT_DEMO_DATA_DIR", ROOT.parent / "shared" / "data"))
    lines = (source / "medqa_usmle" / "medqa_test.jsonl").read_bytes().splitlines()
    records = [lines[i % len(lines)] for i in range(args.seeds)]
    # Repeat the file when more seeds are asked for than it holds, with fresh ids.
    data = b"\n".join(
        json.dumps({**json.loads(line), "id": f"bench-{n}"}).encode()
        for n, line in enumerate(records)
    )
    result = seed_file_import(
        project=project,
        data=data,
        file_name="bench.jsonl",
        options=ImportOptions(format="medqa-jsonl", file_name="bench.jsonl"),
    )
    if not result.ok:
        print("seed import failed:", result.errors[:3])
        return 1
    seeds = Item.objects.filter(project=project).count()
    profile = LLMProfile.objects.create(
        name="bench-sim",
        base_url=f"http://127.0.0.1:{sim_port}/v1",
        model="sim-bench",
        simulated=True,
        is_default=True,
        max_in_flight=args.concurrency,
        timeout_seconds=60,
    )
    print(
        f"{seeds} seeds, expansion ×{args.expansion}, C={args.concurrency}, L={args.latency}s "
        f"({args.latency_dist}), {args.workers} workers ({args.pool} pool) × {threads} jobs, "
        f"{args.db_threads} DB threads each"
    )
    # Time the pipeline, not the workers' start-up: wait until every worker answers a ping.
    from medcot.celery import app as celery_app

    deadline = time.time() + 120
    while len(celery_app.control.ping(timeout=0.5)) < args.workers:
        if time.time() > deadline:
            print("the workers did not start")
            return 1
    started = time.time()
    # CPU time spent from here on, by process: [simulator, *workers], the servers, this one.
    cpu = CPUTimeline(procs)
    run = run_start(project=project, stage="all", profile=profile)
    machine_done = {Status.CONSENSUS, Status.PANEL, Status.ERROR, Status.DISCARDED}
    last_print = last_check = 0.0
    while True:
        # The stand-in reviewers: every family that reached first-pass review passes at once.
        waiting = list(
            Item.objects.filter(project=project, status=Status.FIRST_REVIEW).values_list(
                "pk", flat=True
            )
        )
        if waiting:
            moved = transition_many(waiting, Status.FIRST_REVIEW, Status.REANSWERING)
            reanswer_enqueue(item_ids=moved)
        # The bookkeeping (is everything finished?) is the bench's, not the pipeline's: once a
        # second, so its queries take little of the CPU the run is measured on. The wall time
        # is read off the calls' own timestamps, so checking less often does not change it.
        now = time.time()
        if now - last_check < 1:
            time.sleep(0.25)
            continue
        last_check = now
        counts = dict(
            Item.objects.filter(project=project)
            .values_list("status")
            .annotate(n=Count("id"))
            .values_list("status", "n")
        )
        total = sum(counts.values())
        finished = sum(n for s, n in counts.items() if s in machine_done)
        active_jobs = Job.objects.filter(
            run__project=project, state__in=[Job.State.QUEUED, Job.State.RUNNING]
        ).count()
        if now - last_print > 2:
            calls = LLMCall.objects.filter(profile=profile).count()
            print(
                f"  {now - started:6.1f}s  calls {calls:6d}  items {total:6d}  "
                f"finished {finished:6d}  jobs in progress {active_jobs:5d}",
                flush=True,
            )
            last_print = now
        expected = seeds * args.expansion
        if total >= seeds and finished == total and active_jobs == 0 and total >= expected * 0.9:
            break
        if now - started > args.timeout:
            print("timed out")
            return 1
        time.sleep(0.25)

    cpu.stop()
    agg = LLMCall.objects.filter(profile=profile).aggregate(
        n=Count("id"), first=Min("created_at"), last=Max("created_at")
    )
    by_task = dict(
        LLMCall.objects.filter(profile=profile)
        .values_list("task")
        .annotate(n=Count("id"))
        .values_list("task", "n")
    )
    wall = agg["last"].timestamp() - started
    achieved = agg["n"] / wall
    ideal = args.concurrency / args.latency
    stats = json.loads(
        urllib.request.urlopen(f"http://127.0.0.1:{sim_port}/sim/stats", timeout=5).read()
    )
    status_counts = dict(
        Item.objects.filter(project=project)
        .values_list("status")
        .annotate(n=Count("id"))
        .values_list("status", "n")
    )
    Run.objects.filter(pk=run.pk).update(state=Run.State.DONE)
    print()
    print(f"calls            {agg['n']}  {by_task}")
    print(f"items            {status_counts}")
    print(f"wall time        {wall:.1f} s (run start → last call)")
    print(f"achieved         {achieved:.1f} calls/s")
    print(f"ideal C/L        {ideal:.1f} calls/s")
    print(f"utilisation      {achieved / ideal:.3f}  (of C/L)")
    bound, depth = achievable_seconds(profile, args.concurrency, args.latency)
    print(
        f"achievable       {agg['n'] / bound:.1f} calls/s in {bound:.1f} s (C places, each "
        f"item's calls one after another, longest chain {depth} calls)"
    )
    print(f"utilisation      {bound / wall:.3f}  (of the achievable bound)")
    online = online_seconds(profile, args.concurrency, args.latency)
    print(
        f"online bound     {online:.1f} s, utilisation {online / wall:.3f}  (the same places, "
        "but not knowing how many attempts an item will need: first come, first served)"
    )
    print(f"simulator peak in flight {stats.get('max_in_flight')}")
    for proc in procs[1:]:
        status = proc_status(proc.pid)
        print(
            f"worker {proc.pid}: peak RSS {status.get('VmHWM', 0) / 1024:.0f} MB, "
            f"threads {status.get('Threads', 0)} (peak {cpu.peak_threads.get(proc.pid, 0)})"
        )
    errors = status_counts.get(Status.ERROR, 0)
    leases = leases_left(args.redis, profile.pk)
    print(f"items in error   {errors}")
    print(f"leases left      {leases}")
    spans = [("whole run", started, agg["last"].timestamp(), agg["n"])]
    spans += phases(profile, started, ideal)
    print()
    print("CPU, % of one core and ms per call:")
    print(f"  {'':20s}" + "".join(f"{label:>22s}" for label, *_ in spans))
    use = [cpu.between(start, end) for _, start, end, _ in spans]
    for group in CPUTimeline.GROUPS:
        cells = ""
        for used, (_, start, end, n) in zip(use, spans, strict=True):
            share = used[group] / max(end - start, 1e-9) * 100
            cells += f"{share:9.0f} % {used[group] / max(n, 1) * 1000:7.2f} ms"
        print(f"  {group:20s}{cells}")
    if errors or leases:
        print(f"FAILED: {errors} items in error, {leases} in-flight leases left in Redis")
        return 1
    return 0


def leases_left(url: str, profile_id: int) -> int:
    """In-flight leases still in Redis once every call has returned (releases are sent by a
    thread of each worker, so they get a moment to arrive)."""
    import redis

    conn = redis.Redis.from_url(url)
    key = f"medcot:llm:inflight:{profile_id}"
    deadline = time.time() + 5
    while (held := conn.zcard(key)) and time.time() < deadline:
        time.sleep(0.1)
    return held


def achievable_seconds(profile, places: int, latency: float) -> tuple[float, int]:
    """How long an ideal scheduler with `places` calls in flight, each taking `latency`,
    needs for this run's own calls. A seed's CoT and synthesis calls come one after another;
    then each member of its family (the seed too) has its re-answer calls, one after another.
    Each step of `latency` runs the `places` chains with the longest remaining path (critical
    path first), so this is a schedule that can be achieved, and close to the best one.
    Returns (seconds, longest chain in calls)."""
    import heapq

    drafting, reanswers = _chains(profile)
    # One entry per chain: (-remaining path, remaining own calls, chains it releases).
    ready: list[tuple[int, int, list[int]]] = []
    for family in set(drafting) | set(reanswers):
        members = reanswers.get(family, [])
        head = drafting.get(family, 0)
        if head:
            ready.append((-(head + max(members, default=0)), head, members))
        else:
            ready.extend((-n, n, []) for n in members)
    depth = -min((path for path, *_ in ready), default=0)
    heapq.heapify(ready)
    steps = 0
    while ready:
        steps += 1
        running = [heapq.heappop(ready) for _ in range(min(places, len(ready)))]
        for path, own, then in running:
            if own > 1:
                heapq.heappush(ready, (path + 1, own - 1, then))
            else:
                for n in then:
                    heapq.heappush(ready, (-n, n, []))
    return steps * latency, depth


def _chains(profile) -> tuple[dict[int, int], dict[int, list[int]]]:
    """Per family: its drafting calls (CoT, synthesis) and each member's re-answer calls."""
    from django.db.models import Count

    from generation.models import LLMCall, Task
    from medcot.models import Item

    family_of = dict(
        (pk, family or pk)
        for pk, family in Item.objects.filter(project__slug="bench").values_list("pk", "family_id")
    )
    drafting: dict[int, int] = {}
    reanswers: dict[int, list[int]] = {}
    rows = (
        LLMCall.objects.filter(profile=profile)
        .values_list("item_id", "task")
        .annotate(n=Count("id"))
    )
    for item_id, task, n in rows:
        family = family_of.get(item_id, item_id)
        if task == Task.REANSWER:
            reanswers.setdefault(family, []).append(n)
        else:
            drafting[family] = drafting.get(family, 0) + n
    return drafting, reanswers


def online_seconds(profile, places: int, latency: float) -> float:
    """The achievable bound knows each item's number of re-answer attempts beforehand and
    starts the longest chains first; no real scheduler can (each attempt is made only after
    the last was wrong). This one cannot either: drafting first, then re-answer calls first
    come, first served, an item's next attempt joining the back of the line. What is left
    between it and the achievable bound is the cost of not knowing, not of the workers."""
    from collections import deque

    drafting, reanswers = _chains(profile)
    draft = deque((drafting[f], reanswers.get(f, [])) for f in sorted(drafting))
    ready: deque[int] = deque(
        n for f in sorted(set(reanswers) - set(drafting)) for n in reanswers[f]
    )
    steps = 0
    while draft or ready:
        steps += 1
        running = [draft.popleft() for _ in range(min(places, len(draft)))]
        answering = [ready.popleft() for _ in range(min(places - len(running), len(ready)))]
        drafted: list[tuple[int, list[int]]] = []
        for own, then in running:
            if own > 1:
                drafted.append((own - 1, then))
            else:
                ready.extend(then)
        draft.extendleft(reversed(drafted))
        ready.extend(n - 1 for n in answering if n > 1)
    return steps * latency


def phases(profile, started: float, ideal: float) -> list[tuple[str, float, float, int]]:
    """Calls/s while CoTs and expansions are still being made, and after: the first phase is
    the pipeline's heaviest per call (versions, families, near-duplicate checks). Also how
    long the first call took to go out. Returns the phases as (label, start, end, calls)."""
    from django.db.models import ExpressionWrapper, F, Max, Min
    from django.db.models import fields as model_fields

    from generation.models import LLMCall, Task

    calls = LLMCall.objects.filter(profile=profile)
    last_draft = calls.exclude(task=Task.REANSWER).aggregate(t=Max("created_at"))["t"]
    last = calls.aggregate(t=Max("created_at"))["t"]
    if last_draft is None or last is None:
        return []
    sent = ExpressionWrapper(
        F("created_at") - F("latency_ms") * timedelta(milliseconds=1),
        output_field=model_fields.DateTimeField(),
    )
    first_sent = calls.annotate(sent=sent).aggregate(t=Min("sent"))["t"]
    print(f"  first call sent {first_sent.timestamp() - started:.2f} s after the run started")
    split = last_draft.timestamp()
    early = calls.filter(created_at__lte=last_draft).count()
    late = calls.filter(created_at__gt=last_draft).count()
    tail = last.timestamp() - split
    print(
        f"  until the last CoT/synthesis call ({split - started:.1f} s): {early} calls, "
        f"{early / (split - started):.1f} calls/s ({early / (split - started) / ideal:.2f} of C/L)"
    )
    spans = [("drafting", started, split, early)]
    if tail > 0:
        print(
            f"  re-answering only, after that ({tail:.1f} s): {late} calls, "
            f"{late / tail:.1f} calls/s ({late / tail / ideal:.2f} of C/L)"
        )
        spans.append(("re-answering only", split, last.timestamp(), late))
    return spans


if __name__ == "__main__":
    sys.exit(main())
