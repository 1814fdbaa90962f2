#!/bin/sh
# make demo: two CDNs, alpha and beta, on loopback in front of one origin, in
# the foreground until Ctrl-C. Their nodes show the patent's two answers side
# by side, and their routers the request routing of the peering drafts.
#
#   origin    127.0.10.10:8080       the built-in origin role serving the demo content
# CDN alpha:
#   router    127.0.1.53:5300 DNS (UDP and TCP), :8080 HTTP redirector, :9000 admin
#             authoritative for example.test; serves clients of its areas
#             (192.0.2.0/24, 127.0.1.0/24, the rest of 127/8) with node A, and
#             hands clients of beta's areas (198.51.100.0/24, 127.0.2.0/24) to
#             beta: DNS by asking beta's router with the client's subnet (ECS),
#             HTTP by a redirect to beta's redirector. It learns those areas
#             from beta's advertisements:
#   peer      127.0.1.53:7179 the peering speaker, in the router's ferryd
# CDN beta:
#   router    127.0.2.53:5300 DNS, :8080 HTTP redirector, :9000 admin
#             authoritative for cdn.beta.test; serves its areas with node B
#   peer      127.0.2.53:7179 advertises beta's areas to alpha, learns alpha's
# Node A (alpha), routing by label:
#   switch    127.0.1.10:8443 (https), :8080 (http), :9000 (admin)
#             routes each TLS connection to the cache holding its session
#   cache 1-3 127.0.1.11-13: :8443 https and :8080 http for direct use,
#             :8444/:8081 the same behind the switch (PROXY protocol), :9000 admin
# Node B (beta), sharing session state:
#   switch    127.0.2.10:8443, :9000 (admin): plain round robin
#   cache 1-3 127.0.2.11-13: :8443 https, :9000 admin, :7400/udp the group
#             store (sessions replicated, sealed with group.keys) and group
#             ticket keys, so any cache resumes any session of the node
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
switch_addr=127.0.1.10
caches="1 2 3"

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
# Each CDN's certificate for peering: the URI SAN ferry-cdn:ID names the CDN.
for cdn in alpha beta; do
    [ -f $cdn-peer.pem ] && continue
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout $cdn-peer.key \
        -out $cdn-peer.csr -subj "/CN=$cdn" 2>/dev/null
    printf 'subjectAltName=URI:ferry-cdn:%s\nextendedKeyUsage=serverAuth,clientAuth\n' $cdn > $cdn-peer.ext
    openssl x509 -req -in $cdn-peer.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out $cdn-peer.pem \
        -days 30 -extfile $cdn-peer.ext 2>/dev/null
    chmod 600 $cdn-peer.key
done
[ -f token ] || { openssl rand -hex 24 > token; chmod 600 token; }
# Node B's group key (docs/session-wire.md): one key, id 1, readable by the owner only.
[ -f group.keys ] || { (umask 077; echo "1 $(openssl rand -hex 32)" > group.keys); }

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

for i in $caches; do
    addr=127.0.1.1$i
    cat > cache$i.conf <<CONF
# Cache server $i of the node group, label $i.
error_log $run/cache$i.log;
admin {
    listen $addr:9000;
    token_file $run/token;
}
cache {
    name demo-cache-$i;
    listen $addr:8080;
    listen $addr:8081 proxy_protocol;
    listen_tls $addr:8443;
    listen_tls $addr:8444 proxy_protocol;
    certificate $run/www.pem $run/www.key;
    tls_label $i;
    memory 64m;
    access_log $run/access$i.log;
    publisher $host {
        origin http://$origin_addr:8080;
        alias alpha-1.example.test;
    }
}
CONF
done

for i in $caches; do
    addr=127.0.2.1$i
    peers=""
    for j in $caches; do
        [ "$j" = "$i" ] || peers="$peers        peer 127.0.2.1$j:7400;
"
    done
    cat > b-cache$i.conf <<CONF
# Node B, cache server $i: shares TLS session state with the other two, and
# takes client connections from the switch by hand-off (same host).
error_log $run/b-cache$i.log;
admin {
    listen $addr:9000;
    token_file $run/token;
}
cache {
    name demo-b-cache-$i;
    listen_tls $addr:8443;
    handoff $run/b-cache$i.sock;
    certificate $run/www.pem $run/www.key;
    memory 64m;
    access_log $run/b-access$i.log;
    tls_session_store group;
    tls_ticket_keys group;
    tls_group {
        listen $addr:7400;
$peers        key_file $run/group.keys;
        sender $i;
    }
    publisher $host {
        origin http://$origin_addr:8080;
        alias beta-1.example.test;
    }
}
CONF
done

