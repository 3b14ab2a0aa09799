"""`specops up`, `down` and `deploy`: the embedded control plane on one machine."""

from __future__ import annotations

import re
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from specops.errors import Conflict, InvalidInput, NotFound, StoreUnavailable
from specops.settings import Settings

if TYPE_CHECKING:
    from specops.local.plane_files import DeployRequest, PlaneFiles

console = Console()
NAME_PATTERN = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
DETACH_READY_S = 300.0


def install(app: typer.Typer) -> None:
    """Add ``up``, ``down`` and ``deploy`` to ``app``."""
    app.command()(up)
    app.command()(down)
    app.command()(deploy)


ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", help="Plane settings (YAML; default $SPECOPS_CONFIG, else ./specops.yaml if present)."),
]


def up(
    config: ConfigOption = None,
    port: Annotated[int | None, typer.Option(min=1, max=65535, help="Router port (default 8000).")] = None,
    receiver_port: Annotated[
        int | None, typer.Option(min=1, max=65535, help="Alert receiver port (default 9095).")
    ] = None,
    detach: Annotated[bool, typer.Option("--detach", help="Run in the background; logs in .specops/logs/.")] = False,
) -> None:
    """Run the control plane: router, model servers, rollout rounds, drift, alert receiver, /metrics."""
    from specops.local import plane_config
    from specops.local.plane_files import PlaneFiles

    settings = Settings.from_env()
    overrides: dict[str, int] = {k: v for k, v in (("port", port), ("receiver_port", receiver_port)) if v is not None}
    plane_settings = plane_config.load(config).model_copy(update=overrides)
    if detach:
        _detach(settings, PlaneFiles(settings.home), config=config, overrides=overrides)
        return
    from specops.local.plane import ControlPlane

    _ensure_writable(settings.home)
    ControlPlane(settings, plane_settings, console=console).run()


def _detach(settings: Settings, files: PlaneFiles, *, config: Path | None, overrides: dict[str, int]) -> None:
    """Start `specops up` as a background process and return once it is ready."""
    running = files.running_plane()
    if running is not None:
        raise Conflict(f"a control plane already runs for {settings.home} (pid {running.pid}, {running.url})")
    logs = settings.home / "logs"
    _ensure_writable(logs)
    command = [sys.executable, "-m", "specops.cli", "up"]
    command += ["--config", str(config)] if config is not None else []
    command += [part for key, value in overrides.items() for part in (f"--{key.replace('_', '-')}", str(value))]
    log_path = logs / "plane.log"
    with log_path.open("ab") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + DETACH_READY_S
    while time.monotonic() < deadline:
        plane = files.running_plane()
        if plane is not None and plane.pid == process.pid:
            console.print(f"control plane running (pid {plane.pid}): OpenAI API at {plane.url}; logs: {log_path}")
            return
        if process.poll() is not None:
            last = [line for line in log_path.read_text(errors="replace").splitlines() if line.strip()]
            raise Conflict(f"the control plane exited with {process.returncode}: {last[-1] if last else log_path}")
        time.sleep(0.2)
    raise Conflict(f"the control plane was not ready within {DETACH_READY_S:.0f} s (log: {log_path})")


def down() -> None:
    """Stop the running control plane: drain requests, stop the model servers."""
    from specops.local.plane_files import PlaneFiles

    stopped = PlaneFiles(Settings.from_env().home).stop_plane()
    console.print(f"control plane stopped (pid {stopped.pid})")


