"""`specops demo`: the whole loop on one machine, shown live.

train or load the demo pairs → register v1 (good draft) and v2 (mismatched draft) through the
qualification gate → deploy v1 → send traffic → v2 as a 10 % canary → the analysis measures v2's
acceptance rate and tokens per target step, under the thresholds and far below the stable's on the
same window → automatic rollback → aliases checked → audit chain verified → Markdown report. Nothing
says "bad": v2 fails because what it measures is bad.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.live import Live
from rich.table import Table

from specops.errors import SpecOpsError
from specops.local.wiring import LocalDeployment
from specops.rollout.intake import Step
from specops.rollout.model import ManualAction, Phase, Role, RolloutPolicy, WindowMetrics
from specops.settings import Settings

DEMO_QUALIFICATION_FLOOR = 0.3
"""Acceptance floor for the demo's good pair (it measures about 0.8 on the bundled set)."""

DEMO_PAIR_CONFIG = {"speculation": {"num_speculative_tokens": 3, "adaptive": False}}
"""Fixed k = 3 for both demo versions (the best fixed k for the good pair on a 2-core CPU): every step
drafts whatever the machine's load, so the two versions differ by their drafts alone."""

DEMO_POLICY = RolloutPolicy(
    steps=(10, 50, 100),
    analysis_interval_s=3.0,
    min_draft_tokens=64,
    min_requests=2,
    min_target_steps=48,
    min_acceptance_rate=0.3,
    min_tokens_per_step=1.1,
    max_error_rate=0.05,
    failure_limit=2,
    max_inconclusive_s=60.0,
)
"""Short windows so the story fits in a minute; thresholds are the product defaults."""


@dataclass(frozen=True)
class DemoConfig:
    """What the demo runs.

    clients: concurrent closed-loop clients. max_tokens: tokens per completion.
    warmup_s: seconds of stable-only traffic before the canary starts.
    timeout_s: longest the canary phase may run before the demo gives up (non-zero exit).
    """

    deployment: str = "demo"
    pair: str = "stdlib-coder"
    clients: int = 4
    max_tokens: int = 32
    warmup_s: float = 6.0
    timeout_s: float = 120.0
    policy: RolloutPolicy = DEMO_POLICY


@dataclass
class DemoOutcome:
    """The measured story."""

    versions: dict[str, dict[str, str]] = field(default_factory=dict)
    windows: dict[str, WindowMetrics] = field(default_factory=dict)
    breach_onset_at: float | None = None
    rollback_done_at: float | None = None
    final_phase: Phase = Phase.PENDING
    production: str | None = None
    canary_alias: str | None = None
    audit_events: int = 0
    audit_ok: bool = False
    decisions: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def breach_to_rollback_s(self) -> float | None:
        """Seconds from the canary's first request to the rollback being applied."""
        if self.breach_onset_at is None or self.rollback_done_at is None:
            return None
        return self.rollback_done_at - self.breach_onset_at


