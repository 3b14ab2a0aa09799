"""`specops status`, `history`, `rollback`, `promote`, `pause`, `resume`: a deployment from a terminal."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from specops.errors import Conflict
from specops.rollout.model import Verdict
from specops.settings import Settings

console = Console()
ACTION_WAIT_S = 60.0


def install(app: typer.Typer) -> None:
    """Add the rollout commands to ``app``."""
    app.command()(status)
    app.command()(history)
    for action in ("rollback", "promote", "pause", "resume"):
        app.command(name=action, help=f"{action.capitalize()} a deployment's rollout.")(_action_command(action))


def status(deployment: Annotated[str | None, typer.Argument(help="Deployment name; all when omitted.")] = None) -> None:
    """Show each deployment's phase, versions, canary weight and last analysis."""
    from specops.local.state_files import FileStateStore

    states = FileStateStore(Settings.from_env().home)
    names = [deployment] if deployment else states.names()
    table = Table(
        "deployment", "pair", "phase", "stable", "canary", "weight", "waiting", "last analysis", title="deployments"
    )
    for name in names:
        state = states.require(name)
        analysis = state.last_analysis
        summary = f"{analysis.verdict.value}: {analysis.reason}" if analysis else "-"
        waiting = analysis is not None and analysis.verdict is Verdict.INCONCLUSIVE and state.canary_version
        table.add_row(
            state.deployment,
            state.pair,
            state.phase.value,
            state.stable_version or "-",
            state.canary_version or "-",
            f"{state.weight}%",
            f"{state.inconclusive_s:.0f} s without a verdict" if waiting else "-",
            summary,
        )
    if not names:
        console.print("no deployments yet: run `specops demo`")
        return
    console.print(table)
    from specops.cli.plane import server_lines

    for line in server_lines(states.root.parent, names):
        console.print(line, highlight=False)


def history(deployment: Annotated[str, typer.Argument(help="Deployment name.")]) -> None:
    """Show a deployment's transitions and its audit events."""
    from specops.governance.audit import AuditLog
    from specops.governance.store import open_store
    from specops.local.state_files import FileStateStore

    settings = Settings.from_env()
    state = FileStateStore(settings.home).require(deployment)
    table = Table("time", "from", "to", "weight", "reason", title=f"{deployment}: transitions")
    for step in state.history:
        table.add_row(_clock(step.at), step.from_phase.value, step.to_phase.value, f"{step.weight}%", step.reason)
    console.print(table)
    events = AuditLog(open_store(settings.database_url)).events(subject=deployment)
    audit = Table("seq", "time", "actor", "action", title=f"{deployment}: audit events")
    for event in events:
        audit.add_row(str(event.seq), str(event.time), event.actor, event.action)
    console.print(audit)


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


def _clock(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M:%S")
