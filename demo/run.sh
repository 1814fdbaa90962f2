#!/bin/sh
# make demo: a small CDN on loopback, in the foreground until Ctrl-C.
#
#   origin   127.0.10.10:8080        the built-in origin role serving demo/www
#   cache    127.0.1.11:8080 (http), :8443 (https), :9000 (admin)
#
# Writes a demo CA and certificates, the configs and topology.json into
# demo/run/ (or $FERRY_DEMO_DIR), prints commands to try, and stops every
# process it started when interrupted.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/.." && pwd)
build=${FERRY_BUILD:-$top/build}
run=${FERRY_DEMO_DIR:-$here/run}
ferryd=$build/ferryd
ferryctl=$build/ferryctl
host=www.example.test
origin_addr=127.0.10.10
cache_addr=127.0.1.11

[ -x "$ferryd" ] || { echo "demo: $ferryd not built (run make)" >&2; exit 1; }
mkdir -p "$run"
cd "$run"

# PKI: a demo CA and one certificate for the publisher name.
if [ ! -f ca.pem ] || [ ! -f www.pem ]; then
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key \
        -out ca.pem -days 30 -subj "/CN=Ferry demo CA" \
        -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign 2>/dev/null
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout www.key -out www.csr \
        -subj "/CN=$host" 2>/dev/null
    printf 'subjectAltName=DNS:%s,DNS:*.example.test\nextendedKeyUsage=serverAuth\n' "$host" > www.ext
    openssl x509 -req -in www.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out www.pem -days 30 \
        -extfile www.ext 2>/dev/null
    chmod 600 ca.key www.key
fi
[ -f token ] || { openssl rand -hex 24 > token; chmod 600 token; }

# Content.
mkdir -p www/static www/news
cat > www/index.html <<HTML
<!doctype html><title>Ferry demo</title>
<h1>Served through Ferry</h1><p>This page is cached for 60 seconds.</p>
HTML
echo "style" > www/static/app.css
head -c 1048576 /dev/urandom > www/static/big.bin
date -u > www/news/now.txt

cat > origin.conf <<CONF
# The publisher's origin (the built-in origin role).
error_log $run/origin.log;
origin {
    listen $origin_addr:8080;
    root $run/www;
    cache_control / "max-age=60";
    cache_control /static/ "max-age=3600, stale-while-revalidate=60";
    cache_control /news/ "max-age=5, stale-if-error=300";
}
CONF

cat > cache.conf <<CONF
# One cache server (surrogate) in front of the origin.
error_log $run/cache.log;
admin {
    listen $cache_addr:9000;
    token_file $run/token;
}
cache {
    name demo-cache-1;
    listen $cache_addr:8080;
    listen_tls $cache_addr:8443;
    certificate $run/www.pem $run/www.key;
    memory 64m;
    access_log $run/access.log;
    publisher $host {
        origin http://$origin_addr:8080;
    }
}
CONF

"$ferryd" -t -c origin.conf >/dev/null
"$ferryd" -t -c cache.conf >/dev/null

pids=""
cleanup() {
    trap - INT TERM EXIT
    for p in $pids; do kill -TERM "$p" 2>/dev/null || true; done
    for p in $pids; do wait "$p" 2>/dev/null || true; done
    echo "demo: stopped"
}
trap cleanup EXIT
trap 'exit 0' INT TERM

"$ferryd" -c origin.conf & pids="$pids $!"
"$ferryd" -c cache.conf & pids="$pids $!"

# Wait until both answer (poll, bounded).
i=0
until curl -s -o /dev/null "http://$origin_addr:8080/" && \
      curl -s -o /dev/null "http://$cache_addr:9000/readyz"; do
    i=$((i + 1))
    [ $i -lt 200 ] || { echo "demo: services did not start; see $run/*.log" >&2; exit 1; }
    sleep 0.05
done

cat > topology.json.tmp <<JSON
{"ca": "$run/ca.pem",
 "publishers": [{"host": "$host", "origin": "http://$origin_addr:8080"}],
 "services": [
  {"name": "demo-origin", "cdn": "demo", "role": "origin", "address": "$origin_addr",
   "ports": {"http": 8080}},
  {"name": "demo-cache-1", "cdn": "demo", "role": "cache", "label": 1, "address": "$cache_addr",
   "ports": {"https": 8443, "http": 8080, "admin": 9000}}
 ]}
JSON
mv topology.json.tmp topology.json

cat <<TXT
Ferry demo is running (Ctrl-C stops it). Topology: $run/topology.json

Try:
  curl -si --cacert $run/ca.pem --resolve $host:8443:$cache_addr https://$host:8443/
  curl -si -H 'Host: $host' http://$cache_addr:8080/static/app.css     # twice: MISS, then HIT
  curl -s -o /dev/null -w '%{http_code} %{size_download}\n' -H 'Host: $host' http://$cache_addr:8080/static/big.bin
  $ferryctl -c $run/cache.conf stats
  $ferryctl -c $run/cache.conf purge http://$host/static/app.css
  $ferryctl -c $run/cache.conf expire --prefix http://$host/ 0
  curl -s http://$cache_addr:9000/metrics | grep ferry_cache
  tail -f $run/access.log
TXT

wait