cat > b-switch.conf <<CONF
# Node B's switch: round robin; any cache can resume any session. The caches
# run on this host, so the switch hands each client's socket over to them
# instead of relaying its bytes.
error_log $run/b-switch.log;
admin {
    listen 127.0.2.10:9000;
    token_file $run/token;
}
switch {
    listen 127.0.2.10:8443;
    policy roundrobin;
    health_check tls;
    health_check_sni $host;
    health_check_timeout 3s;
    backend b-cache-1 127.0.2.11:8443 handoff $run/b-cache1.sock;
    backend b-cache-2 127.0.2.12:8443 handoff $run/b-cache2.sock;
    backend b-cache-3 127.0.2.13:8443 handoff $run/b-cache3.sock;
}
CONF

cat > switch.conf <<CONF
# The node's switch: reads ClientHellos, never decrypts.
error_log $run/switch.log;
admin {
    listen $switch_addr:9000;
    token_file $run/token;
}
switch {
    listen $switch_addr:8443;
    listen_http $switch_addr:8080;
    policy psk ticket session_id sticky hash;
    http_policy url hash;
    proxy_protocol on;
    health_check http;
    backend cache-1 127.0.1.11:8444 label 1 http 127.0.1.11:8081 check 127.0.1.11:9000;
    backend cache-2 127.0.1.12:8444 label 2 http 127.0.1.12:8081 check 127.0.1.12:9000;
    backend cache-3 127.0.1.13:8444 label 3 http 127.0.1.13:8081 check 127.0.1.13:9000;
}
CONF

# The routers. Alpha is authoritative for the publisher's zone; the node
# names alpha-1 and beta-1 are under it, so the demo certificate
# (*.example.test) covers the HTTP redirects' targets too.
cat > alpha-router.conf <<CONF
# CDN alpha's request routing: authoritative DNS and HTTP redirects.
error_log $run/alpha-router.log;
admin {
    listen 127.0.1.53:9000;
    token_file $run/token;
}
router {
    cdn alpha;
    listen 127.0.1.53:5300;
    listen_http 127.0.1.53:8080;
    poll_interval 1s;
    zone example.test {
        ns ns1.example.test;
        record ns1 A 127.0.1.53;
        record alpha-1 A $switch_addr;
        record beta-1 A 127.0.2.10;
        service www;
    }
    node alpha-1 {
        address $switch_addr;
        status $switch_addr:9000;
        redirect https://alpha-1.example.test:8443;
    }
    learned_handoff ecs;              # beta's areas come from its advertisements
    area 0.0.0.0/0 alpha-1;
    area ::/0 alpha-1;
    area 192.0.2.0/24 alpha-1;
}
# Peering with beta: we advertise our area, and learn beta's (198.51.100.0/24,
# 127.0.2.0/24) with the hand-offs beta gives: an ECS query to its router, or
# a redirect to its redirector.
peer {
    cdn alpha;
    listen 127.0.1.53:7179;
    cert $run/alpha-peer.pem;
    key $run/alpha-peer.key;
    hold_time 9s;
    area 192.0.2.0/24;
    publisher $host;
    handoff cname cdn.alpha.test;
    handoff http http://127.0.1.53:8080;
    neighbor beta {
        address 127.0.2.53:7179;
        ca $run/ca.pem;
    }
}
CONF

