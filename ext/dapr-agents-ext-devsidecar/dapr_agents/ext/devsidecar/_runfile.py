"""``dapr-devsidecar run -f dapr.yaml``: several apps, each with its sidecar, from one run file.

The file is the Dapr CLI's run template (``dapr run -f``): ``version``, ``common`` (settings every
app inherits unless it sets its own; ``env`` merged, the app's entries winning) and ``apps``
(``appDirPath`` required; ``appID`` defaults to its folder name; ``command``, ``appPort``,
``appProtocol``, ``resourcesPaths``, ``configFilePath``, ``env``, ports, health checks, log
destinations). Paths in ``common`` are relative to the run file, an app's to its ``appDirPath``;
resources come from the app's own setting, else ``<appDirPath>/.dapr/resources``, else
``common``, else ``~/.dapr/components``, and the Configuration likewise (``.dapr/config.yaml``).

Running it does what ``dapr run -f`` does: apps start in file order, each after its sidecar;
the sidecar's log goes to ``<appDirPath>/.dapr/logs/<appID>_daprd_<time>.log`` (``daprdLogDestination``
``file``, the default) and the app's output to the console prefixed ``== APP - <appID> ==`` and to
``<appID>_app_<time>.log`` (``appLogDestination`` ``fileAndConsole``). An app that exits is
reported and the others keep running, as with ``dapr run -f``, until Ctrl-C or SIGTERM stops
everything; the command then exits 1 if an app or sidecar had failed, else 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from ._errors import DevSidecarError

LOG_DESTINATIONS = ("console", "file", "fileAndConsole")

# Settings an app inherits from ``common`` when it does not set them (the CLI's SharedRunConfig).
_SHARED = (
    "configFilePath",
    "appProtocol",
    "apiListenAddresses",
    "logLevel",
    "appMaxConcurrency",
    "placementHostAddress",
    "resourcesPath",
    "resourcesPaths",
    "appSSL",
    "maxBodySize",
    "readBufferSize",
    "enableAppHealthCheck",
    "appHealthCheckPath",
    "appHealthProbeInterval",
    "appHealthProbeTimeout",
    "appHealthThreshold",
    "enableApiLogging",
    "runtimePath",
    "daprdLogDestination",
    "appLogDestination",
    "schedulerHostAddress",
)


@dataclass
class RunApp:
    """One app of a run file, with every default and inherited setting resolved."""

    app_id: str
    app_dir: Path
    command: list[str] = field(default_factory=list)
    app_port: int = 0
    app_protocol: str = "http"
    app_channel_address: str = "127.0.0.1"
    resources_paths: list[Path] = field(default_factory=list)
    config: Path | None = None
    env: dict[str, str] = field(default_factory=dict)
    http_port: int = 0
    grpc_port: int = 0
    internal_grpc_port: int = 0
    listen_addresses: str = "127.0.0.1"
    log_level: str = "info"
    enable_app_health_check: bool = False
    app_health_check_path: str = "/healthz"
    app_health_probe_interval: int = 5
    app_health_probe_timeout: int = 500
    app_health_threshold: int = 3
    app_log_destination: str = "fileAndConsole"
    daprd_log_destination: str = "file"

    @property
    def logs_dir(self) -> Path:
        return self.app_dir / ".dapr" / "logs"


def _path(base: Path, value: Any, what: str) -> Path:
    path = Path(os.path.expanduser(str(value)))
    if not path.is_absolute():
        path = base / path
    if not path.exists():
        raise DevSidecarError(f"{what} {str(path)!r} does not exist")
    return path


def _int(value: Any, what: str) -> int:
    if value in (None, ""):
        return 0
    try:
        return int(value)
    except (TypeError, ValueError):
        raise DevSidecarError(f"{what} must be a number, not {value!r}") from None


def _strings(value: Any, what: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list):
        raise DevSidecarError(f"{what} must be a list")
    return [str(item) for item in value]


def find_run_file(path: str | os.PathLike[str]) -> Path:
    """``-f`` names the run file, or a folder holding ``dapr.yaml``."""
    given = Path(path)
    found = given / "dapr.yaml" if given.is_dir() else given
    if not found.is_file():
        raise DevSidecarError(f"run file {str(found)!r} does not exist")
    return found


def load_run_file(path: str | os.PathLike[str]) -> list[RunApp]:
    """The apps of a run file, validated as ``dapr run -f`` validates them."""
    import yaml

    run_file = find_run_file(path)
    base = run_file.resolve().parent
    try:
        document = yaml.safe_load(run_file.read_text()) or {}
    except yaml.YAMLError as exc:
        raise DevSidecarError(f"error in parsing the provided app config file {run_file}: {exc}") from exc
    if not isinstance(document, dict):
        raise DevSidecarError(f"{run_file}: a run file is a mapping with version, common and apps")
    if not document.get("version"):
        raise DevSidecarError(
            f"{run_file}: required field 'version' not found in the provided run template file"
        )
    common = document.get("common") or {}
    apps = document.get("apps") or []
    if not isinstance(common, dict) or not isinstance(apps, list):
        raise DevSidecarError(f"{run_file}: 'common' must be a mapping and 'apps' a list")
    if not apps:
        raise DevSidecarError(f"{run_file}: no apps to run")
    common_resources = [
        _path(base, p, "common resources path")
        for p in _strings(common.get("resourcesPaths"), "resourcesPaths")
    ]
    if common.get("resourcesPath"):
        common_resources.append(_path(base, common["resourcesPath"], "common resources path"))
    common_config = (
        _path(base, common["configFilePath"], "common config file") if common.get("configFilePath") else None
    )
    dapr_home = Path.home() / ".dapr"
    loaded: list[RunApp] = []
    for index, raw in enumerate(apps):
        if not isinstance(raw, dict):
            raise DevSidecarError(f"{run_file}: apps[{index}] must be a mapping")
        if not raw.get("appDirPath"):
            raise DevSidecarError(
                f"{run_file}: required field 'appDirPath' not found in the provided app config file"
            )
        app_dir = _path(base, raw["appDirPath"], f"apps[{index}].appDirPath").resolve()
        merged = {key: raw[key] for key in raw}
        for key in _SHARED:
            if not merged.get(key) and common.get(key):
                merged[key] = common[key]
        env = {str(k): str(v) for k, v in (common.get("env") or {}).items()}
        env.update({str(k): str(v) for k, v in (raw.get("env") or {}).items()})
        app_id = str(raw.get("appID") or app_dir.name)
        where = f"app {app_id!r}"
        # Resources: the app's own, its .dapr/resources, common's, then dapr init's folder.
        resources = [
            _path(app_dir, p, f"{where} resources path")
            for p in _strings(raw.get("resourcesPaths"), "resourcesPaths")
        ]
        if raw.get("resourcesPath"):
            resources.append(_path(app_dir, raw["resourcesPath"], f"{where} resources path"))
        if not resources:
            if (app_dir / ".dapr" / "resources").is_dir():
                resources = [app_dir / ".dapr" / "resources"]
            elif common_resources:
                resources = list(common_resources)
            elif (dapr_home / "components").is_dir():
                resources = [dapr_home / "components"]
        config: Path | None = None
        if raw.get("configFilePath"):
            config = _path(app_dir, raw["configFilePath"], f"{where} config file")
        elif (app_dir / ".dapr" / "config.yaml").is_file():
            config = app_dir / ".dapr" / "config.yaml"
        elif common_config is not None:
            config = common_config
        elif (dapr_home / "config.yaml").is_file():
            config = dapr_home / "config.yaml"
        destinations = {}
        for key, default in (("appLogDestination", "fileAndConsole"), ("daprdLogDestination", "file")):
            value = str(merged.get(key) or default)
            if value not in LOG_DESTINATIONS:
                raise DevSidecarError(f"invalid log destination type: {value}")
            destinations[key] = value
        loaded.append(
            RunApp(
                app_id=app_id,
                app_dir=app_dir,
                command=_strings(raw.get("command"), f"{where} command"),
                app_port=max(0, _int(raw.get("appPort"), f"{where} appPort")),
                app_protocol=str(merged.get("appProtocol") or "http"),
                app_channel_address=str(raw.get("appChannelAddress") or "127.0.0.1"),
                resources_paths=resources,
                config=config,
                env=env,
                http_port=max(0, _int(raw.get("daprHTTPPort"), f"{where} daprHTTPPort")),
                grpc_port=max(0, _int(raw.get("daprGRPCPort"), f"{where} daprGRPCPort")),
                internal_grpc_port=max(
                    0, _int(raw.get("daprInternalGRPCPort"), f"{where} daprInternalGRPCPort")
                ),
                listen_addresses=str(merged.get("apiListenAddresses") or "127.0.0.1"),
                log_level=str(merged.get("logLevel") or "info"),
                enable_app_health_check=bool(merged.get("enableAppHealthCheck")),
                app_health_check_path=str(merged.get("appHealthCheckPath") or "/healthz"),
                app_health_probe_interval=_int(merged.get("appHealthProbeInterval"), "appHealthProbeInterval")
                or 5,
                app_health_probe_timeout=_int(merged.get("appHealthProbeTimeout"), "appHealthProbeTimeout")
                or 500,
                app_health_threshold=_int(merged.get("appHealthThreshold"), "appHealthThreshold") or 3,
                app_log_destination=destinations["appLogDestination"],
                daprd_log_destination=destinations["daprdLogDestination"],
            )
        )
    return loaded


# -- running ----------------------------------------------------------------------------------

_MARKS = {"info": "ℹ️  ", "success": "✅  ", "failure": "❌  ", "warning": "⚠  "}  # noqa: RUF001 - the CLI's marks


class _Writer:
    """Where one kind of output goes: the console, a log file, or both (``*Destination``)."""

    def __init__(self, destination: str, file: Path | None, console: IO[str]) -> None:
        self.console = console if destination in ("console", "fileAndConsole") else None
        self.file: IO[str] | None = open(file, "a") if file is not None and destination != "console" else None  # noqa: SIM115
        self.path = file if self.file is not None else None

    def line(self, text: str) -> None:
        for out in (self.console, self.file):
            if out is not None:
                out.write(text + "\n")
                out.flush()

    def status(self, kind: str, text: str) -> None:
        # The CLI marks status lines on the console only.
        if self.console is not None:
            self.console.write(_MARKS[kind] + text + "\n")
            self.console.flush()
        if self.file is not None:
            self.file.write(text + "\n")
            self.file.flush()

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None


def _exit_text(code: int) -> str:
    # Go's *exec.ExitError text.
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return "signal: " + {"SIGKILL": "killed", "SIGTERM": "terminated", "SIGINT": "interrupt"}.get(
            name, name
        )
    return f"exit status {code}"


def _free_port() -> int:
    from .testing import free_port

    return free_port()


@dataclass
class _Running:
    app: RunApp
    sidecar_log: _Writer
    app_log: _Writer
    sidecar: asyncio.subprocess.Process | None = None
    process: asyncio.subprocess.Process | None = None
    failed: bool = False
    stopping: bool = False  # exits from here on are the runner's doing, not failures
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)
    written_config: Path | None = None


class RunFileRunner:
    """Starts the apps of a run file with their sidecars and stops them all on a signal."""

    def __init__(
        self,
        apps: list[RunApp],
        runtime: str = "dev",
        console: IO[str] | None = None,
        *,
        enable_mtls: bool = False,
    ) -> None:
        self.enable_mtls = enable_mtls
        self.apps = apps
        self.runtime = runtime
        self.console = console or sys.stdout
        self.running: list[_Running] = []
        self._stamp = time.strftime("%Y%m%d%H%M%S")

    def _say(self, kind: str, text: str) -> None:
        self.console.write(_MARKS[kind] + text + "\n")
        self.console.flush()

    async def run(self, stop: asyncio.Event) -> int:
        failed = False
        for app in self.apps:
            self._say("info", f"Validating config and starting app {app.app_id!r}".replace("'", '"'))
            try:
                await self._start(app)
            except (DevSidecarError, OSError) as exc:
                self._say("failure", f'Error starting Dapr and app ("{app.app_id}"): {exc}')
                failed = True
                break
        if not failed:
            await stop.wait()
            self.console.write("\n")
            self._say(
                "info",
                "Received signal to stop Dapr and app processes. Shutting down Dapr and app processes.",
            )
        for running in self.running:
            failed = await self._stop(running) or failed
        return 1 if failed else 0

    # -- one app ------------------------------------------------------------------------------

    def _sidecar_command(self, app: RunApp, running: _Running) -> tuple[list[str], dict[str, str]]:
        if self.runtime == "daprd":
            from ._app_channel import AppHealthCheck
            from ._daprd import DaprdProcess, shared_control_plane
            from ._nameresolution import daprd_configuration

            control_plane = shared_control_plane(mtls=self.enable_mtls)
            config, written = daprd_configuration(app.config, control_plane.workdir, app.app_id)
            running.written_config = config if written else None
            check: bool | AppHealthCheck = False
            if app.enable_app_health_check:
                check = AppHealthCheck(
                    app.app_health_check_path,
                    float(app.app_health_probe_interval),
                    app.app_health_probe_timeout / 1000,
                    app.app_health_threshold,
                )
            extra = []
            if app.app_channel_address != "127.0.0.1":
                extra += ["--app-channel-address", app.app_channel_address]
            daprd = DaprdProcess(
                app.app_id,
                control_plane,
                app.resources_paths,
                config=config,
                app_port=app.app_port or None,
                app_protocol=app.app_protocol,
                grpc_port=app.grpc_port,
                http_port=app.http_port,
                log_level=app.log_level,
                app_health_check=check,
                extra_args=extra,
            )
            command = daprd.command()
            if app.internal_grpc_port:
                position = command.index("--dapr-internal-grpc-port")
                command[position + 1] = str(app.internal_grpc_port)
            if app.listen_addresses != "127.0.0.1":
                position = command.index("--dapr-listen-addresses")
                command[position + 1] = app.listen_addresses
            env = {"DAPR_HOST_IP": os.environ.get("DAPR_HOST_IP") or "127.0.0.1", **daprd.mtls_env()}
            return command, env
        command = [
            sys.executable, "-m", "dapr_devsidecar", "run",
            "--app-id", app.app_id,
            "--dapr-grpc-port", str(app.grpc_port),
            "--dapr-http-port", str(app.http_port),
            "--dapr-listen-addresses", app.listen_addresses,
            "--log-level", app.log_level if app.log_level != "warning" else "warn",
            "--runtime", "dev",
        ]  # fmt: skip
        for path in app.resources_paths:
            command += ["--resources-path", str(path)]
        if app.config is not None:
            command += ["--config", str(app.config)]
        if self.enable_mtls:
            command.append("--enable-mtls")
        if app.app_port:
            command += ["--app-port", str(app.app_port), "--app-protocol", app.app_protocol]
            command += ["--app-channel-address", app.app_channel_address]
        if app.internal_grpc_port:
            command += ["--dapr-internal-grpc-port", str(app.internal_grpc_port)]
        if app.enable_app_health_check:
            command += [
                "--enable-app-health-check",
                "--app-health-check-path", app.app_health_check_path,
                "--app-health-probe-interval", str(app.app_health_probe_interval),
                "--app-health-probe-timeout", str(app.app_health_probe_timeout),
                "--app-health-threshold", str(app.app_health_threshold),
            ]  # fmt: skip
        return command, {}

    async def _start(self, app: RunApp) -> None:
        from .testing import SidecarEndpoint

        app.http_port = app.http_port or _free_port()
        app.grpc_port = app.grpc_port or _free_port()
        app.logs_dir.mkdir(parents=True, exist_ok=True)
        sidecar_log = _Writer(
            app.daprd_log_destination, app.logs_dir / f"{app.app_id}_daprd_{self._stamp}.log", self.console
        )
        app_log = _Writer(
            app.app_log_destination if app.command else app.daprd_log_destination,
            app.logs_dir / f"{app.app_id}_app_{self._stamp}.log" if app.command else None,
            self.console,
        )
        running = _Running(app, sidecar_log, app_log)
        self.running.append(running)
        command, env = self._sidecar_command(app, running)
        sidecar_log.status(
            "info",
            f"Starting Dapr with id {app.app_id}. HTTP Port: {app.http_port}. gRPC Port: {app.grpc_port}",
        )
        running.sidecar = await asyncio.create_subprocess_exec(
            *command,
            cwd=app.app_dir,
            env={**os.environ, **env},
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,  # stopped by this runner, after its app
        )
        running.tasks.append(asyncio.create_task(self._pump(running.sidecar, sidecar_log, None)))
        running.tasks.append(asyncio.create_task(self._watch_sidecar(running)))
        await self._wait_for_sidecar(running)
        endpoint = SidecarEndpoint(app.grpc_port, app.http_port, app_id=app.app_id)
        if not app.command:
            self._say(
                "warning",
                f"No application command found for app {app.app_id!r} present in run file".replace("'", '"'),
            )
        else:
            app_env = {**os.environ, **endpoint.env(), "APP_PROTOCOL": app.app_protocol}
            if app.app_port:
                app_env["APP_PORT"] = str(app.app_port)
            if app.app_channel_address != "127.0.0.1":
                app_env["APP_CHANNEL_ADDRESS"] = app.app_channel_address
            app_env.update(app.env)
            try:
                running.process = await asyncio.create_subprocess_exec(
                    *app.command,
                    cwd=app.app_dir,
                    env=app_env,
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.PIPE,
                    start_new_session=True,  # its own process group, stopped as one (as the CLI does)
                )
            except OSError as exc:
                raise DevSidecarError(f"error starting app process: {exc}") from exc
            prefix = f"== APP - {app.app_id} == "
            running.tasks.append(
                asyncio.create_task(self._pump(running.process, app_log, prefix, stderr=False))
            )
            running.tasks.append(
                asyncio.create_task(self._pump(running.process, app_log, prefix, stderr=True))
            )
            running.tasks.append(asyncio.create_task(self._watch_app(running)))
        sidecar_log.status("success", "You're up and running! Dapr logs will appear here.\n")
        self._say(
            "info",
            f'Started Dapr with app id "{app.app_id}". HTTP Port: {app.http_port}. gRPC Port: {app.grpc_port}',
        )
        self._say("info", f"Writing log files to directory : {app.logs_dir}")

    async def _wait_for_sidecar(self, running: _Running, timeout: float = 90.0) -> None:
        # Outbound health: the sidecar serves its APIs; it does not wait for the app.
        url = f"http://127.0.0.1:{running.app.http_port}/v1.0/healthz/outbound"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if running.sidecar is None or running.sidecar.returncode is not None:
                raise DevSidecarError(
                    f"the sidecar of app {running.app.app_id!r} exited"
                    + (f"; its log: {running.sidecar_log.path}" if running.sidecar_log.path else "")
                )
            if await asyncio.to_thread(_answers, url):
                return
            await asyncio.sleep(0.1)
        raise DevSidecarError(
            f"the sidecar of app {running.app.app_id!r} did not become healthy within {timeout:.0f} s"
        )

    async def _pump(
        self, process: asyncio.subprocess.Process, writer: _Writer, prefix: str | None, stderr: bool = False
    ) -> None:
        stream = process.stderr if stderr else process.stdout
        if stream is None:
            return
        while True:
            line = await stream.readline()
            if not line:
                return
            text = line.decode(errors="replace").rstrip("\r\n")
            writer.line(prefix + text if prefix is not None else text)

    async def _watch_app(self, running: _Running) -> None:
        assert running.process is not None
        code = await running.process.wait()
        if running.stopping:
            return
        if code == 0:
            running.app_log.status("success", "Exited App successfully")
        else:
            running.failed = True
            running.app_log.status("failure", f"The App process exited with error code: {_exit_text(code)}")

    async def _watch_sidecar(self, running: _Running) -> None:
        assert running.sidecar is not None
        code = await running.sidecar.wait()
        if code != 0 and not running.stopping:
            running.failed = True
            running.sidecar_log.status(
                "failure", f"The daprd process exited with error code: {_exit_text(code)}"
            )

    async def _stop(self, running: _Running) -> bool:
        running.sidecar_log.status("info", "\ntermination signal received: shutting down")
        if running.process is not None and running.app_log.console is not running.sidecar_log.console:
            running.app_log.status("info", "\ntermination signal received: shutting down")
        running.stopping = True
        process = running.process
        if process is not None and process.returncode is None:
            await _stop_group(process)
            running.app_log.status("success", "Exited App successfully")
        elif process is not None and running.failed:
            running.app_log.status("failure", f"Error exiting App: {_exit_text(process.returncode or 0)}")
        sidecar = running.sidecar
        if sidecar is not None and sidecar.returncode is None:
            await _stop_group(sidecar, grace=15.0)
            running.sidecar_log.status("success", "Exited Dapr successfully")
        for task in running.tasks:
            with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(task), 2)
            task.cancel()
        if running.written_config is not None:
            running.written_config.unlink(missing_ok=True)
        running.sidecar_log.close()
        running.app_log.close()
        return running.failed


def _answers(url: str) -> bool:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=2) as answer:
            return 200 <= answer.status < 300
    except (urllib.error.URLError, OSError):
        return False


async def _stop_group(process: asyncio.subprocess.Process, grace: float = 5.0) -> None:
    """SIGTERM to the process group, SIGKILL after ``grace`` seconds (the CLI's killProcessGroup)."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        with contextlib.suppress(ProcessLookupError):
            process.terminate()
    try:
        await asyncio.wait_for(process.wait(), grace)
    except asyncio.TimeoutError:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        await process.wait()


async def run_file(
    path: str | os.PathLike[str],
    runtime: str,
    env: Mapping[str, str] | None = None,
    *,
    enable_mtls: bool = False,
) -> int:
    """Run every app of the run file until SIGINT/SIGTERM; the exit code of ``dapr run -f``."""
    try:
        apps = load_run_file(path)
    except DevSidecarError as exc:
        print(f"{_MARKS['failure']}Error getting apps from config file: {exc}", flush=True)
        return 1
    runner = RunFileRunner(apps, runtime, enable_mtls=enable_mtls)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        return await runner.run(stop)
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
