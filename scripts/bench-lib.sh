# Shared by the gateway benchmarks (bench-gateway.sh, bench-gateway-instructions.sh): sourced,
# not run. The caller sets $work (a scratch folder) and $up (the trivial upstream's port).

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# The value at `path` (Python subscripts, e.g. "['id']") of a JSON document.
field() { python3 -c "import json,sys; print(json.loads(sys.argv[1])$2)" "$1"; }

# Writes $work/nginx-<name>.conf: one worker, no access log, the trivial upstream kept alive.
nginx_conf() { # name, top-level directives, server block
  cat >"$work/nginx-$1.conf" <<CONF
worker_processes 1;
$2
pid $work/nginx-$1.pid;
error_log $work/nginx-$1.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $work/body-$1;
  proxy_temp_path $work/proxy-$1;
  upstream trivial { server 127.0.0.1:$up; keepalive 64; }
  $3
}
CONF
}

# The trivial upstream listens on loopback, which a dedicated application's upstream may be only
# when the operator lists it.
export AUTHSOME_UPSTREAM_ALLOW=127.0.0.0/8

# Gives the deployment serving on `port` a dedicated application whose upstream is the trivial
# one, and its workspace limits far above what the machine can send (the limiter is consulted
# but never refuses); sets $app and $sk (a secret key of the application).
bench_app() { # port, management key, workspace id
  local port=$1 mk=$2 ws=$3
  api() { curl -fsS -X "$1" "http://127.0.0.1:$port$2" -H "Authorization: Bearer $mk" -H 'Content-Type: application/json' -d "$3"; }
  api PATCH "/control/v1/admin/workspaces/$ws" \
    '{"plan":"enterprise","limits":{"requestsPerSecondPerKey":1000000,"requestsPerMonth":1000000000000}}' >/dev/null
  app=$(field "$(api POST "/control/v1/workspaces/$ws/applications" \
    "{\"name\":\"Bench\",\"environment\":\"development\",\"tenancy\":\"dedicated\",\"upstreams\":[\"http://127.0.0.1:$up\"]}")" "['id']")
  sk=$(field "$(api POST "/control/v1/applications/$app/keys" '{"type":"secret"}')" "['secret']")
}
