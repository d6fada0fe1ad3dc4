"""The real Dapr runtime, self-hosted: placement, scheduler and one daprd per app.

This is what ``dapr run`` does on a developer machine after ``dapr init --slim``, reduced to the
processes: the binaries are looked up where ``dapr init`` installs them (``~/.dapr/bin``, or
``DAPR_INSTALL_DIR``); this repository builds them from Dapr's Go modules (``nox -s daprd``).
Every port is a free loopback port, so several stacks run side by side (one per test worker).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._app_channel import AppHealthCheck
from ._errors import DevSidecarError

if TYPE_CHECKING:
    from .testing import SidecarEndpoint

BINARIES = ("daprd", "placement", "scheduler")
#: Needed only for mTLS (``DaprControlPlane(mtls=True)``): Dapr's certificate authority.
SENTRY = "sentry"

#: What sentry reads as its Configuration in self-hosted mode (it refuses to start without one).
_SENTRY_CONFIG = """\
apiVersion: dapr.io/v1alpha1
kind: Configuration
metadata:
  name: daprsystem
spec:
  mtls:
    enabled: true
"""


def daprd_bin_dir() -> Path:
    """Where the Dapr runtime binaries are: ``DAPR_INSTALL_DIR`` or ``~/.dapr/bin``."""
    return Path(os.environ.get("DAPR_INSTALL_DIR") or Path.home() / ".dapr" / "bin")


def _binary(name: str, bin_dir: Path | None) -> str:
    path = (bin_dir or daprd_bin_dir()) / name
    if not path.is_file():
        raise DevSidecarError(
            f"{path} does not exist: build Dapr's runtime with 'python3 -m nox -s daprd' "
            "(or 'dapr init --slim'), or set DAPR_INSTALL_DIR to the folder that holds it"
        )
    return str(path)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_http_ok(url: str, process: subprocess.Popen[bytes], what: str, timeout: float, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise DevSidecarError(f"{what} exited with code {process.returncode}; its log:\n{_tail(log)}")
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                if 200 <= answer.status < 300:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.1)
    raise DevSidecarError(f"{what} was not healthy at {url} within {timeout:.0f} s; its log:\n{_tail(log)}")


def _tail(log: Path, lines: int = 30) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _die_with_parent() -> None:
    """In the child, before exec: ask Linux for SIGKILL when the parent goes (PR_SET_PDEATHSIG)."""
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG


@dataclass
class _Process:
    """One runtime process with its log file; SIGKILL-able like a crash."""

    name: str
    command: list[str]
    log: Path
    env: dict[str, str] = field(default_factory=dict)
    popen: subprocess.Popen[bytes] | None = None
    #: False: the process gets SIGKILL when the thread that started it dies (Linux), so a test
    #: run or a command that is itself killed leaves no daprd, placement or scheduler behind.
    outlives_parent: bool = False

    def start(self) -> subprocess.Popen[bytes]:
        out = open(self.log, "ab")  # noqa: SIM115 - the child has its own copy; ours is closed below
        self.popen = subprocess.Popen(
            self.command,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **self.env},
            start_new_session=True,  # Ctrl-C in a terminal reaches the app, not the runtime
            preexec_fn=None if self.outlives_parent else _die_with_parent,
        )
        out.close()
        return self.popen

    @property
    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def kill(self) -> None:
        if self.running:
            assert self.popen is not None
            self.popen.send_signal(signal.SIGKILL)
            self.popen.wait()

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM and wait (SIGKILL after ``timeout``); returns the exit code."""
        if self.popen is None:
            return None
        if self.running:
            self.popen.terminate()
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.popen.returncode


