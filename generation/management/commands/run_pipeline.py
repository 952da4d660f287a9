"""Start an LLM run from the terminal, optionally watching it to the end with a progress bar.

manage.py run_pipeline --project demo --stage all --wait
"""

import sys
import time

from django.core.management.base import BaseCommand, CommandError

from generation import selectors
from generation.models import LLMProfile, Run, Stage
from generation.services import GenerationError, run_start
from medcot.models import Project

BAR_WIDTH = 30


def progress_line(run: Run, *, threshold: float | None = None) -> str:
    parts = []
    stages = selectors.run_progress(run=run)
    yields = {y.kind: y for y in selectors.run_yields(run=run, stages=stages, threshold=threshold)}
    for stage in stages:
        filled = int(BAR_WIDTH * stage.finished / stage.total) if stage.total else BAR_WIDTH
        bar = "#" * filled + "-" * (BAR_WIDTH - filled)
        parts.append(f"{stage.kind:<10} [{bar}] {stage.finished}/{stage.total}")
        if stage.error:
            parts[-1] += f" ({stage.error} failed)"
        result = yields.get(stage.kind)
        if result is not None and result.finished and stage.kind == "expand":
            parts[-1] += f" {result.produced}/{result.expected} questions"
    return "  ".join(parts) or "no jobs"


def yield_lines(run: Run, *, threshold: float) -> tuple[list[str], bool]:
    """One line per stage, what it produced against what was expected, and whether any stage
    fell short of `threshold` (a share of what was expected)."""
    lines, short = [], False
    for result in selectors.run_yields(run=run, threshold=threshold):
        if not result.finished:
            continue
        what = "seeds" if result.kind in {"cot", "expand"} else "items"
        line = (
            f"{result.label}: {result.finished} {what}, {result.produced} of "
            f"{result.expected} {result.unit}"
        )
        if result.unusable_replies:
            what = "questions" if result.kind == "expand" else "answer"
            line += f" — {result.unusable_replies} replies held no {what}"
        if result.short:
            short = True
            line += f" — SHORT: under {threshold:.0%} of what was expected"
            if result.reason:
                line += f" (last reason: {result.reason})"
        lines.append(line)
    return lines, short


class Command(BaseCommand):
    help = "Start a batch of LLM work (cot, expand, reanswer, or all hands-off) on a project."

    def add_arguments(self, parser):
        parser.add_argument("--project", required=True, help="project slug")
        parser.add_argument("--stage", required=True, choices=Stage.values)
        parser.add_argument("--profile", help="LLM profile name (default: the default profile)")
        parser.add_argument("--limit", type=int, help="at most this many items")
        parser.add_argument(
            "--wait", action="store_true", help="watch the run until nothing is left to do"
        )
        parser.add_argument("--interval", type=float, default=0.5, help="seconds between updates")
        parser.add_argument(
            "--min-yield",
            type=float,
            default=None,
            help="with --wait, exit non-zero when a stage produced less than this share of "
            "what was expected (default: MEDCOT_RUN_MIN_YIELD, 0.5)",
        )

    def handle(self, *args, **opts):
        run = self._start(opts)
        totals = selectors.run_totals(run=run)
        self.stdout.write(
            f"Run #{run.pk} on {run.project.slug}: {totals.total} jobs, "
            f"endpoint {run.profile.name}" + (" (simulated)" if run.profile.simulated else "")
        )
        if run.message:
            self.stdout.write(run.message)
        if not opts["wait"]:
            return
        threshold = opts["min_yield"]
        if threshold is None:
            threshold = selectors.min_yield()
        totals = self._watch(run, threshold=threshold, interval=opts["interval"])
        if totals is not None:
            self._report(run, totals=totals, threshold=threshold)

    def _start(self, opts) -> Run:
        """The run the options ask for, started; a clear error for an unknown project or
        profile, or a run that cannot start."""
        project = Project.objects.filter(slug=opts["project"]).first()
        if project is None:
            raise CommandError(f"No project with slug {opts['project']!r}")
        profile = None
        if opts["profile"]:
            profile = LLMProfile.objects.filter(name=opts["profile"]).first()
            if profile is None:
                names = ", ".join(LLMProfile.objects.values_list("name", flat=True)) or "none"
                raise CommandError(f"No LLM profile {opts['profile']!r} (profiles: {names})")
        try:
            return run_start(
                project=project, stage=opts["stage"], profile=profile, limit=opts["limit"]
            )
        except GenerationError as exc:
            raise CommandError(str(exc)) from exc

    def _watch(self, run: Run, *, threshold: float, interval: float):
        """Print the run's progress until it ends (on one rewritten line on a terminal); returns
        its last totals, or None if the watcher was interrupted."""
        tty = sys.stdout.isatty()
        last = ""
        try:
            while True:
                run.refresh_from_db()
                line = progress_line(run, threshold=threshold) + f"  [{run.get_state_display()}]"
                if tty:
                    self.stdout.write("\r" + line, ending="")
                    self.stdout.flush()
                elif line != last:
                    self.stdout.write(line)
                last = line
                totals = selectors.run_totals(run=run)
                idle = totals.queued == 0 and totals.running == 0
                if run.state in {Run.State.DONE, Run.State.CANCELLED} or (run.hands_off and idle):
                    break
                if run.state == Run.State.PAUSED and run.message:
                    self.stdout.write("")
                    raise CommandError(run.message)
                time.sleep(interval)
        except KeyboardInterrupt:
            self.stdout.write("\nStopped watching; the run goes on in the workers.")
            return None
        if tty:
            self.stdout.write("")
        return totals

    def _report(self, run: Run, *, totals, threshold: float) -> None:
        """The finished run's calls, cost and latency, then its yield by stage; an error if a
        stage fell short of the threshold."""
        stats = selectors.run_stats(run=run)
        self.stdout.write(
            f"{stats.calls} calls, {stats.prompt_tokens}+{stats.completion_tokens} tokens, "
            f"cost {stats.cost:.4f}, latency p50/p90/p99 {stats.p50_ms}/{stats.p90_ms}/"
            f"{stats.p99_ms} ms, {totals.error} failed"
        )
        lines, short = yield_lines(run, threshold=threshold)
        for line in lines:
            self.stdout.write(line)
        if short:
            raise CommandError(
                f"Run #{run.pk} fell short: a stage produced less than {threshold:.0%} of what "
                "was expected (see above, and the run page)."
            )
