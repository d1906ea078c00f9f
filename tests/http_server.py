"""Run the real service (`facegate serve` in a subprocess) on a loopback port for tests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

import httpx

# No pytest here: scripts/bench_service.py uses this module without the test dependencies.
REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServiceProcess:
    def __init__(self, data_dir: Path, model_dir: Path, database_url: str | None = None, **env: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "FACEGATE_DATA_DIR": str(data_dir),
            "FACEGATE_MODEL_DIR": str(model_dir),
            "FACEGATE_ONNX_PROVIDERS": '["CPUExecutionProvider"]',
            "FACEGATE_ONNX_INTRA_OP_THREADS": "2",
            "FACEGATE_GALLERY_SYNC_INTERVAL_S": "0.5",
            **env,
        }
        if database_url:
            self.env["FACEGATE_DATABASE_URL"] = database_url
        self.log = data_dir / f"server-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "app.cli", *args],
            env=self.env,
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )

    def start(self, *, ready: bool = True) -> ServiceProcess:
        """Start and wait until /readyz answers 200, or with ``ready=False`` until it answers
        anything but "starting" (a service that comes up not ready)."""
        with self.log.open("ab") as fh:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "app.cli", "serve", "--host", "127.0.0.1", "--port", str(self.port)],
                env=self.env,
                cwd=REPO,
                stdout=fh,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"server exited with {self.proc.returncode}:\n{self.log.read_text()[-3000:]}"
                )
            try:
                answer = httpx.get(f"{self.url}/readyz", timeout=2)
            except httpx.TransportError:
                pass
            else:
                if answer.status_code == 200 or (not ready and answer.json()["status"] != "starting"):
                    return self
            time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"server not ready in time:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def __enter__(self) -> ServiceProcess:
        return self.start()

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.stop()


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}
