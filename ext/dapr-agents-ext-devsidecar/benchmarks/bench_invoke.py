#!/usr/bin/env python
"""HTTP service invocation of small replies through the dev sidecar: the fast path.

Starts an HTTP app (a minimal asyncio server in a thread, keep-alive, a 64-byte JSON reply with
a Content-Length), a dev sidecar for it and a second dev sidecar without an app, all in this
process, then makes ``--calls`` sequential ``GET /v1.0/invoke/<app>/method/small`` calls over
one keep-alive connection (``http.client``): first to the app's own sidecar (the app channel
only), then to the other sidecar (sidecar to sidecar over the internal gRPC port). It prints
calls per second and the p50/p99 latency of each, after ``--warmup`` calls not measured.

To compare two versions of the sidecar, run the script twice with the source tree of each first
on ``PYTHONPATH``; the first line printed names the tree that was imported::

    PYTHONPATH=ext/dapr-agents-ext-devsidecar python ext/dapr-agents-ext-devsidecar/benchmarks/bench_invoke.py

This is a benchmark, not a test: it asserts nothing about the numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from dapr_agents.ext import devsidecar
from dapr_agents.ext.devsidecar import DevSidecar
from dapr_agents.ext.devsidecar.testing import free_port, write_components

BODY = b'{"ok":true,"padding":"' + b"x" * 40 + b'"}'


def start_app(port: int) -> None:
    """A keep-alive HTTP/1.1 app answering every request with ``BODY``, in a daemon thread."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                if length:
                    await reader.readexactly(length)
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                    % (len(BODY), BODY)
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    async def main() -> None:
        server = await asyncio.start_server(serve, "127.0.0.1", port)
        async with server:
            await server.serve_forever()

    threading.Thread(target=asyncio.run, args=(main(),), daemon=True).start()


def measure(port: int, path: str, calls: int, warmup: int) -> tuple[float, float, float]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    latencies = []
    for index in range(warmup + calls):
        started = time.perf_counter()
        connection.request("GET", path)
        response = connection.getresponse()
        body = response.read()
        elapsed = time.perf_counter() - started
        if response.status != 200 or body != BODY:
            raise SystemExit(f"unexpected reply {response.status} {body[:200]!r}")
        if index >= warmup:
            latencies.append(elapsed)
    connection.close()
    latencies.sort()
    total = sum(latencies)
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    return calls / total, statistics.median(latencies) * 1000, p99 * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--warmup", type=int, default=200)
    options = parser.parse_args()
    print(f"dev sidecar from {Path(devsidecar.__file__).parent}")
    with tempfile.TemporaryDirectory() as workdir:
        os.environ["DAPR_DEVSIDECAR_HOME"] = str(Path(workdir) / "home")
        components = write_components(Path(workdir) / "components", pubsub=None, actor_state_store=False)
        app_port = free_port()
        start_app(app_port)
        own = DevSidecar(app_id="bench-app", resources_paths=[str(components)], app_port=app_port).start()
        other = DevSidecar(app_id="bench-caller", resources_paths=[str(components)]).start()
        try:
            path = "/v1.0/invoke/bench-app/method/small"
            for label, sidecar in (("own sidecar", own), ("other sidecar", other)):
                rate, p50, p99 = measure(sidecar.http_port, path, options.calls, options.warmup)
                print(
                    f"{label:14} {options.calls} calls: {rate:7.0f} calls/s  p50 {p50:.3f} ms  p99 {p99:.3f} ms"
                )
                sys.stdout.flush()
        finally:
            other.stop()
            own.stop()


if __name__ == "__main__":
    main()
