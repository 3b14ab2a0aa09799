"""`specops status`, `history`, `rollback`, `promote`, `pause`, `resume`: a deployment from a terminal."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console, Group, RenderableType
from rich.text import Text

from specops.cli import output
from specops.errors import Conflict
from specops.rollout.model import RolloutState, Verdict
from specops.settings import Settings

if TYPE_CHECKING:
    from specops.local.state_files import FileStateStore

console = Console()
ACTION_WAIT_S = 60.0


def install(app: typer.Typer) -> None:
    """Add the rollout commands to ``app``."""
    app.command()(status)
    app.command()(history)
    for action in ("rollback", "promote", "pause", "resume"):
        app.command(name=action, help=f"{action.capitalize()} a deployment's rollout.")(_action_command(action))


STATUS_COLUMNS = (
    output.Column("deployment", "deployment"),
    output.Column("pair", "pair"),
    output.Column("phase", "phase"),
    output.Column("stable", "stable_version"),
    output.Column("canary", "canary_version"),
    output.Column("weight", text=lambda record: f"{record['weight_percent']}%", justify="right"),
    output.Column(
        "waiting",
        text=lambda record: (
            "-"
            if record["seconds_without_verdict"] is None
            else (f"{record['seconds_without_verdict']:.0f} s without a verdict")
        ),
        wrap=True,
    ),
    output.Column(
        "last analysis",
        text=lambda record: f"{record['last_verdict']}: {record['last_reason']}" if record["last_verdict"] else "-",
        wrap=True,
    ),
)
TRANSITION_COLUMNS = (
    output.Column("time (UTC)", text=lambda record: output.clock(record["time"])),
    output.Column("from", "from_phase"),
    output.Column("to", "to_phase"),
    output.Column("weight", text=lambda record: f"{record['weight_percent']}%", justify="right"),
    output.Column("reason", "reason", wrap=True),
)
EVENT_COLUMNS = (
    output.Column("seq", "seq", justify="right"),
    output.Column("time (UTC)", text=lambda record: output.clock(record["time"])),
    output.Column("actor", "actor", wrap=True),
    output.Column("action", "action"),
)


def status(
    deployment: Annotated[str | None, typer.Argument(help="Deployment name; all when omitted.")] = None,
    output_format: output.Output = output.OutputFormat.TABLE,
    watch: Annotated[bool, typer.Option("--watch", help="Refresh the table until Ctrl-C.")] = False,
    interval: Annotated[float, typer.Option(min=0.1, help="Seconds between refreshes (--watch).")] = 2.0,
) -> None:
    """Show each deployment's phase, versions, canary weight and last analysis."""
    from specops.local.state_files import FileStateStore

    if watch and output_format is output.OutputFormat.JSON:
        raise typer.BadParameter("--watch shows the table; leave it out for --output json", param_hint="'--watch'")
    states = FileStateStore(Settings.from_env().home)
    if output_format is output.OutputFormat.JSON:
        output.print_json(status_records(states, deployment))
        return
    if watch:
        _watch(lambda width: _status_view(states, deployment, width=width), interval_s=interval)
        return
    plain = Console()
    plain.print(_status_view(states, deployment, width=plain.width))


def status_records(states: FileStateStore, deployment: str | None) -> list[output.Record]:
    """One record per deployment (all when ``deployment`` is None): the fields `specops status` shows."""
    names = [deployment] if deployment else states.names()
    return [state_record(states.require(name)) for name in names]


def state_record(state: RolloutState) -> output.Record:
    """A deployment's state as the record `specops status` shows (and prints with ``--output json``)."""
    analysis = state.last_analysis
    waiting = analysis is not None and analysis.verdict is Verdict.INCONCLUSIVE and state.canary_version
    return {
        "deployment": state.deployment,
        "pair": state.pair,
        "phase": state.phase.value,
        "stable_version": state.stable_version,
        "canary_version": state.canary_version,
        "weight_percent": state.weight,
        "seconds_without_verdict": round(state.inconclusive_s, 3) if waiting else None,
        "last_verdict": analysis.verdict.value if analysis else None,
        "last_reason": analysis.reason if analysis else None,
    }


def _status_view(states: FileStateStore, deployment: str | None, *, width: int) -> RenderableType:
    records = status_records(states, deployment)
    if not records:
        return "no deployments yet: run `specops demo`"
    from specops.cli.plane import server_lines

    crashes = server_lines(states.root.parent, [record["deployment"] for record in records])
    table = output.listing(records, STATUS_COLUMNS, title="deployments", width=width)
    return Group(table, *(Text(line) for line in crashes))