class DaprControlPlane:
    """Dapr's placement and scheduler services on free loopback ports.

    Placement keeps its raft log in memory; scheduler keeps its embedded etcd in ``workdir``
    (so a restarted scheduler keeps its jobs and workflow reminders).

    With ``mtls=True`` it also runs sentry, Dapr's certificate authority, as self-hosted Dapr
    runs it: sentry generates its root and issuer certificates into ``workdir/sentry-certs`` (and
    reuses them on the next start), placement and scheduler serve mTLS with certificates from it,
    and every :class:`DaprdProcess` against this control plane gets ``--enable-mtls``,
    ``--sentry-address`` and the root certificate as ``DAPR_TRUST_ANCHORS``. daprds then call
    each other over mTLS, each identified by the SPIFFE id of its certificate
    (``spiffe://public/ns/<NAMESPACE>/<app id>``), which is what access control lists match.
    A daprd without mTLS cannot use an mTLS control plane, nor the reverse.
    """

    def __init__(
        self,
        workdir: str | os.PathLike[str] | None = None,
        *,
        bin_dir: Path | None = None,
        placement_port: int = 0,
        scheduler_port: int = 0,
        detached: bool = False,
        mtls: bool = False,
        sentry_port: int = 0,
    ) -> None:
        self._owned_dir = None if workdir else tempfile.TemporaryDirectory(prefix="dapr-control-plane-")
        self._detached = detached  # True: the processes outlive this one (the shared control plane)
        self.workdir = Path(workdir) if workdir else Path(self._owned_dir.name)  # type: ignore[union-attr]
        self._bin_dir = bin_dir
        self.placement_port = placement_port or _free_port()
        self.scheduler_port = scheduler_port or _free_port()
        self.mtls = mtls
        self.sentry_port = (sentry_port or _free_port()) if mtls else 0
        self.health_ports: dict[str, int] = {}
        self._placement: _Process | None = None
        self._scheduler: _Process | None = None
        self._sentry: _Process | None = None

    @property
    def placement_address(self) -> str:
        return f"127.0.0.1:{self.placement_port}"

    @property
    def scheduler_address(self) -> str:
        return f"127.0.0.1:{self.scheduler_port}"

    @property
    def sentry_address(self) -> str | None:
        return f"127.0.0.1:{self.sentry_port}" if self.mtls else None

    @property
    def trust_anchors_file(self) -> Path | None:
        """sentry's root certificate (PEM), once sentry has started."""
        return self.workdir / "sentry-certs" / "ca.crt" if self.mtls else None

    def _control_plane_env(self) -> dict[str, str]:
        # With mTLS each service's certificate names its namespace, and daprd expects the control
        # plane's in "default" (--control-plane-namespace): not the NAMESPACE of whoever started it.
        return {"NAMESPACE": "default"} if self.mtls else {}

    def _start_sentry(self, timeout: float) -> list[str]:
        """Start sentry and wait for it; returns the flags placement and scheduler need."""
        certs = self.workdir / "sentry-certs"
        certs.mkdir(parents=True, exist_ok=True)
        config = self.workdir / "sentry-config.yaml"
        config.write_text(_SENTRY_CONFIG)
        health = _free_port()
        self._sentry = _Process(
            "sentry",
            [
                _binary(SENTRY, self._bin_dir),
                "--port", str(self.sentry_port),
                "--listen-address", "127.0.0.1",
                "--healthz-port", str(health),
                "--healthz-listen-address", "127.0.0.1",
                "--issuer-credentials", str(certs),
                "--config", str(config),
                "--enable-metrics=false",
                "--log-level", "warn",
            ],
            self.workdir / "sentry.log",
            self._control_plane_env(),
            outlives_parent=self._detached,
        )  # fmt: skip
        self.health_ports["sentry"] = health
        sentry = self._sentry.start()
        _wait_http_ok(f"http://127.0.0.1:{health}/healthz", sentry, "sentry", timeout, self._sentry.log)
        return [
            "--tls-enabled",
            "--trust-anchors-file", str(certs / "ca.crt"),
            "--sentry-address", f"127.0.0.1:{self.sentry_port}",
        ]  # fmt: skip

    def start(self, timeout: float = 60.0) -> DaprControlPlane:
        self.workdir.mkdir(parents=True, exist_ok=True)
        tls_flags: list[str] = []
        if self.mtls:
            try:
                tls_flags = self._start_sentry(timeout)
            except BaseException:
                self.stop()
                raise
        placement_health, raft = _free_port(), _free_port()
        self._placement = _Process(
            "placement",
            [
                _binary("placement", self._bin_dir),
                "--port", str(self.placement_port),
                "--listen-address", "127.0.0.1",
                "--healthz-port", str(placement_health),
                "--healthz-listen-address", "127.0.0.1",
                "--initial-cluster", f"dapr-placement-0=127.0.0.1:{raft}",
                "--enable-metrics=false",
                "--log-level", "warn",
                *tls_flags,
            ],
            self.workdir / "placement.log",
            self._control_plane_env(),
            outlives_parent=self._detached,
        )  # fmt: skip
        scheduler_health, etcd_client, etcd_peer = _free_port(), _free_port(), _free_port()
        self._scheduler = _Process(
            "scheduler",
            [
                _binary("scheduler", self._bin_dir),
                "--port", str(self.scheduler_port),
                "--listen-address", "127.0.0.1",
                "--healthz-port", str(scheduler_health),
                "--healthz-listen-address", "127.0.0.1",
                "--etcd-data-dir", str(self.workdir / "scheduler-etcd"),
                "--etcd-client-port", str(etcd_client),
                "--etcd-client-listen-address", "127.0.0.1",
                "--etcd-initial-cluster", f"dapr-scheduler-server-0=http://127.0.0.1:{etcd_peer}",
                "--identity-directory-write", str(self.workdir / "scheduler-identity"),
                "--enable-metrics=false",
                "--log-level", "warn",
                *tls_flags,
            ],
            self.workdir / "scheduler.log",
            self._control_plane_env(),
            outlives_parent=self._detached,
        )  # fmt: skip
        self.health_ports.update({"placement": placement_health, "scheduler": scheduler_health})
        placement = self._placement.start()
        scheduler = self._scheduler.start()
        try:
            _wait_http_ok(
                f"http://127.0.0.1:{placement_health}/healthz",
                placement,
                "placement",
                timeout,
                self._placement.log,
            )
            _wait_http_ok(
                f"http://127.0.0.1:{scheduler_health}/healthz",
                scheduler,
                "scheduler",
                timeout,
                self._scheduler.log,
            )
        except BaseException:
            self.stop()
            raise
        return self

    @property
    def pids(self) -> dict[str, int]:
        return {
            process.name: process.popen.pid
            for process in (self._placement, self._scheduler, self._sentry)
            if process is not None and process.popen is not None
        }

    def stop(self) -> None:
        for process in (self._scheduler, self._placement, self._sentry):
            if process is not None:
                process.stop()
        if self._owned_dir is not None:
            self._owned_dir.cleanup()
            self._owned_dir = None

    def __enter__(self) -> DaprControlPlane:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class DaprdProcess:
    """One daprd for one app, self-hosted against a :class:`DaprControlPlane`.

    ``start()`` returns once ``/v1.0/healthz/outbound`` answers: the components are loaded and
    the APIs serve, whether or not the app is up yet (the SDK's own readiness check; start the
    app after it). ``kill()`` is a SIGKILL, as in a crash.
    """

    def __init__(
        self,
        app_id: str,
        control_plane: DaprControlPlane | ControlPlaneAddresses,
        resources_paths: Sequence[str | os.PathLike[str]] = (),
        *,
        config: str | os.PathLike[str] | None = None,
        app_port: int | None = None,
        app_protocol: str = "http",
        grpc_port: int = 0,
        http_port: int = 0,
        api_token: str | None = None,
        app_api_token: str | None = None,
        log_dir: str | os.PathLike[str] | None = None,
        log_level: str = "info",
        extra_args: Sequence[str] = (),
        bin_dir: Path | None = None,
        env: Mapping[str, str] | None = None,
        app_health_check: bool | AppHealthCheck = False,
    ) -> None:
        self.app_id = app_id
        self.env = dict(env or {})
        self.control_plane = control_plane
        self.resources_paths = [str(path) for path in resources_paths]
        self.config = str(config) if config else None
        self.app_port = app_port
        self.app_protocol = app_protocol
        self.grpc_port = grpc_port or _free_port()
        self.http_port = http_port or _free_port()
        self.api_token = api_token or None
        self.app_api_token = app_api_token or None
        self.log_dir = Path(log_dir) if log_dir else control_plane.workdir
        self.log_level = log_level
        self.extra_args = list(extra_args)
        self.app_health_check = AppHealthCheck() if app_health_check is True else (app_health_check or None)
        self._bin_dir = bin_dir
        self._process: _Process | None = None

    @property
    def log(self) -> Path:
        return self.log_dir / f"daprd-{self.app_id}-{self.grpc_port}.log"

    @property
    def endpoint(self) -> SidecarEndpoint:
        """Where this daprd listens; ``endpoint.sdk_configured()`` points the SDK at it."""
        from .testing import SidecarEndpoint

        return SidecarEndpoint(self.grpc_port, self.http_port, api_token=self.api_token, app_id=self.app_id)

    @property
    def pid(self) -> int:
        if self._process is None or self._process.popen is None:
            raise RuntimeError("daprd is not running")
        return self._process.popen.pid

    def command(self) -> list[str]:
        command = [
            _binary("daprd", self._bin_dir),
            "--app-id", self.app_id,
            "--mode", "standalone",
            "--dapr-grpc-port", str(self.grpc_port),
            "--dapr-http-port", str(self.http_port),
            "--dapr-internal-grpc-port", str(_free_port()),
            "--dapr-listen-addresses", "127.0.0.1",
            "--placement-host-address", self.control_plane.placement_address,
            "--scheduler-host-address", self.control_plane.scheduler_address,
            "--enable-metrics=false",
            "--log-level", self.log_level,
        ]  # fmt: skip
        for path in self.resources_paths:
            command += ["--resources-path", path]
        if self.config:
            command += ["--config", self.config]
        if self.app_port:
            command += ["--app-port", str(self.app_port), "--app-protocol", self.app_protocol]
        sentry = getattr(self.control_plane, "sentry_address", None)
        if sentry:
            command += ["--enable-mtls", "--sentry-address", sentry]
        check = self.app_health_check
        if check is not None:
            command += [
                "--enable-app-health-check",
                "--app-health-check-path", check.path,
                "--app-health-probe-interval", str(max(1, round(check.interval))),
                "--app-health-probe-timeout", str(round(check.timeout * 1000)),
                "--app-health-threshold", str(check.threshold),
            ]  # fmt: skip
        return command + self.extra_args

    def mtls_env(self) -> dict[str, str]:
        """With an mTLS control plane: sentry's root certificate as ``DAPR_TRUST_ANCHORS``."""
        anchors = getattr(self.control_plane, "trust_anchors_file", None)
        return {"DAPR_TRUST_ANCHORS": anchors.read_text()} if anchors is not None else {}

    def start(self, timeout: float = 60.0) -> DaprdProcess:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        env = {
            **self.env,
            **self.mtls_env(),
            "DAPR_API_TOKEN": self.api_token or "",
            "APP_API_TOKEN": self.app_api_token or "",
        }
        self._process = _Process("daprd", self.command(), self.log, env)
        popen = self._process.start()
        try:
            _wait_http_ok(
                f"http://127.0.0.1:{self.http_port}/v1.0/healthz/outbound",
                popen,
                f"daprd (app {self.app_id!r})",
                timeout,
                self.log,
            )
        except BaseException:
            self._process.kill()
            raise
        return self

    def kill(self) -> None:
        """SIGKILL: no graceful shutdown, as in a crash."""
        if self._process is not None:
            self._process.kill()

    def stop(self) -> int | None:
        """SIGTERM (daprd shuts down gracefully) and wait; returns the exit code."""
        return self._process.stop() if self._process is not None else None

    def __enter__(self) -> DaprdProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass(frozen=True)
