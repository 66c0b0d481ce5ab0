"""The health lookup, the API's busiest request, without FastAPI's routing and dependency resolution.

Profiled under wrk, a lookup spent more of its time finding its route among the API's and resolving
the route's dependencies than reading the store. This lane answers ``GET`` of the lookup route (with
no query string) by taking the same steps the route's dependencies take, with the same functions:
the failed-authentication throttle, the key and its rate limit (:func:`api.auth.authenticate`), the
``health:read`` scope (:func:`api.auth.require_scope`) and then the route's own endpoint; every error
is rendered by the handler the app registered for it. The middlewares around it (metrics, security
headers, trusted hosts, body limit) apply as to any request. Anything else goes on to the app.
"""

from __future__ import annotations

import inspect

from fastapi import FastAPI, Request, Response
from fastapi.routing import APIRoute
from starlette.routing import Match
from starlette.types import ASGIApp, Receive, Scope, Send

from api.auth import authenticate, require_scope
from api.routes import accounts
from api.routes.accounts import account_health


class HealthLookupLane:
    """ASGI middleware: answers health lookups itself, passes every other request on."""

    def __init__(self, app: ASGIApp, api: FastAPI) -> None:
        """Wrap ``app``, the inside of ``api`` (whose routes, state and error handlers it uses)."""
        self.app = app
        self.api = api
        # The route as the accounts router declares it (the app includes that router unprefixed).
        self.route = next(
            r
            for r in accounts.router.routes
            if isinstance(r, APIRoute) and r.endpoint is accounts.account_health
        )
        self.require = require_scope("health:read")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Handle one connection scope."""
        if scope["type"] != "http" or scope["method"] != "GET" or scope.get("query_string"):
            await self.app(scope, receive, send)
            return
        match, child = self.route.matches(scope)
        if match is not Match.FULL:
            await self.app(scope, receive, send)
            return
        scope.update(child)  # the route and its path parameters, as the router would set them
        request = Request(scope, receive)
        try:
            principal = await self.require(await authenticate(request, None, None))
            response: Response = await account_health(
                scope["path_params"]["account_id"], self.api.state.read_model, principal
            )
        except Exception as exc:  # noqa: BLE001 - answered by the app's handler for it, as on the route
            response = await self._answer(request, exc)
        await response(scope, receive, send)

    async def _answer(self, request: Request, exc: Exception) -> Response:
        handlers = self.api.exception_handlers
        handler = next(handlers[cls] for cls in type(exc).__mro__ if cls in handlers)
        answer = handler(request, exc)
        return await answer if inspect.isawaitable(answer) else answer
