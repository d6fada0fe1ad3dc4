"""``dapr-devsidecar``: a command line mirroring ``dapr run``.

``dapr-devsidecar run --app-id A --resources-path components -- python app.py`` starts the
sidecar, then the app with the environment ``dapr run`` gives it (``APP_ID``,
``DAPR_GRPC_PORT``, ``DAPR_HTTP_PORT``, ...), passes the app's output through, stops both on
Ctrl-C or SIGTERM and exits with the app's exit code. Without a command it runs the sidecar
alone until stopped (on the SDK's default ports 50001/3500 unless told otherwise).
``dapr-devsidecar run -f dapr.yaml`` runs every app of a ``dapr run -f`` run file, each with its
sidecar (see :mod:`._runfile`). ``dapr-devsidecar llm --script replies.yaml`` serves the scripted
OpenAI-compatible chat API.

``--runtime daprd`` (or ``DAPR_DEVSIDECAR_RUNTIME=daprd``) runs the same command on Dapr's real
runtime instead: a daprd from ``~/.dapr/bin`` for the app, against the machine's placement and
scheduler (started on first use and left running, as ``dapr init`` leaves them; ``dapr-devsidecar
uninit`` stops them). It is ``dapr run`` for machines without the Dapr CLI.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Sequence

from ._app_channel import AppHealthCheck
from ._errors import DevSidecarError
from ._sidecar import DevSidecar

_log = logging.getLogger("dapr_agents.ext.devsidecar")

#: Environment variable choosing the runtime of ``dapr-devsidecar run``: ``dev`` or ``daprd``.
RUNTIME_ENV = "DAPR_DEVSIDECAR_RUNTIME"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dapr-devsidecar",
        description="A Dapr-compatible sidecar for development and tests (no Docker, no dapr init).",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser(
        "run",
        help="run the sidecar, and an app after '--' (like 'dapr run')",
        usage="dapr-devsidecar run --app-id ID [--resources-path DIR ...] [options] [-- command ...]\n"
        "       dapr-devsidecar run -f dapr.yaml [--runtime daprd]",
    )
    run.add_argument("--app-id", "-a", help="the app id (keys are prefixed with it); required without -f")
    run.add_argument(
        "--run-file",
        "-f",
        default=None,
        help="run every app of a 'dapr run -f' run file (or a folder with dapr.yaml), each with its sidecar",
    )
    run.add_argument(
        "--resources-path",
        "-d",
        action="append",
        default=[],
        help="folder (or file) of component YAML; repeatable",
    )
    run.add_argument(
        "--dapr-grpc-port",
        "-G",
        type=int,
        default=None,
        help="gRPC port (default: free port; 50001 without an app)",
    )
    run.add_argument(
        "--dapr-http-port",
        "-H",
        type=int,
        default=None,
        help="HTTP port (default: free port; 3500 without an app)",
    )
    run.add_argument(
        "--dapr-listen-addresses",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1; use 0.0.0.0 only on a trusted network)",
    )
    run.add_argument("--log-level", default="info", choices=["debug", "info", "warn", "error"])
    run.add_argument(
        "--runtime",
        choices=["dev", "daprd"],
        default=os.environ.get(RUNTIME_ENV) or "dev",
        help=f"dev: this package's sidecar (default); daprd: Dapr's real runtime from ~/.dapr/bin "
        f"(default from {RUNTIME_ENV})",
    )
    run.add_argument(
        "--app-port", "-p", type=int, default=None, help="the port the app listens on (its app channel)"
    )
    run.add_argument(
        "--app-protocol",
        "-P",
        default="http",
        choices=["http", "grpc", "https", "grpcs", "h2c"],
        help="how the sidecar calls the app: http (default) or grpc; https, grpcs, h2c with --runtime daprd",
    )
    run.add_argument(
        "--app-channel-address",
        default="127.0.0.1",
        help="the address the app listens on (default 127.0.0.1)",
    )
    run.add_argument(
        "--enable-app-health-check",
        action="store_true",
        help="probe the app's health (HTTP: GET --app-health-check-path; gRPC: AppCallbackHealthCheck)",
    )
    run.add_argument(
        "--app-health-check-path", default="/healthz", help="HTTP path of health probes (/healthz)"
    )
    run.add_argument(
        "--app-health-probe-interval", type=int, default=5, help="seconds between health probes (5)"
    )
    run.add_argument(
        "--app-health-probe-timeout", type=int, default=500, help="milliseconds a health probe may take (500)"
    )
    run.add_argument(
        "--app-health-threshold", type=int, default=3, help="failed probes before the app is unhealthy (3)"
    )
    run.add_argument(
        "--dapr-internal-grpc-port",
        "-I",
        type=int,
        default=None,
        help="port other sidecars call this one on (default: a free port)",
    )
    run.add_argument(
        "--config",
        "-c",
        default=None,
        help="a Dapr Configuration YAML file (the dev sidecar: its secret scopes)",
    )
    run.add_argument(
        "--enable-mtls",
        action="store_true",
        default=os.environ.get("DAPR_DEVSIDECAR_ENABLE_MTLS", "").lower() in {"1", "true"},
        help="daprd's --enable-mtls: sidecars know who calls them, so the Configuration's "
        "accessControl policies apply (with --runtime daprd: sentry is started too)",
    )
    run.add_argument("app_command", nargs=argparse.REMAINDER, help="the app to run, after '--'")

    commands.add_parser(
        "uninit",
        help="stop the placement, scheduler (and sentry) that '--runtime daprd' started (like 'dapr uninit')",
    )

    commands.add_parser(
        "llm", help="serve the scripted OpenAI-compatible chat-completions API (see 'llm --help')"
    )
    return parser


class _Daprd:
    """daprd for one app, with the start/stop/env surface the run loop uses for DevSidecar."""

    def __init__(self, args: argparse.Namespace, grpc_port: int, http_port: int) -> None:
        from ._daprd import DaprdProcess, shared_control_plane
        from ._nameresolution import daprd_configuration

        control_plane = shared_control_plane(mtls=args.enable_mtls)
        # Without a resolver of the user's, the daprds of one home find each other through
        # nameresolution.sqlite there (mDNS is daprd's default, but not every machine has it).
        config, self._written_config = daprd_configuration(args.config, control_plane.workdir, args.app_id)
        self._config = config
        self._process = DaprdProcess(
            args.app_id,
            control_plane,
            args.resources_path,
            config=config,
            app_port=args.app_port,
            app_protocol=args.app_protocol,
            grpc_port=grpc_port,
            http_port=http_port,
            api_token=os.environ.get("DAPR_API_TOKEN") or None,
            app_api_token=os.environ.get("APP_API_TOKEN") or None,
            log_level=args.log_level,
            log_dir=control_plane.workdir / "logs",
            extra_args=_daprd_app_args(args),
            app_health_check=_health_check(args),
            # As 'dapr run': daprd announces 127.0.0.1 (name resolution, Forwarded headers).
            env={"DAPR_HOST_IP": os.environ.get("DAPR_HOST_IP") or "127.0.0.1"},
        )
        self.app_id = args.app_id

    async def start_async(self) -> None:
        try:
            await asyncio.to_thread(self._process.start)
        except BaseException:
            if self._written_config and self._config is not None:
                self._config.unlink(missing_ok=True)
            raise

    async def stop_async(self) -> None:
        await asyncio.to_thread(self._process.stop)
        if self._written_config and self._config is not None:
            self._config.unlink(missing_ok=True)

    def client_env(self) -> dict[str, str]:
        from .testing import SidecarEndpoint

        endpoint = SidecarEndpoint(
            self._process.grpc_port,
            self._process.http_port,
            api_token=self._process.api_token,
            app_id=self.app_id,
        )
        return endpoint.env()

    def describe(self) -> str:
        return (
            f"daprd: app {self.app_id!r} on gRPC 127.0.0.1:{self._process.grpc_port} and HTTP "
            f"http://127.0.0.1:{self._process.http_port}; log {self._process.log}"
        )


def _daprd_app_args(args: argparse.Namespace) -> list[str]:
    extra = []
    if args.app_channel_address != "127.0.0.1":
        extra += ["--app-channel-address", args.app_channel_address]
    if args.dapr_internal_grpc_port is not None:
        extra += ["--dapr-internal-grpc-port", str(args.dapr_internal_grpc_port)]
    return extra


def _health_check(args: argparse.Namespace) -> bool | AppHealthCheck:
    if not args.enable_app_health_check:
        return False
    return AppHealthCheck(
        path=args.app_health_check_path,
        interval=float(args.app_health_probe_interval),
        timeout=args.app_health_probe_timeout / 1000,
        threshold=args.app_health_threshold,
    )


def _app_env(args: argparse.Namespace) -> dict[str, str]:
    """What 'dapr run' adds for an app with a port: APP_PORT, APP_PROTOCOL, APP_CHANNEL_ADDRESS."""
    env = {}
    if args.app_port:
        env["APP_PORT"] = str(args.app_port)
        env["APP_PROTOCOL"] = args.app_protocol
    if args.app_channel_address != "127.0.0.1":
        env["APP_CHANNEL_ADDRESS"] = args.app_channel_address
    return env


def _dev_sidecar(args: argparse.Namespace, grpc_port: int, http_port: int) -> DevSidecar:
    if args.app_protocol not in {"http", "grpc"}:
        raise DevSidecarError(
            f"--app-protocol {args.app_protocol} is not supported by the dev sidecar (http or grpc); "
            "use --runtime daprd"
        )
    try:
        return DevSidecar(
            app_id=args.app_id,
            resources_paths=args.resources_path,
            grpc_port=grpc_port,
            http_port=http_port,
            host=args.dapr_listen_addresses,
            app_port=args.app_port,
            app_protocol=args.app_protocol,
            app_channel_address=args.app_channel_address,
            app_health_check=_health_check(args),
            internal_grpc_port=args.dapr_internal_grpc_port or 0,
            config=args.config,
            enable_mtls=args.enable_mtls,
        )
    except ValueError as exc:
        raise DevSidecarError(str(exc)) from exc


async def _run(args: argparse.Namespace) -> int:
    if args.run_file:
        from ._runfile import run_file

        return await run_file(args.run_file, args.runtime, enable_mtls=args.enable_mtls)
    command = list(args.app_command)
    if command and command[0] == "--":
        command = command[1:]
    default_grpc, default_http = (0, 0) if command else (50001, 3500)
    grpc_port = args.dapr_grpc_port if args.dapr_grpc_port is not None else default_grpc
    http_port = args.dapr_http_port if args.dapr_http_port is not None else default_http
    sidecar: DevSidecar | _Daprd
    if args.runtime == "daprd":
        sidecar = _Daprd(args, grpc_port, http_port)
        await sidecar.start_async()
        description = sidecar.describe()
    else:
        sidecar = _dev_sidecar(args, grpc_port, http_port)
        await sidecar.start_async()
        components = ", ".join(c.name for c in sidecar.components) or "none"
        app = (
            f"; app channel {args.app_protocol}://{args.app_channel_address}:{args.app_port}"
            if args.app_port
            else ""
        )
        description = (
            f"dev sidecar: app {sidecar.app_id!r} on gRPC {sidecar.grpc_address} and HTTP "
            f"{sidecar.http_endpoint}{app}; components: {components}"
        )
    print(description, file=sys.stderr, flush=True)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    received: list[int] = []

    def on_signal(signum: int) -> None:
        received.append(signum)
        stop.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, on_signal, signum)
    exit_code = 0
    try:
        if not command:
            await stop.wait()
            return 0
        env = {**os.environ, **sidecar.client_env(), **_app_env(args)}
        child = await asyncio.create_subprocess_exec(*command, env=env)
        waiter = asyncio.ensure_future(child.wait())
        stopper = asyncio.ensure_future(stop.wait())
        await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
        if not waiter.done():
            child.send_signal(received[-1] if received else signal.SIGTERM)
            try:
                await asyncio.wait_for(asyncio.shield(waiter), 10)
            except asyncio.TimeoutError:
                child.kill()
                await waiter
        stopper.cancel()
        exit_code = waiter.result()
        if exit_code < 0:  # killed by a signal: the shell convention
            exit_code = 128 - exit_code
        runtime = "daprd" if args.runtime == "daprd" else "dev sidecar"
        print(f"{runtime}: app exited with code {exit_code}", file=sys.stderr, flush=True)
        return exit_code
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
        await sidecar.stop_async()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``dapr-devsidecar`` command."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "llm":
        from ._scripted_llm import main as llm_main

        return llm_main(argv[1:])
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "run" and not args.app_id and not args.run_file:
        parser.error("the following arguments are required: --app-id (or -f with a run file)")
    if args.command == "uninit":
        from ._daprd import stop_shared_control_plane

        stopped = stop_shared_control_plane()
        print(
            "placement and scheduler stopped (and sentry, if --enable-mtls had started it)"
            if stopped
            else "no placement or scheduler was running"
        )
        return 0
    logging.basicConfig(
        level={"warn": logging.WARNING}.get(args.log_level, getattr(logging, args.log_level.upper())),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        return asyncio.run(_run(args))
    except DevSidecarError as exc:
        print(f"dapr-devsidecar: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"dapr-devsidecar: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
