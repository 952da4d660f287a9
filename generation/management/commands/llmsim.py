"""`manage.py llmsim`: serve the simulated OpenAI-compatible LLM (see docs/simulator.md)."""

from __future__ import annotations

import asyncio
import contextlib
from argparse import ArgumentTypeError

from django.core.management.base import BaseCommand, CommandError

from llmsim.server import (
    LATENCY_DISTRIBUTIONS,
    REASONING_STYLES,
    SimulatorConfig,
    serve_forever,
    structured_modes,
)


def _fraction(value: str) -> float:
    number = float(value)
    if not 0 <= number <= 1:
        raise ArgumentTypeError(f"{value} is not between 0 and 1")
    return number


def _seconds(value: str) -> float:
    number = float(value)
    if number < 0:
        raise ArgumentTypeError(f"{value} is negative")
    return number


class Command(BaseCommand):
    help = (
        "Serve a SIMULATED OpenAI-compatible chat API (/v1/chat/completions, /v1/models) for "
        "development, tests and benchmarks. It is not a language model."
    )

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8765, help="0 picks a free port")
        parser.add_argument("--latency-mean", type=_seconds, default=0.5, help="seconds")
        parser.add_argument("--latency-dist", choices=LATENCY_DISTRIBUTIONS, default="const")
        parser.add_argument("--accuracy", type=_fraction, default=0.7)
        parser.add_argument(
            "--judge-agreement",
            type=_fraction,
            default=None,
            help="judge mode: chance that each rubric score is the simulated truth "
            "(default MEDCOT_SIM_JUDGE_AGREEMENT or 0.8)",
        )
        parser.add_argument("--rate-429", type=_fraction, default=0.0)
        parser.add_argument("--rate-500", type=_fraction, default=0.0)
        parser.add_argument("--rate-402", type=_fraction, default=0.0)
        parser.add_argument("--rate-timeout", type=_fraction, default=0.0)
        parser.add_argument(
            "--timeout-hold",
            type=_seconds,
            default=660.0,
            help="seconds a simulated timeout holds the connection before dropping it",
        )
        parser.add_argument("--rate-malformed", type=_fraction, default=0.0)
        parser.add_argument(
            "--rate-empty",
            type=_fraction,
            default=0.0,
            help="share of 200 replies that are empty or a gateway's error page",
        )
        parser.add_argument(
            "--hard-share",
            type=_fraction,
            default=None,
            help="share of items that are hard (answered wrongly again and again)",
        )
        parser.add_argument(
            "--hard-exponent",
            type=float,
            default=6.5,
            help="a hard item is answered right with probability accuracy ** this",
        )
        parser.add_argument(
            "--structured",
            default="json_schema,json_object",
            help="response_format types honoured: json_schema, json_object (comma-separated), "
            "or none; a request asking for another gets a plain answer",
        )
        parser.add_argument("--retry-after", type=int, default=1, help="seconds, sent with 429")
        parser.add_argument("--reasoning", choices=REASONING_STYLES, default="deepseek")
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--model", default="sim-medcot", help="prefixed with sim- if not")
        parser.add_argument("--api-key", default=None, help="require this bearer token")
        parser.add_argument("--access-log", action="store_true")

    def handle(self, *args, **opts):
        try:
            config = SimulatorConfig(
                host=opts["host"],
                port=opts["port"],
                latency_mean=opts["latency_mean"],
                latency_dist=opts["latency_dist"],
                accuracy=opts["accuracy"],
                **(
                    {"judge_agreement": opts["judge_agreement"]}
                    if opts["judge_agreement"] is not None
                    else {}
                ),
                rate_429=opts["rate_429"],
                rate_500=opts["rate_500"],
                rate_402=opts["rate_402"],
                rate_timeout=opts["rate_timeout"],
                timeout_hold=opts["timeout_hold"],
                rate_malformed=opts["rate_malformed"],
                rate_empty=opts["rate_empty"],
                **({} if opts["hard_share"] is None else {"hard_share": opts["hard_share"]}),
                hard_exponent=opts["hard_exponent"],
                structured=structured_modes(opts["structured"]),
                retry_after=opts["retry_after"],
                reasoning=opts["reasoning"],
                seed=opts["seed"],
                model=opts["model"],
                api_key=opts["api_key"],
                access_log=opts["access_log"],
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from exc

        def ready(port: int) -> None:
            # Tests and scripts read this line to learn the port when started with --port 0.
            self.stdout.write(
                f"SIMULATED LLM (not a real model) serving {config.model} on "
                f"http://{config.host}:{port}/v1 — latency {config.latency_mean}s "
                f"{config.latency_dist}, accuracy {config.accuracy} "
                f"({config.hard_share:.0%} hard), "
                f"reasoning {config.reasoning}, "
                f"structured {','.join(config.structured) or 'none'}, "
                f"seed {config.seed}"
            )
            self.stdout.flush()

        with contextlib.suppress(KeyboardInterrupt):
            try:
                asyncio.run(serve_forever(config, ready=ready))
            except OSError as exc:
                raise CommandError(f"cannot listen on {config.host}:{config.port}: {exc}") from exc