class ControlPlaneAddresses:
    """Where a running placement and scheduler listen."""

    placement_address: str
    scheduler_address: str
    workdir: Path
    #: With mTLS: sentry's address and root certificate.
    sentry_address: str | None = None
    trust_anchors_file: Path | None = None


#: Environment variable naming the folder of the shared control plane (default ~/.dapr/devsidecar).
HOME_ENV = "DAPR_DEVSIDECAR_HOME"


def _home(home: Path | None) -> Path:
    return home or Path(os.environ.get(HOME_ENV) or daprd_bin_dir().parent / "devsidecar")


def _healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as answer:
            return 200 <= answer.status < 300
    except (urllib.error.URLError, OSError):
        return False


def shared_control_plane(home: Path | None = None, *, mtls: bool = False) -> ControlPlaneAddresses:
    """The machine's placement and scheduler, started once and then shared, as ``dapr init``
    leaves them running: every app of every ``dapr-devsidecar run --runtime daprd`` uses them,
    and scheduler's data (jobs, workflow reminders) survives app and daprd restarts.

    They live in ``~/.dapr/devsidecar`` (or ``DAPR_DEVSIDECAR_HOME``: state file
    ``control-plane.json``, logs, etcd data) until ``dapr-devsidecar uninit`` stops them. Tests
    that need their own (two runs of one app id at once would be replicas of one app) set
    ``DAPR_DEVSIDECAR_HOME`` to a folder of their own. With ``mtls`` it is a second control
    plane, with sentry, in its ``mtls`` subfolder (an mTLS daprd cannot use the plain one).
    """
    import fcntl
    import json

    home = _home(home) / "mtls" if mtls else _home(home)
    home.mkdir(parents=True, exist_ok=True)
    record = home / "control-plane.json"
    with open(home / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one starter at a time; the others reuse what it started
        if record.is_file():
            known = json.loads(record.read_text())
            if all(_healthy(port) for port in known["health_ports"].values()):
                return _addresses(known, home)
            _stop_pids(known.get("pids", {}))
        control_plane = DaprControlPlane(home, detached=True, mtls=mtls)
        control_plane.start()  # its processes outlive this one, in their own sessions
        known = {
            "placement_port": control_plane.placement_port,
            "scheduler_port": control_plane.scheduler_port,
            "sentry_port": control_plane.sentry_port,
            "health_ports": control_plane.health_ports,
            "pids": control_plane.pids,
        }
        record.write_text(json.dumps(known))
        return _addresses(known, home)


def _addresses(known: dict[str, Any], home: Path) -> ControlPlaneAddresses:
    sentry = known.get("sentry_port") or 0
    return ControlPlaneAddresses(
        f"127.0.0.1:{known['placement_port']}",
        f"127.0.0.1:{known['scheduler_port']}",
        home,
        sentry_address=f"127.0.0.1:{sentry}" if sentry else None,
        trust_anchors_file=home / "sentry-certs" / "ca.crt" if sentry else None,
    )


def stop_shared_control_plane(home: Path | None = None) -> bool:
    """Stop what :func:`shared_control_plane` started (both, with and without mTLS); False if
    nothing was running."""
    import json

    stopped = False
    for folder in (_home(home), _home(home) / "mtls"):
        record = folder / "control-plane.json"
        if not record.is_file():
            continue
        known = json.loads(record.read_text())
        record.unlink()
        stopped = _stop_pids(known.get("pids", {})) or stopped
    return stopped


def _stop_pids(pids: dict[str, int]) -> bool:
    stopped = False
    for name, pid in pids.items():
        try:  # a recorded pid may since belong to another program: check before signalling
            if name not in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0", 1)[0].decode(
                errors="replace"
            ):
                continue
        except OSError:
            continue
        try:
            os.kill(pid, signal.SIGTERM)
            stopped = True
        except (ProcessLookupError, PermissionError):
            continue
    return stopped


def daprd_available(bin_dir: Path | None = None) -> bool:
    """True when daprd, placement and scheduler are all installed."""
    folder = bin_dir or daprd_bin_dir()
    return all((folder / name).is_file() or shutil.which(str(folder / name)) for name in BINARIES)