def _watch(view: Callable[[int], RenderableType], *, interval_s: float) -> None:
    """Show ``view(width)`` live, refreshed every ``interval_s`` seconds, until Ctrl-C (then exit 0)."""
    from rich.live import Live

    live_console = Console()
    try:
        with Live(view(live_console.width), console=live_console, auto_refresh=False) as live:
            while True:
                time.sleep(interval_s)
                live.update(view(live_console.width), refresh=True)
    except KeyboardInterrupt:
        return


def history(
    deployment: Annotated[str, typer.Argument(help="Deployment name.")],
    output_format: output.Output = output.OutputFormat.TABLE,
) -> None:
    """Show a deployment's transitions and its audit events."""
    from specops.governance.audit import AuditLog
    from specops.governance.store import open_store
    from specops.local.state_files import FileStateStore

    settings = Settings.from_env()
    state = FileStateStore(settings.home).require(deployment)
    transitions = [
        {
            "time": output.utc_iso(step.at),
            "from_phase": step.from_phase.value,
            "to_phase": step.to_phase.value,
            "weight_percent": step.weight,
            "reason": step.reason,
        }
        for step in state.history
    ]
    events = [
        {"seq": event.seq, "time": output.utc_iso(event.time), "actor": event.actor, "action": event.action}
        for event in AuditLog(open_store(settings.database_url)).events(subject=deployment)
    ]
    if output_format is output.OutputFormat.JSON:
        output.print_json({"transitions": transitions, "audit_events": events})
        return
    plain = Console()
    plain.print(output.listing(transitions, TRANSITION_COLUMNS, title=f"{deployment}: transitions", width=plain.width))
    plain.print(output.listing(events, EVENT_COLUMNS, title=f"{deployment}: audit events", width=plain.width))


def _action_command(name: str):  # type: ignore[no-untyped-def]
    def command(
        deployment: Annotated[str, typer.Argument(help="Deployment name.")],
        kube: Annotated[bool, typer.Option("--kube", help="Act on a SpeculativeDeployment in Kubernetes.")] = False,
        namespace: Annotated[str, typer.Option(help="Namespace of the SpeculativeDeployment (--kube).")] = "default",
        kubeconfig: Annotated[str | None, typer.Option(help="Kubeconfig file (--kube; default in-cluster).")] = None,
    ) -> None:
        if kube:
            request_kube_action(deployment, namespace, name, kubeconfig)
        else:
            apply_action(deployment, name)

    command.__doc__ = f"{name.capitalize()} a deployment's rollout (live runtime or registry and state alone)."
    return command


def apply_action(deployment: str, name: str) -> None:
    """Ask the live runtime for ``name``, or apply it directly when none runs."""
    from specops.local.state_files import FileStateStore
    from specops.rollout import intake
    from specops.rollout.model import ManualAction

    settings = Settings.from_env()
    states = FileStateStore(settings.home)
    state = states.require(deployment)
    action = ManualAction(name)
    refusal = intake.action_refusal(state, action)
    if refusal is not None:
        raise Conflict(f"{deployment}: {refusal}")
    if states.runtime_pid(deployment) is not None:
        before = state.history[-1] if state.history else None
        states.request(deployment, action)
        deadline = time.monotonic() + ACTION_WAIT_S
        while time.monotonic() < deadline:
            now = states.require(deployment)
            if (now.history[-1] if now.history else None) != before:
                console.print(f"{deployment}: {now.phase.value} — {now.history[-1].reason}")
                return
            time.sleep(0.2)
        raise Conflict(f"{deployment}: the runtime did not act on {name} within {ACTION_WAIT_S:.0f} s")
    from specops.local.wiring import detached_controller

    controller = detached_controller(settings, deployment=deployment, pair=state.pair)
    decision = controller.tick(now=time.time(), action=action)
    after = controller.state()
    console.print(f"{deployment}: {after.phase.value} — {decision.reason}")


def request_kube_action(deployment: str, namespace: str, name: str, kubeconfig: str | None) -> None:
    """Annotate the SpeculativeDeployment; the operator acts and acknowledges in its status."""
    from specops.kube import actions

    request_id = actions.request(deployment, namespace, name, kubeconfig=kubeconfig)
    outcome = actions.acknowledged(deployment, namespace, request_id, kubeconfig=kubeconfig)
    if outcome is None:
        raise Conflict(f"{namespace}/{deployment}: the operator has not acknowledged {name} ({request_id}) yet")
    console.print(f"{namespace}/{deployment}: {outcome}")