def deploy(
    name: Annotated[str, typer.Argument(help="Deployment name: also the `model` clients send.")],
    pair: Annotated[str, typer.Option("--pair", help="Registered pair name.")],
    version: Annotated[str | None, typer.Option("--version", help="Pair version to deploy.")] = None,
    alias: Annotated[str | None, typer.Option("--alias", help="Deploy the version this alias names.")] = None,
    policy: Annotated[Path | None, typer.Option("--policy", help="Rollout policy file (YAML).")] = None,
    wait: Annotated[float, typer.Option(min=0.0, help="Seconds to wait for the plane to act (0: don't).")] = 300.0,
) -> None:
    """Deploy a pair version: the first goes to production, a later one starts a canary under the policy.

    Refused while a canary of the deployment is still being judged (promote, roll back or wait first).
    """
    from specops.local import deploy_policy
    from specops.local.plane_files import DeployRequest, PlaneFiles
    from specops.local.state_files import FileStateStore
    from specops.rollout.brain import ACTIVE_PHASES, APPLYING_PHASES
    from specops.rollout.model import RolloutPolicy

    if not NAME_PATTERN.match(name):
        raise InvalidInput(f"deployment name {name!r} must be lower-case letters, digits and '-' (at most 63)")
    if (version is None) == (alias is None):
        raise InvalidInput("give exactly one of --version and --alias")
    settings = Settings.from_env()
    rollout_policy = deploy_policy.load(policy) if policy is not None else RolloutPolicy()
    files = PlaneFiles(settings.home)
    files.require_plane()
    version = _resolve_version(settings, pair, version=version, alias=alias)
    state = FileStateStore(settings.home).load(name)
    if state is not None:
        if state.pair != pair:
            raise Conflict(f"deployment {name} serves pair {state.pair}, not {pair}")
        if state.phase in ACTIVE_PHASES | APPLYING_PHASES:
            raise Conflict(
                f"deployment {name}: canary v{state.canary_version} is {state.phase.value} at {state.weight}%; "
                "promote, roll back or wait for its verdict before deploying again"
            )
        if version == state.stable_version:
            console.print(f"{name}: v{version} already serves in production")
            return
    request = DeployRequest(
        deployment=name,
        pair=pair,
        version=version,
        policy=deploy_policy.to_dict(rollout_policy),
        request_id=uuid.uuid4().hex,
        requested_at=time.time(),
    )
    files.write_request(request)
    if wait > 0:
        console.print(_await_plane(settings, files, request, timeout_s=wait), highlight=False)


def _resolve_version(settings: Settings, pair: str, *, version: str | None, alias: str | None) -> str:
    """The registered, qualified version ``version`` or ``alias`` names; NotFound / Conflict otherwise."""
    from specops.registry import PairRegistry

    registry = PairRegistry.from_settings(settings)
    known = registry.versions(pair)
    if alias is not None:
        version = registry.alias(pair, alias)
        if version is None:
            raise NotFound(f"pair {pair} has no alias {alias!r}")
    found = next((v for v in known if v.version == version), None)
    if found is None:
        listed = ", ".join(sorted((v.version for v in known), key=lambda v: (len(v), v))) or "none"
        raise NotFound(f"pair {pair} has no version {version} (registered: {listed})")
    if not found.qualified:
        raise Conflict(f"pair {pair} v{version} did not pass qualification: it is never deployed")
    return str(version)


def _await_plane(settings: Settings, files: PlaneFiles, request: DeployRequest, *, timeout_s: float) -> str:
    """Wait until the plane serves the request (production or canary); its error as a Conflict."""
    from specops.local.state_files import FileStateStore
    from specops.rollout.model import Phase

    states = FileStateStore(settings.home)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        state, health = states.load(request.deployment), files.health(request.deployment)
        serving = {role: server.version for role, server in health.servers.items()} if health else {}
        in_production = state is not None and state.phase is Phase.PROMOTED and state.canary_version is None
        if in_production and state.stable_version == request.version and serving.get("stable") == request.version:
            return f"{request.deployment}: v{request.version} in production ({state.phase.value})"
        if state is not None and request.version == state.canary_version == serving.get("canary"):
            return f"{request.deployment}: v{request.version} canary at {state.weight}% ({state.phase.value})"
        if health is not None and health.request_id == request.request_id and health.last_error:
            raise Conflict(health.last_error)
        if files.running_plane() is None:
            raise Conflict("the control plane stopped before acting on the deploy")
        time.sleep(0.2)
    raise Conflict(f"{request.deployment}: the plane has not acted on the deploy within {timeout_s:.0f} s")


def server_lines(home: Path, names: list[str]) -> list[str]:
    """One line per supervised server that crashed, and each deployment's last error (for `status`)."""
    from specops.local.plane_files import PlaneFiles

    files, lines = PlaneFiles(home), []
    for name in names:
        health = files.health(name)
        if health is None:
            continue
        for role, server in health.servers.items():
            if server.crashes:
                state = "up" if server.up else f"down (exit {server.last_exit_code})"
                lines.append(
                    f"{name}: {role} server v{server.version} crashed {server.crashes}×, "
                    f"restarted {server.restarts}×, {state}"
                )
        if health.last_error:
            lines.append(f"{name}: last error: {health.last_error}")
    return lines


def _ensure_writable(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise StoreUnavailable(f"cannot write {folder}: {error.strerror}") from error
