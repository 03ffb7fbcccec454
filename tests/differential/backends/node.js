// Node.js `http` backend for the differential suite, routing the way small Node services
// (and Express-style prefix routers) do: on `new URL(req.url).pathname` (WHATWG: dot
// segments and %2e removed), prefix match, virtual host from the Host header with the port
// and a trailing dot removed. Honours X-Original-URL / X-Rewrite-URL and
// X-HTTP-Method-Override like common middlewares. `/orgs/:org/…` is a tenant's route:
// it reports the org it served and the X-Auth-Organizations it was told. With CASE_INSENSITIVE=1 it routes
// regardless of case, like IIS or Spring with case-insensitive matching.
const http = require('http');

const fold = process.env.CASE_INSENSITIVE === '1';

function route(host, path) {
  const name = (host || '').split(':')[0].toLowerCase().replace(/\.$/, '');
  if (name === 'admin.internal') return 'vhost-admin';
  const p = fold ? path.toLowerCase() : path;
  // An Express-style `/orgs/:org` parameter: one segment, percent-decoded.
  if (/^\/orgs\/[^/]+(\/|$)/.test(p)) return 'orgs';
  for (const r of ['public', 'admin', 'wallets']) {
    if (p === '/' + r || p.startsWith('/' + r + '/')) return r;
  }
  return 'root';
}

http.createServer((req, res) => {
  let target = req.headers['x-original-url'] || req.headers['x-rewrite-url'] || req.url;
  let method = (req.headers['x-http-method-override'] || req.method).toUpperCase();
  let path;
  try {
    path = new URL(target, 'http://backend').pathname;
  } catch (e) {
    res.writeHead(400).end();
    return;
  }
  const served = route(req.headers.host, path);
  let org = null;
  if (served === 'orgs') {
    try {
      org = decodeURIComponent(path.split('/')[2]);
    } catch (e) {
      res.writeHead(400).end();
      return;
    }
  }
  const body = JSON.stringify({
    backend: fold ? 'node-ci' : 'node',
    route: served,
    org,
    orgs: req.headers['x-auth-organizations'] ?? null,
    method,
    host: req.headers.host || null,
    scopes: req.headers['x-auth-scopes'] ?? null,
    subject: req.headers['x-auth-subject'] ?? null,
  });
  res.writeHead(200, { 'content-type': 'application/json' }).end(body);
}).listen(Number(process.argv[2]), '127.0.0.1');