def run_demo(settings: Settings, config: DemoConfig = DemoConfig(), console: Console | None = None) -> DemoOutcome:
    """Run the whole loop; raise SpecOpsError if the rollback was not observed."""
    from specops.local.traffic import ClosedLoopTraffic
    from specops.pairs.demo import demo_prompts, train_demo_pairs

    console = console or Console()
    started = time.monotonic()
    outcome = DemoOutcome()

    console.rule("[bold]1 · demo pairs")
    pairs = train_demo_pairs(progress=True)
    console.print(f"target {pairs.target}\ndraft {pairs.draft}\nmismatched draft {pairs.draft_mismatched}")

    runtime = LocalDeployment.open(settings, deployment=config.deployment, pair=config.pair, policy=config.policy)
    console.rule("[bold]2 · register and qualify")
    good = runtime.register(
        target=pairs.target,
        draft=pairs.draft,
        min_acceptance=DEMO_QUALIFICATION_FLOOR,
        note="draft trained on stdlib code",
        config=DEMO_PAIR_CONFIG,
    )
    # The gate still measures v2 and records its low figures; the demo lets it through (floor 0) to show
    # the canary analysis catching on live traffic what an evaluation set may miss.
    bad = runtime.register(
        target=pairs.target,
        draft=pairs.draft_mismatched,
        min_acceptance=0.0,
        note="draft trained on prose (mismatched)",
        config=DEMO_PAIR_CONFIG,
    )
    for version in (good, bad):
        outcome.versions[version.version] = dict(version.tags)
        console.print(f"v{version.version}: {runtime.describe(version)}")
    console.print(speedup_verdict(good.tags), highlight=False)

    traffic = None
    try:
        console.rule(f"[bold]3 · deploy v{good.version} to production and send traffic")
        runtime.start()
        resumed = runtime.controller.state()
        if resumed.phase is Phase.PROMOTING:
            console.print("an interrupted demo left a promotion half applied: applying it first")
            runtime.controller.tick(now=time.time())
            resumed = runtime.controller.state()
        if resumed.phase in (Phase.PROGRESSING, Phase.PAUSED, Phase.ROLLING_BACK):
            console.print("an interrupted demo left a canary behind: rolling it back first")
            runtime.controller.tick(now=time.time(), action=ManualAction.ROLLBACK)
            resumed = runtime.controller.state()
        if resumed.stable_version == good.version and resumed.phase in (Phase.PROMOTED, Phase.ROLLED_BACK):
            if Role.STABLE not in runtime.backend.servers:
                runtime.backend.deploy_stable(good.version)  # a previous demo left v1 in production: serve it
        else:
            runtime.controller.begin(good.version, now=time.time())
        prompts = demo_prompts(32, 48)
        traffic = ClosedLoopTraffic(
            url=runtime.router.url,
            model=config.pair,
            prompts=prompts,
            clients=config.clients,
            max_tokens=config.max_tokens,
        ).start()
        time.sleep(config.warmup_s)
        console.print(f"stable served {traffic.tally.ok['stable']} requests")

        console.rule(
            f"[bold]4 · canary v{bad.version} at {config.policy.steps[0]}% — analysis every "
            f"{config.policy.analysis_interval_s:g} s"
        )
        # Rounds as the operator runs them: the intake says which controller call each makes (the canary's
        # start, a manual action or alert left by the CLI or the receiver, an analysis once one is due) and
        # when the next is due; the demo only sleeps until then.
        turn = runtime.run_round(desired_version=bad.version)
        deadline = time.monotonic() + config.timeout_s
        with Live(console=console, refresh_per_second=4) as live:
            while time.monotonic() < deadline:
                time.sleep(turn.next_in)
                if outcome.breach_onset_at is None:
                    outcome.breach_onset_at = runtime.router.upstreams.first_canary_request_at
                turn = runtime.run_round(desired_version=bad.version)
                if turn.decision is None:
                    continue
                if turn.plan.step is Step.ANALYSIS and turn.before.canary_version:
                    outcome.windows = runtime.last_windows(turn.before, now=turn.now)
                outcome.decisions.append(f"{turn.decision.kind.value}: {turn.decision.reason}")
                live.update(_live_table(turn.after.phase, turn.after.weight, outcome, traffic.tally.ok))
                if turn.after.phase in (Phase.ROLLED_BACK, Phase.PROMOTED):
                    outcome.rollback_done_at = time.time() if turn.after.phase is Phase.ROLLED_BACK else None
                    break
        console.print()  # the live table's caption ends without a line break
        outcome.final_phase = runtime.controller.state().phase
    finally:
        if traffic is not None:
            traffic.stop()
        runtime.stop()

    console.rule("[bold]5 · check")
    outcome.production = runtime.registry.alias(config.pair, "production")
    outcome.canary_alias = runtime.registry.alias(config.pair, "canary")
    verdict = runtime.audit.verify()
    outcome.audit_ok, outcome.audit_events = verdict.ok, verdict.events
    outcome.seconds = time.monotonic() - started
    report = write_report(settings.home / "demo-report.md", config, outcome)
    console.print(f"production alias → v{outcome.production}; canary alias → {outcome.canary_alias or 'none'}")
    console.print(f"audit chain: {'intact' if verdict.ok else verdict.reason} ({verdict.events} events)")
    if outcome.breach_to_rollback_s is not None:
        console.print(f"[bold]breach onset → rollback complete: {outcome.breach_to_rollback_s:.1f} s")
    console.print(f"report: {report}\n[bold]demo took {outcome.seconds:.0f} s")
    if outcome.final_phase is not Phase.ROLLED_BACK:
        raise SpecOpsError(f"the canary was not rolled back (phase {outcome.final_phase.value})")
    if outcome.production != good.version or outcome.canary_alias is not None or not verdict.ok:
        raise SpecOpsError("rollback left the registry or the audit log in an unexpected state")
    return outcome


