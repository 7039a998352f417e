"""HTTP side of the emulators' control plane: the ``/_emulator`` routes, connection resets, the CLI.

See :mod:`.control` for the API and :mod:`.faults` for the fault semantics.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import socket
import struct
from collections.abc import Callable
from typing import Any

import uvicorn
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from .control import ConnectionReset, ControlPlane
from .faults import ControlError


def control_routes(plane: ControlPlane) -> list[BaseRoute]:
    async def health(_: Request) -> Response:
        return JSONResponse({"status": "ok", "emulator": plane.name})

    async def reset(_: Request) -> Response:
        plane.reset()
        return JSONResponse({"reset": True})

    async def config(request: Request) -> Response:
        if request.method == "POST":
            try:
                plane.update_config(await read_json(request))
            except ControlError as exc:
                return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse(plane.config)

    async def faults(request: Request) -> Response:
        if request.method == "DELETE":
            removed = len(plane.faults)
            plane.faults.clear()
            return JSONResponse({"deleted": removed})
        if request.method == "POST":
            try:
                fault = plane.add_fault(await read_json(request))
            except ControlError as exc:
                return JSONResponse({"error": str(exc)}, status_code=400)
            return JSONResponse(fault.public(), status_code=201)
        return JSONResponse({"data": [f.public() for f in plane.faults]})

    async def fault_by_id(request: Request) -> Response:
        fault_id = request.path_params["fault_id"]
        kept = [f for f in plane.faults if f.id != fault_id]
        if len(kept) == len(plane.faults):
            return JSONResponse({"error": f"no fault {fault_id}"}, status_code=404)
        plane.faults = kept
        return JSONResponse({"id": fault_id, "deleted": True})

    async def stats(_: Request) -> Response:
        return JSONResponse(plane.stats_body())

    return [
        Route("/_emulator/health", health, methods=["GET"]),
        Route("/_emulator/reset", reset, methods=["POST"]),
        Route("/_emulator/config", config, methods=["GET", "POST"]),
        Route("/_emulator/faults", faults, methods=["GET", "POST", "DELETE"]),
        Route("/_emulator/faults/{fault_id}", fault_by_id, methods=["DELETE"]),
        Route("/_emulator/stats", stats, methods=["GET"]),
    ]


async def read_json(request: Request) -> Any:
    body = await request.body()
    try:
        return json.loads(body or b"{}")
    except ValueError as exc:
        raise ControlError(f"invalid JSON: {exc}") from None


class ResettableApp:
    """ASGI wrapper: turns :class:`ConnectionReset` into a TCP reset (RST) without any response.

    uvicorn's ``send`` is a bound method of its request cycle, which holds the transport; we set
    ``SO_LINGER`` to 0 (close sends RST) and abort the transport, then wait until uvicorn notices the
    disconnect so it does not try to answer 500 itself.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self.app(scope, receive, send)
        except ConnectionReset:
            cycle = getattr(send, "__self__", None)
            transport = getattr(cycle, "transport", None)
            if transport is None:
                raise RuntimeError("cannot reset the connection: server transport not reachable") from None
            sock = transport.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            transport.abort()
            for _ in range(20):
                if getattr(cycle, "disconnected", True):
                    break
                await asyncio.sleep(0)


def serve(
    build: Callable[[argparse.Namespace], ASGIApp],
    description: str,
    default_port: int,
    argv: list[str] | None = None,
    add_arguments: Callable[[argparse.ArgumentParser], None] | None = None,
) -> None:
    """Command line entry point shared by the emulators (quiet: no access log)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=default_port)
    parser.add_argument("--log-level", default="warning")
    if add_arguments is not None:
        add_arguments(parser)
    args = parser.parse_args(argv)
    uvicorn.run(
        build(args),
        host=args.host,
        port=args.port,
        access_log=False,
        log_level=args.log_level,
        timeout_keep_alive=30,
        backlog=4096,
    )
