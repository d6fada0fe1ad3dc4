"""Build Dapr's runtime (daprd, placement, scheduler, sentry) from Dapr's own Go modules.

    python3 .ci/daprd/build.py [--install-dir DIR] [--force]

Everything comes from the Go module proxy through the ordinary ``go`` command; nothing is
committed but this folder's small module. The binaries land where ``dapr init --slim`` puts them
(``~/.dapr/bin``), so the Dapr CLI's conventions hold. A stamp next to them records what they were
built from: a second run with the same inputs only prints their versions. Go's own build cache
makes a rebuild after a change cheap.

The Dapr version is the one ``go.mod`` requires. ``daprd`` is this folder's ``main.go`` (Dapr's
``cmd/daprd/app`` with the components listed in ``components.go``); ``placement``, ``scheduler``
and ``sentry`` (the certificate authority daprd's mTLS needs) are Dapr's own commands, unchanged.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SOURCE = HERE / ".dapr-src"
MODULE = "github.com/dapr/dapr"
BINARIES = {
    "daprd": ".",
    "placement": f"{MODULE}/cmd/placement",
    "scheduler": f"{MODULE}/cmd/scheduler",
    "sentry": f"{MODULE}/cmd/sentry",
}
STAMP = ".dapr-agents-ext-build"
# The one file of Dapr's source that changes: without the build tag "allcomponents" or
# "stablecomponents" it panics at start; here it is only the package clause (see main.go).
NO_TAG_FILE = Path("cmd/daprd/components/zz_notag.go")
NO_TAG_TEXT = (
    "// Emptied by .ci/daprd/build.py: main.go registers the components instead.\n\npackage components\n"
)


def dapr_version() -> str:
    match = re.search(rf"^\s*(?:require\s+)?{re.escape(MODULE)} (v\S+)$", (HERE / "go.mod").read_text(), re.M)
    if not match:
        raise SystemExit(f"{HERE / 'go.mod'} must require {MODULE}")
    return match.group(1)


def _module_path() -> str:
    return (HERE / "go.mod").read_text().split("\n", 1)[0].removeprefix("module ").strip()


def default_install_dir() -> Path:
    return Path(os.environ.get("DAPR_INSTALL_DIR") or Path.home() / ".dapr" / "bin")


def _inputs_digest(version: str) -> str:
    digest = hashlib.sha256(version.encode())
    for path in [*sorted(HERE.glob("*.go")), HERE / "go.mod", HERE / "go.sum"]:
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def _go(*args: str, capture: bool = False) -> str:
    env = {**os.environ, "CGO_ENABLED": "0"}
    result = subprocess.run(["go", *args], cwd=HERE, env=env, check=True, text=True, capture_output=capture)
    return result.stdout if capture else ""


def _module_info(version: str) -> dict[str, Any]:
    info = json.loads(_go("mod", "download", "-json", f"{MODULE}@{version}", capture=True))
    if info.get("Error"):
        raise SystemExit(f"the Go module proxy did not serve {MODULE}@{version}: {info['Error']}")
    return dict(info)


def _prepare_source(version: str) -> None:
    """Copy Dapr's module from the module cache (read-only there) into .dapr-src, NO_TAG_FILE emptied."""
    marker = SOURCE / ".version"
    if marker.is_file() and marker.read_text() == version:
        return
    info = _module_info(version)
    shutil.rmtree(SOURCE, ignore_errors=True)
    origin = Path(info["Dir"])

    def ignore(folder: str, names: list[str]) -> list[str]:
        unused = {"tests", "docs", "docker"} if Path(folder) == origin else set()
        return [name for name in names if name in unused]

    shutil.copytree(origin, SOURCE, ignore=ignore)
    for folder, _, files in os.walk(SOURCE):  # the module cache is read-only; the copy need not be
        os.chmod(folder, 0o755)
        for name in files:
            os.chmod(Path(folder, name), 0o644)
    (SOURCE / NO_TAG_FILE).write_text(NO_TAG_TEXT)
    marker.write_text(version)


def _version_of(binary: Path) -> str:
    """daprd has ``--version``; placement, scheduler and sentry state theirs in their first log line."""
    if binary.name == "daprd":
        result = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=30)
        return result.stdout.strip()
    with tempfile.TemporaryDirectory() as scratch:
        flags = [
            "--port",
            "0",
            "--healthz-port",
            "0",
            "--enable-metrics=false",
            "--listen-address",
            "127.0.0.1",
        ]
        flags += {
            "scheduler": ["--etcd-data-dir", scratch],
            "placement": ["--initial-cluster", "dapr-placement-0=127.0.0.1:0"],
            "sentry": ["--issuer-credentials", scratch, "--config", str(Path(scratch, "none.yaml"))],
        }[binary.name]
        process = subprocess.Popen(
            [str(binary), *flags], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        try:
            first = process.stdout.readline() if process.stdout else ""
        finally:
            process.kill()
            process.wait()
    match = re.search(r"-- version (\S+) -- commit ([0-9a-f]*)", first)
    return f"{match.group(1)} (commit {match.group(2) or 'unknown'})" if match else first.strip()


def build(install_dir: Path, *, force: bool = False, update_sums: bool = False) -> dict[str, str]:
    """Build (or reuse) the binaries in ``install_dir``; returns each one's version."""
    version = dapr_version()
    if shutil.which("go") is None:
        raise SystemExit("the 'go' command is not on PATH: install Go 1.26 or newer")
    stamp = install_dir / STAMP
    wanted = _inputs_digest(version)
    present = all((install_dir / name).is_file() for name in BINARIES)
    started = time.monotonic()
    if force or update_sums or not present or not stamp.is_file() or stamp.read_text().strip() != wanted:
        _prepare_source(version)
        install_dir.mkdir(parents=True, exist_ok=True)
        commit = _module_info(version).get("Origin", {}).get("Hash", "")
        ldflags = (
            f"-s -w -X {MODULE}/pkg/buildinfo.version={version.removeprefix('v')}"
            f" -X {MODULE}/pkg/buildinfo.gitcommit={commit}"
        )
        print(f"building {', '.join(BINARIES)} {version} ...", flush=True)
        mode = "-mod=mod" if update_sums else "-mod=readonly"
        with tempfile.TemporaryDirectory(dir=install_dir) as scratch:
            # One go build for all of them: the packages they share compile once, in parallel.
            _go("build", mode, "-trimpath", "-ldflags", ldflags, "-o", scratch + "/", *BINARIES.values())
            for name, package in BINARIES.items():
                # go build -o DIR/ names each binary after its package path ("." is this module).
                output = Path(scratch) / Path(_module_path() if package == "." else package).name
                output.replace(install_dir / name)  # a rename: never a half-written binary in place
        stamp.write_text(wanted + "\n")
        print(f"built in {time.monotonic() - started:.1f} s into {install_dir}")
    else:
        print(f"up to date in {install_dir} (inputs unchanged; --force rebuilds)")
    versions = {name: _version_of(install_dir / name) for name in BINARIES}
    for name, printed in versions.items():
        print(f"{name}: {printed}")
    return versions


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--install-dir", type=Path, default=default_install_dir(), help="default ~/.dapr/bin")
    parser.add_argument("--force", action="store_true", help="build even if the stamp says up to date")
    parser.add_argument(
        "--update-sums",
        action="store_true",
        help="after changing the Dapr version in go.mod: record go.mod/go.sum",
    )
    args = parser.parse_args()
    try:
        build(args.install_dir, force=args.force, update_sums=args.update_sums)
    except subprocess.CalledProcessError as exc:
        print(f"build failed: {' '.join(exc.cmd)} exited with {exc.returncode}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