cat > beta-router.conf <<CONF
# CDN beta's request routing.
error_log $run/beta-router.log;
admin {
    listen 127.0.2.53:9000;
    token_file $run/token;
}
router {
    cdn beta;
    listen 127.0.2.53:5300;
    listen_http 127.0.2.53:8080;
    poll_interval 1s;
    zone cdn.beta.test {
        ns ns1.cdn.beta.test;
        record ns1 A 127.0.2.53;
        service www;
    }
    zone example.test {
        ns ns1.cdn.beta.test.;
        service www;
    }
    node beta-1 {
        address 127.0.2.10;
        status 127.0.2.10:9000;
        redirect https://beta-1.example.test:8443;
    }
    area 198.51.100.0/24 beta-1;
    area 127.0.2.0/24 beta-1;
}
peer {
    cdn beta;
    listen 127.0.2.53:7179;
    cert $run/beta-peer.pem;
    key $run/beta-peer.key;
    hold_time 9s;
    area 198.51.100.0/24;
    area 127.0.2.0/24;
    publisher $host;
    handoff ecs 127.0.2.53:5300;
    handoff http http://127.0.2.53:8080;
    neighbor alpha {
        address 127.0.1.53:7179;
        ca $run/ca.pem;
    }
}
CONF

for c in origin.conf cache1.conf cache2.conf cache3.conf switch.conf \
         b-cache1.conf b-cache2.conf b-cache3.conf b-switch.conf alpha-router.conf beta-router.conf; do
    "$ferryd" -t -c "$c" >/dev/null
done

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
for i in $caches; do
    "$ferryd" -c cache$i.conf & pids="$pids $!"
done
"$ferryd" -c switch.conf & pids="$pids $!"
for i in $caches; do
    "$ferryd" -c b-cache$i.conf & pids="$pids $!"
done
"$ferryd" -c b-switch.conf & pids="$pids $!"
"$ferryd" -c alpha-router.conf & pids="$pids $!"
"$ferryd" -c beta-router.conf & pids="$pids $!"

# Wait until both answer (poll, bounded).
i=0
ready() {
    curl -sf -o /dev/null "http://$origin_addr:8080/" || return 1
    for a in 127.0.1.11 127.0.1.12 127.0.1.13 $switch_addr 127.0.2.11 127.0.2.12 127.0.2.13 127.0.2.10 \
             127.0.1.53 127.0.2.53; do
        curl -sf -o /dev/null "http://$a:9000/readyz" || return 1
    done
}
# ... and until alpha's router has learned beta's areas by advertisement.
learned() {
    "$ferryctl" -c alpha-router.conf route 198.51.100.7 www.example.test 2>/dev/null | grep -q '"learned": *true'
}
until ready && learned; do
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
  {"name": "alpha-router", "cdn": "alpha", "role": "router", "address": "127.0.1.53",
   "ports": {"dns": 5300, "http": 8080, "admin": 9000, "peer": 7179}, "zones": ["example.test"],
   "areas": ["192.0.2.0/24", "127.0.0.0/8"]},
  {"name": "beta-router", "cdn": "beta", "role": "router", "address": "127.0.2.53",
   "ports": {"dns": 5300, "http": 8080, "admin": 9000, "peer": 7179}, "zones": ["cdn.beta.test", "example.test"],
   "areas": ["198.51.100.0/24", "127.0.2.0/24"]},
  {"name": "demo-switch", "cdn": "alpha", "role": "switch", "address": "$switch_addr",
   "ports": {"https": 8443, "http": 8080, "admin": 9000}},
  {"name": "demo-cache-1", "cdn": "alpha", "role": "cache", "label": 1, "address": "127.0.1.11",
   "ports": {"https": 8443, "http": 8080, "admin": 9000}},
  {"name": "demo-cache-2", "cdn": "alpha", "role": "cache", "label": 2, "address": "127.0.1.12",
   "ports": {"https": 8443, "http": 8080, "admin": 9000}},
  {"name": "demo-cache-3", "cdn": "alpha", "role": "cache", "label": 3, "address": "127.0.1.13",
   "ports": {"https": 8443, "http": 8080, "admin": 9000}},
  {"name": "demo-b-switch", "cdn": "beta", "node": "b", "role": "switch", "address": "127.0.2.10",
   "ports": {"https": 8443, "admin": 9000}},
  {"name": "demo-b-cache-1", "cdn": "beta", "node": "b", "role": "cache", "session_store": "group",
   "address": "127.0.2.11", "ports": {"https": 8443, "admin": 9000, "session-sync": 7400}},
  {"name": "demo-b-cache-2", "cdn": "beta", "node": "b", "role": "cache", "session_store": "group",
   "address": "127.0.2.12", "ports": {"https": 8443, "admin": 9000, "session-sync": 7400}},
  {"name": "demo-b-cache-3", "cdn": "beta", "node": "b", "role": "cache", "session_store": "group",
   "address": "127.0.2.13", "ports": {"https": 8443, "admin": 9000, "session-sync": 7400}}
 ]}
