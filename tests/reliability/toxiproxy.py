"""Network faults between paylink's processes and their dependencies, through Toxiproxy's HTTP API.

``ToxiproxyServer`` runs ``.local/bin/toxiproxy-server`` (built by ``make go-tools``) on its API port;
``Toxiproxy`` is a small typed client of that API (v2.5: ``/proxies``, ``/proxies/{name}/toxics``,
``/reset``). A *partition* comes in two kinds:

- ``refuse``: the proxy is disabled — its connections are closed and new ones refused (a crashed peer);
- ``stall``: a ``latency`` toxic longer than the partition on both directions — connections stay open
  and nothing arrives; once healed, everything held arrives, in order (a pulled cable, a dropped route:
  TCP retransmits, it never loses bytes inside a connection). The harder case: only timeouts notice.

Not used: Toxiproxy's ``timeout`` toxic with timeout 0 (its "blackhole") *drops* the bytes of live
connections and keeps them open, which TCP never does; on the MongoDB wire protocol the streams lose
their framing, and PyMongo's pool then stayed paused ("connection pool paused") for minutes after the
heal — an artefact of the tool, noted in docs/guarantees.md, not a network a driver can meet.

Kafka needs a proxy the broker advertises: the private stack gives the broker a third listener whose
advertised address is the Kafka proxy's (``PrivateStack.kafka_proxied``), so a process bootstrapping at
the proxy keeps talking through it.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import httpx

from tests.reliability.stack import ROOT

SERVER = ROOT / ".local" / "bin" / "toxiproxy-server"
API_PORT = 18474  # below the ephemeral range, like the private stack's ports
Stream = Literal["upstream", "downstream"]
Partition = Literal["refuse", "stall"]


@dataclass(frozen=True)
class Proxy:
    name: str
    listen_port: int
    upstream_port: int

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.listen_port}"


class Toxiproxy:
    def __init__(self, port: int = API_PORT) -> None:
        self._http = httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10)
        self.fired: dict[str, int] = {}  # what the scenarios did: "<proxy> <toxic or partition>" → count

    async def close(self) -> None:
        await self._http.aclose()

    async def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        response = await self._http.request(method, path, json=body)
        if response.status_code >= 300:
            raise RuntimeError(f"toxiproxy {method} {path}: {response.status_code} {response.text[:200]}")
        return response.json() if response.content else None

    async def create(self, proxy: Proxy) -> None:
        with contextlib.suppress(RuntimeError):  # left by an earlier run: replaced
            await self._call("DELETE", f"/proxies/{proxy.name}")
        body = {"name": proxy.name, "listen": proxy.address, "upstream": f"127.0.0.1:{proxy.upstream_port}"}
        await self._call("POST", "/proxies", {**body, "enabled": True})

    async def delete(self, name: str) -> None:
        with contextlib.suppress(RuntimeError):
            await self._call("DELETE", f"/proxies/{name}")

    async def add_toxic(
        self, proxy: str, kind: str, stream: Stream = "downstream", toxicity: float = 1.0, **attributes: int
    ) -> str:
        """Adds a toxic (``latency``, ``bandwidth``, ``slow_close``, ``timeout``, ``reset_peer``,
        ``limit_data``, ``slicer``…); returns its name, for ``remove_toxic``."""
        name = f"{kind}_{stream}_{len(self.fired)}_{time.monotonic_ns() % 10**6}"
        body = {"name": name, "type": kind, "stream": stream, "toxicity": toxicity, "attributes": attributes}
        await self._call("POST", f"/proxies/{proxy}/toxics", body)
        key = f"{proxy} {kind} {stream}"
        self.fired[key] = self.fired.get(key, 0) + 1
        return name

    async def remove_toxic(self, proxy: str, name: str) -> None:
        with contextlib.suppress(RuntimeError):
            await self._call("DELETE", f"/proxies/{proxy}/toxics/{name}")

    async def set_enabled(self, proxy: str, enabled: bool) -> None:
        await self._call("POST", f"/proxies/{proxy}", {"enabled": enabled})

    async def partition(self, proxy: str, kind: Partition = "stall", seconds: float = 60.0) -> list[str]:
        """Cuts ``proxy`` (a stall holds data for ``seconds`` at most); returns what ``heal`` needs."""
        key = f"{proxy} partition ({kind})"
        if kind == "refuse":
            await self.set_enabled(proxy, False)
            self.fired[key] = self.fired.get(key, 0) + 1
            return []
        held = int(seconds * 1000)
        toxics = [
            await self.add_toxic(proxy, "latency", "upstream", latency=held),
            await self.add_toxic(proxy, "latency", "downstream", latency=held),
        ]
        for stream in ("upstream", "downstream"):
            self.fired.pop(f"{proxy} latency {stream}", None)
        self.fired[key] = self.fired.get(key, 0) + 1
        return toxics

    async def heal(self, proxy: str, toxics: list[str]) -> None:
        for toxic in toxics:
            await self.remove_toxic(proxy, toxic)
        await self.set_enabled(proxy, True)

    async def reset(self) -> None:
        """Every proxy enabled, every toxic gone."""
        await self._call("POST", "/reset")


class ToxiproxyServer:
    """The ``toxiproxy-server`` process: started if its API does not answer, stopped only if started here."""

    def __init__(self, log_dir: Path, port: int = API_PORT) -> None:
        self.port = port
        self._log_dir = log_dir
        self._process: subprocess.Popen[bytes] | None = None

    def _answers(self) -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{self.port}/version", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    async def start(self, timeout_s: float = 30.0) -> None:
        if self._answers():
            return
        if not SERVER.exists():
            raise RuntimeError(f"{SERVER} is missing: build it with `make go-tools`")
        process = self._process = await asyncio.to_thread(self._spawn)
        deadline = time.monotonic() + timeout_s
        while not await asyncio.to_thread(self._answers):
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError(f"toxiproxy-server did not answer on :{self.port} within {timeout_s:.0f}s")
            await asyncio.sleep(0.1)

    def _spawn(self) -> subprocess.Popen[bytes]:
        self._log_dir.mkdir(parents=True, exist_ok=True)
        with (self._log_dir / "toxiproxy.log").open("wb") as log:
            return subprocess.Popen(
                [str(SERVER), "-host", "127.0.0.1", "-port", str(self.port)], stdout=log, stderr=subprocess.STDOUT
            )

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(timeout=10)
        self._process = None
