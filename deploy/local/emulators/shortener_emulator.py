"""URL shortener emulator (in memory) for paylink's local stack and tests.

Run from the repository root: ``python -m deploy.local.emulators.shortener_emulator --host 127.0.0.1 --port 12180
[--public-base http://localhost:12180]``

* ``POST /shorten`` with ``Authorization: Bearer <any non-empty token>`` and JSON ``{"url": "https://…"}``
  -> ``201 {"short_url": "<public-base>/s/<code>", "url": …, "code": …}``; the same URL always gets the
  same code (also answered 201). No/empty token -> 401; body not JSON, ``url`` missing, not a string,
  not ``http(s)://host…`` or longer than 2048 characters -> 400. Errors are ``{"error": {"code", "message"}}``.
* ``GET /s/<code>`` -> ``302`` with ``Location: <url>``; unknown code -> 404.
* The control API of :mod:`.control` (health, reset, config latency/rate limit, faults, stats) plus
  ``GET /_emulator/objects`` listing the links with their hit counts. The rate limit is per bearer token.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import string
import time
from typing import Any
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route, Router
from starlette.types import ASGIApp

from .control import ControlPlane
from .control_http import ResettableApp, control_routes, serve
from .faults import Fault

_CODE = re.compile(r"(?<=^/s/)[^/]+")
MAX_URL = 2048


def normalize_path(path: str) -> str:
    return _CODE.sub("{id}", path)


def error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Response:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)


def fault_error(status: int, fault: Fault | None) -> Response:
    code = fault.code if fault and fault.code else None
    message = fault.message if fault and fault.message else None
    if status == 429:
        return error(429, code or "rate_limited", message or "Too many requests; retry later.", {"Retry-After": "1"})
    code = code or ("server_error" if status >= 500 else "injected_fault")
    return error(status, code, message or f"Injected fault: HTTP {status}")


def _bad_url(url: Any) -> str | None:
    if not isinstance(url, str) or not url:
        return "`url` is required and must be a non-empty string"
    if len(url) > MAX_URL:
        return f"`url` must be at most {MAX_URL} characters"
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or any(c.isspace() for c in url):
        return "`url` must be an absolute http(s) URL"
    return None


class Shortener:
    def __init__(self, public_base: str) -> None:
        self.public_base = public_base.rstrip("/")
        self.links: dict[str, dict[str, Any]] = {}
        self.by_url: dict[str, str] = {}
        self.control = ControlPlane("shortener", normalize_path)
        self.control.reset_hooks.append(self._clear)

    def _clear(self) -> None:
        self.links, self.by_url = {}, {}

    def _link(self, url: str) -> dict[str, Any]:
        code = self.by_url.get(url)
        if code is None:
            code = "".join(random.choices(string.ascii_letters + string.digits, k=7))
            while code in self.links:
                code = "".join(random.choices(string.ascii_letters + string.digits, k=7))
            self.by_url[url] = code
            self.links[code] = {"code": code, "url": url, "created": int(time.time()), "hits": 0}
        return self.links[code]

    async def shorten(self, request: Request) -> Response:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        token = token.strip() if scheme.lower() == "bearer" else ""
        body = await request.body()

        def reject() -> Response | None:
            if token:
                return None
            return error(401, "unauthorized", "A bearer token is required.", {"WWW-Authenticate": "Bearer"})

        async def execute() -> Response:
            try:
                payload = json.loads(body)
            except ValueError:
                return error(400, "invalid_json", "The body must be a JSON object.")
            if not isinstance(payload, dict):
                return error(400, "invalid_json", "The body must be a JSON object.")
            problem = _bad_url(payload.get("url"))
            if problem is not None:
                return error(400, "invalid_url", problem)
            link = self._link(payload["url"])
            short = f"{self.public_base}/s/{link['code']}"
            return JSONResponse({"short_url": short, "url": link["url"], "code": link["code"]}, status_code=201)

        return await self.control.run(request, account=token, execute=execute, error=fault_error, reject=reject)

    async def follow(self, request: Request) -> Response:
        async def execute() -> Response:
            link = self.links.get(request.path_params["code"])
            if link is None:
                return error(404, "not_found", "No such short link.")
            link["hits"] += 1
            return RedirectResponse(link["url"], status_code=302)

        return await self.control.run(request, account=None, execute=execute, error=fault_error)

    async def objects(self, _: Request) -> Response:
        data = [{**link, "short_url": f"{self.public_base}/s/{link['code']}"} for link in self.links.values()]
        return JSONResponse({"data": data, "count": len(data)})

    def app(self) -> ASGIApp:
        routes = [
            *control_routes(self.control),
            Route("/_emulator/objects", self.objects, methods=["GET"]),
            Route("/shorten", self.shorten, methods=["POST"]),
            Route("/s/{code}", self.follow, methods=["GET"]),
        ]
        return ResettableApp(Router(routes=routes))


def build_app(public_base: str = "http://localhost:12180") -> ASGIApp:
    return Shortener(public_base).app()


def _args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--public-base", help="base of the short URLs (default http://localhost:<port>)")


if __name__ == "__main__":
    serve(
        lambda args: build_app(args.public_base or f"http://localhost:{args.port}"),
        "paylink's URL shortener emulator",
        12180,
        add_arguments=_args,
    )