JSON
mv topology.json.tmp topology.json

cat <<TXT
Ferry demo is running (Ctrl-C stops it). Topology: $run/topology.json

Request routing. Alpha's router answers a client of its own area with node A's switch,
and a client of beta's area (as its resolver's ECS subnet shows) with beta's node,
after asking beta's router:
  dig @127.0.1.53 -p 5300 www.example.test +subnet=192.0.2.0/24       # 127.0.1.10 (alpha)
  dig @127.0.1.53 -p 5300 www.example.test +subnet=198.51.100.0/24    # 127.0.2.10 (beta)
  kdig @127.0.1.53 -p 5300 www.example.test +tcp +subnet=198.51.100.7
Beta's router would send alpha's clients back by CNAME; the loop guard in the name
keeps a misrouted client from bouncing:
  dig @127.0.2.53 -p 5300 www.cdn.beta.test +subnet=192.0.2.0/24      # CNAME fp--beta.www.cdn.alpha.test
  dig @127.0.2.53 -p 5300 fp--alpha.www.cdn.beta.test +subnet=192.0.2.0/24  # stays with beta
HTTP redirects (the client address decides: 127.0.1.x is alpha's, 127.0.2.x beta's):
  curl -si http://127.0.1.53:8080/static/app.css -H 'Host: $host' | grep -i location
  curl -si --interface 127.0.2.1 http://127.0.1.53:8080/static/app.css -H 'Host: $host' | grep -i location
  curl -sL --cacert $run/ca.pem --resolve alpha-1.example.test:8443:$switch_addr -H 'Host: $host' http://127.0.1.53:8080/static/app.css
  curl -sL --cacert $run/ca.pem --resolve beta-1.example.test:8443:127.0.2.10 --interface 127.0.2.1 -H 'Host: $host' http://127.0.1.53:8080/static/app.css
  $ferryctl -c $run/alpha-router.conf router
  $ferryctl -c $run/alpha-router.conf route 198.51.100.7 www.example.test
Peering: beta's areas reached alpha's router by advertisement, not by config:
  $ferryctl -c $run/alpha-router.conf peers
  $ferryctl -c $run/alpha-router.conf routes
  $ferryctl -c $run/beta-router.conf routes 192.0.2.0/24

Through the switch (it routes each TLS session back to the cache that holds it):
  curl -si --cacert $run/ca.pem --resolve $host:8443:$switch_addr https://$host:8443/
  openssl s_client -connect $switch_addr:8443 -servername $host -CAfile $run/ca.pem -sess_out $run/sess.pem </dev/null
  openssl s_client -connect $switch_addr:8443 -servername $host -CAfile $run/ca.pem -sess_in $run/sess.pem </dev/null | grep Reused
  $ferryctl -c $run/switch.conf switch
Plain HTTP (the switch hashes the URL, so each object lives on one cache):
  curl -si -H 'Host: $host' http://$switch_addr:8080/static/app.css     # twice: MISS, then HIT
  curl -s -o /dev/null -w '%{http_code} %{size_download}\n' -H 'Host: $host' http://$switch_addr:8080/static/big.bin
Node B shares session state instead: its switch is plain round robin, yet every
reconnection resumes, on whichever cache it lands (TLS 1.2 through the group store,
TLS 1.3 through the group's ticket keys):
  openssl s_client -connect 127.0.2.10:8443 -servername $host -CAfile $run/ca.pem -tls1_2 -no_ticket -sess_out $run/b.pem </dev/null
  openssl s_client -connect 127.0.2.10:8443 -servername $host -CAfile $run/ca.pem -tls1_2 -no_ticket -sess_in $run/b.pem </dev/null | grep Reused
  $ferryctl -c $run/b-cache2.conf sessions
A cache directly, and its admin API:
  curl -si -H 'Host: $host' http://127.0.1.11:8080/
  $ferryctl -c $run/cache1.conf stats
  $ferryctl -c $run/cache1.conf purge http://$host/static/app.css
  $ferryctl -c $run/cache1.conf expire --prefix http://$host/ 0
  curl -s http://127.0.1.11:9000/metrics | grep ferry_
  tail -f $run/access1.log
TXT

wait
