# nginx configurations shared by the load harnesses (benches/load/run.sh, tls.sh); sourced
# after tests/e2e/lib.sh (which sets $work). One worker each, temp files in $work.
# Needs: UP (static upstream port), PROV (fake BitGo provider port).

NGINX_COMMON="user $(id -un) $(id -gn);
worker_processes 1;
daemon off;
events { worker_connections 4096; }"
NGINX_HTTP_COMMON="access_log off;
    client_body_temp_path $work/nginx/body;
    proxy_temp_path $work/nginx/proxy;
    fastcgi_temp_path $work/nginx/fastcgi;
    uwsgi_temp_path $work/nginx/uwsgi;
    scgi_temp_path $work/nginx/scgi;"
mkdir -p "$work/nginx"

# write_helpers_conf FILE: the static upstream ($UP) and the fake provider ($PROV, one
# BitGo session document, each call logged to $work/provider-access.log).
write_helpers_conf() {
    cat > "$1" <<CONF
$NGINX_COMMON
pid $work/helpers.pid;
error_log $work/helpers-error.log warn;
http {
    $NGINX_HTTP_COMMON
    server {
        listen 127.0.0.1:$UP;
        location / { return 200 "upstream ok\n"; }
    }
    server {
        listen 127.0.0.1:$PROV;
        access_log $work/provider-access.log;
        # For nginx-id: the same identity as response headers, as an auth service behind
        # auth_request gives it (oauth2-proxy's X-Auth-Request-*).
        location = /identity {
            add_header X-Auth-Subject 59cd72485007a239fb00282ed480da1f;
            add_header X-Auth-Session-Id 0f3a9c1e5b7d2f4a6c8e0b1d3f5a7c90;
            add_header X-Auth-Scopes "wallet_view_all wallet_spend_all openid profile user_manage";
            add_header X-Auth-Organizations 6b2c3d4e5f60718293a4b5c6d7e8f9a0;
            add_header X-Auth-Expires 4070908800;
            add_header X-Auth-Provider bitgo;
            return 200;
        }
        location / {
            default_type application/json;
            return 200 '{"session":{"id":"0f3a9c1e5b7d2f4a6c8e0b1d3f5a7c90","user":"59cd72485007a239fb00282ed480da1f","client":"bitgo","created":"2026-11-01T10:00:00.000Z","expires":"2099-01-01T00:00:00.000Z","scope":["wallet_view_all","wallet_spend_all","openid","profile","user_manage"],"ipRestrict":["127.0.0.0/8"],"organizations":["6b2c3d4e5f60718293a4b5c6d7e8f9a0"],"isExtensible":false}}';
        }
    }
}
CONF
}

# write_authreq_conf FILE LISTEN [LISTEN_ID]: nginx auth_request + proxy_cache keyed on
# \$http_authorization against $PROV, proxying to $UP; LISTEN is the server's listen (and
# TLS) directives. With LISTEN_ID, a second server there (case nginx-id) also does what
# sessiongate does for the upstream: it sends the identity the auth service gave
# (auth_request_set, six X-Auth-* headers), X-Forwarded-For/-Proto/-Host, X-Real-IP and a
# request id (also returned to the client), and passes Host through.
write_authreq_conf() {
    local identity_server=
    [ -n "${3:-}" ] && identity_server="
    server {
        $3
        location / {
            auth_request /_auth;
            auth_request_set \$id_subject \$upstream_http_x_auth_subject;
            auth_request_set \$id_session \$upstream_http_x_auth_session_id;
            auth_request_set \$id_scopes \$upstream_http_x_auth_scopes;
            auth_request_set \$id_orgs \$upstream_http_x_auth_organizations;
            auth_request_set \$id_expires \$upstream_http_x_auth_expires;
            auth_request_set \$id_provider \$upstream_http_x_auth_provider;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
            proxy_set_header Host \$http_host;
            proxy_set_header X-Auth-Subject \$id_subject;
            proxy_set_header X-Auth-Session-Id \$id_session;
            proxy_set_header X-Auth-Scopes \$id_scopes;
            proxy_set_header X-Auth-Organizations \$id_orgs;
            proxy_set_header X-Auth-Expires \$id_expires;
            proxy_set_header X-Auth-Provider \$id_provider;
            proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto \$scheme;
            proxy_set_header X-Forwarded-Host \$http_host;
            proxy_set_header X-Real-IP \$remote_addr;
            proxy_set_header X-Request-Id \$request_id;
            add_header X-Request-Id \$request_id;
            proxy_pass http://app;
        }
        location = /_auth {
            internal;
            proxy_pass http://idp/identity;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
            proxy_pass_request_body off;
            proxy_set_header Content-Length \"\";
            proxy_cache auth;
            proxy_cache_key id\$http_authorization;
            proxy_cache_valid 200 60s;
            proxy_cache_lock on;
        }
    }"
    cat > "$1" <<CONF
$NGINX_COMMON
pid $work/authreq.pid;
error_log $work/authreq-error.log warn;
http {
    $NGINX_HTTP_COMMON
    proxy_cache_path $work/authcache levels=1:2 keys_zone=auth:10m max_size=100m inactive=10m;
    upstream app { server 127.0.0.1:$UP; keepalive 64; }
    upstream idp { server 127.0.0.1:$PROV; keepalive 16; }
    server {
        $2
        location / {
            auth_request /_auth;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_pass http://app;
        }
        location = /_auth {
            internal;
            proxy_pass http://idp/api/v2/user/session;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            proxy_cache auth;
            proxy_cache_key \$http_authorization;
            proxy_cache_valid 200 60s;
            proxy_cache_lock on;
        }
    }$identity_server
}
CONF
}
