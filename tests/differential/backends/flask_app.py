"""Flask 3 / Werkzeug backend for the differential suite.

Routes with Flask's own router (`/public`, `/public/` and `/public/<path>` for each
prefix: a gateway prefix covers all three, and a Flask app must register the bare
trailing-slash form too or `/public/` falls through to its catch-all); the admin.internal virtual host is chosen the way many
apps do it (a before_request check of request.host). Like many real deployments it
honours X-HTTP-Method-Override and IIS-style X-Original-URL through WSGI middleware, so
the suite shows that the gateway strips them. Every handler answers with what it
resolved: {backend, route, method, host, scopes, subject}.
"""
import json
import sys

from flask import Flask, request

app = Flask(__name__)


class Overrides:
    def __init__(self, wsgi):
        self.wsgi = wsgi

    def __call__(self, environ, start_response):
        override = environ.get("HTTP_X_HTTP_METHOD_OVERRIDE")
        if override:
            environ["REQUEST_METHOD"] = override.upper()
        original = environ.get("HTTP_X_ORIGINAL_URL")
        if original:
            environ["PATH_INFO"] = original.split("?")[0]
        return self.wsgi(environ, start_response)


app.wsgi_app = Overrides(app.wsgi_app)
METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "FOO"]


def report(route, org=None):
    body = {
        "backend": "flask",
        "route": route,
        "org": org,
        "orgs": request.headers.get("X-Auth-Organizations"),
        "method": request.method,
        "host": request.host,
        "scopes": request.headers.get("X-Auth-Scopes"),
        "subject": request.headers.get("X-Auth-Subject"),
    }
    return app.response_class(json.dumps(body), mimetype="application/json")


@app.before_request
def vhost():
    if request.host.split(":")[0].lower().rstrip(".") == "admin.internal":
        return report("vhost-admin")
    return None


for name in ["public", "admin", "wallets"]:
    app.add_url_rule(f"/{name}", f"{name}_exact", lambda name=name: report(name), methods=METHODS)
    app.add_url_rule(f"/{name}/", f"{name}_slash", lambda name=name: report(name), methods=METHODS)
    app.add_url_rule(f"/{name}/<path:rest>", f"{name}_rest", lambda rest, name=name: report(name), methods=METHODS)
app.add_url_rule("/orgs/<org>", "orgs_exact", lambda org: report("orgs", org), methods=METHODS)
app.add_url_rule("/orgs/<org>/", "orgs_slash", lambda org: report("orgs", org), methods=METHODS)
app.add_url_rule("/orgs/<org>/<path:rest>", "orgs_rest", lambda org, rest: report("orgs", org), methods=METHODS)
app.add_url_rule("/", "root_exact", lambda: report("root"), methods=METHODS)
app.add_url_rule("/<path:rest>", "root_rest", lambda rest: report("root"), methods=METHODS)

if __name__ == "__main__":
    from werkzeug.serving import run_simple

    run_simple("127.0.0.1", int(sys.argv[1]), app, threaded=True)