def _live_table(phase: Phase, weight: int, outcome: DemoOutcome, served: Mapping[str, int]) -> Table:
    table = Table(
        "role",
        "requests",
        "steps",
        "drafted",
        "accepted",
        "acceptance",
        "tok/step",
        title=f"phase {phase.value} · canary weight {weight}%",
    )
    for role in (Role.STABLE, Role.CANARY):
        window = outcome.windows.get(role.value)
        if window is None:
            continue
        table.add_row(
            role.value,
            str(served[role.value]),
            str(window.num_target_steps),
            str(window.num_draft_tokens),
            str(window.num_accepted_tokens),
            _figure(window.acceptance_rate),
            _figure(window.tokens_per_step),
        )
    if outcome.decisions:
        table.caption = outcome.decisions[-1]
    return table


def _figure(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def speedup_verdict(tags: Mapping[str, str]) -> str:
    """One plain line: does speculation pay on this machine, greedy and sampled (the qualification's figures)."""
    figures = {
        mode: float(tags[key])
        for mode, key in (("greedy", "qualification.speedup"), ("sampled", "qualification.speedup_sampled"))
        if tags.get(key)
    }
    if not figures:
        return "speedup not measured"
    pays = [f"{mode} {value:.2f}×" for mode, value in figures.items() if value >= 1.0]
    loses = [f"{mode} {value:.2f}×" for mode, value in figures.items() if value < 1.0]
    parts = [f"speculation pays on this machine for {' and '.join(pays)}"] if pays else []
    if loses:
        parts.append(
            f"{'it does' if pays else 'speculation does'} not for {' and '.join(loses)}: on this CPU a "
            "verification costs nearly as much per token as a plain step, so only a draft the target keeps "
            "most of pays, and sampling keeps fewer draft tokens than greedy decoding"
        )
    return "; ".join(parts) + " (qualification of the first version; the target alone is 1×)"


def write_report(path: Path, config: DemoConfig, outcome: DemoOutcome) -> Path:
    """Write the Markdown summary of the demo's measured figures."""
    lines = [
        "# SpecOps demo report",
        "",
        f"Deployment `{config.deployment}`, pair `{config.pair}`; result: **{outcome.final_phase.value}**.",
        "",
        "## Pair versions (qualification, measured at registration)",
        "",
        "| version | acceptance rate | mean accepted length | speedup greedy | speedup sampled | lossless | note |",
        "|---|---|---|---|---|---|---|",
    ]
    for version, tags in outcome.versions.items():
        lines.append(
            f"| v{version} | {tags.get('qualification.acceptance_rate', '-')} "
            f"| {tags.get('qualification.mean_accepted_length', '-')} | {tags.get('qualification.speedup', '-')} "
            f"| {tags.get('qualification.speedup_sampled', '-')} "
            f"| {tags.get('qualification.lossless', '-')} | {tags.get('note', '')} |"
        )
    first = next(iter(outcome.versions.values()), {})
    lines += [
        "",
        speedup_verdict(first) + ".",
        "",
        "## Canary analysis (live traffic, the window of the last decision)",
        "",
        "| role | requests | target steps | draft tokens | accepted tokens | acceptance rate | tokens per step |",
        "|---|---|---|---|---|---|---|",
    ]
    for role, window in outcome.windows.items():
        lines.append(
            f"| {role} | {window.num_requests} | {window.num_target_steps} | {window.num_draft_tokens} "
            f"| {window.num_accepted_tokens} | {_figure(window.acceptance_rate, 3)} "
            f"| {_figure(window.tokens_per_step, 2)} |"
        )
    policy = config.policy
    lines += [
        "",
        f"Thresholds: acceptance rate ≥ {policy.min_acceptance_rate}, tokens per target step ≥ "
        f"{policy.min_tokens_per_step}, and no worse than the stable's by {policy.min_tokens_per_step_effect:.0%} "
        f"(one-sided Mann–Whitney U, p < {policy.comparison_alpha:g}); {policy.failure_limit} failed analyses "
        f"of {policy.analysis_interval_s:g} s roll back; no verdict for {policy.max_inconclusive_s:g} s rolls back.",
        "",
        "## Outcome",
        "",
        f"- breach onset → rollback complete: "
        f"{'-' if outcome.breach_to_rollback_s is None else f'{outcome.breach_to_rollback_s:.1f} s'}",
        f"- production alias: v{outcome.production}; canary alias: {outcome.canary_alias or 'none'}",
        f"- audit chain: {'intact' if outcome.audit_ok else 'BROKEN'} ({outcome.audit_events} events)",
        f"- demo wall time: {outcome.seconds:.0f} s",
        "",
        "## Decisions",
        "",
        *[f"1. {decision}" for decision in outcome.decisions],
        "",
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))
    return path
