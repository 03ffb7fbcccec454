"""Starlette on uvicorn: backend for the differential suite.

Routing and the admin.internal virtual host use Starlette's own Route and Host; a
middleware honours X-HTTP-Method-Override (a common pattern). Answers with what it
resolved: {backend, route, method, host, scopes, subject}.
"""
import sys

import uvicorn
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Host, Route, Router

METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "FOO"]


def handler(route):
    async def handle(request):
        return JSONResponse({
            "backend": "starlette",
            "route": route,
            "org": request.path_params.get("org") if route == "orgs" else None,
            "orgs": request.headers.get("x-auth-organizations"),
            "method": request.method,
            "host": request.headers.get("host"),
            "scopes": request.headers.get("x-auth-scopes"),
            "subject": request.headers.get("x-auth-subject"),
        })
    return handle


def routes(override=None):
    out = []
    for name in ["public", "admin", "wallets"]:
        h = handler(override or name)
        out.append(Route(f"/{name}", h, methods=METHODS))
        out.append(Route(f"/{name}/{{rest:path}}", h, methods=METHODS))
    orgs = handler(override or "orgs")
    out.append(Route("/orgs/{org}", orgs, methods=METHODS))
    out.append(Route("/orgs/{org}/{rest:path}", orgs, methods=METHODS))
    out.append(Route("/", handler(override or "root"), methods=METHODS))
    out.append(Route("/{rest:path}", handler(override or "root"), methods=METHODS))
    return out


class MethodOverride:
    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            for k, v in scope["headers"]:
                if k == b"x-http-method-override":
                    scope = dict(scope, method=v.decode("latin-1").upper())
        await self.app(scope, receive, send)


app = Starlette(routes=[Host("admin.internal", Router(routes("vhost-admin")))] + routes())
app.add_middleware(MethodOverride)

if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
