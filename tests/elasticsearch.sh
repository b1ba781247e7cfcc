#!/usr/bin/env bash
# A throw-away single-node Elasticsearch for the test suite and benchmarks.
#
#   tests/elasticsearch.sh start        start one; prints its URL (only that) on stdout, exits 0 once
#                                       the cluster is yellow/green; progress and errors go to stderr
#   tests/elasticsearch.sh stop [URL]   stop the one at URL (default: $IMGRAG_TEST_ES_URL; if that is
#                                       unset too, every server this script started)
#   tests/elasticsearch.sh status       list the servers this script started and still runs
#
# The server is Maven Central's `org.elasticsearch.distribution.integ-test-zip:elasticsearch` zip
# (server + x-pack core/security, no bundled JDK), fetched with `mvn dependency:get` into ~/.m2 once,
# unpacked once outside the repository, and run with a JDK >= 21. Each start gets a fresh data
# directory under /tmp, 127.0.0.1 only, security off, a 512 MB heap and relaxed disk watermarks.
# Elasticsearch refuses to run as root: under root the server runs as `nobody` (setpriv).
#
# Settings (environment):
#   IMGRAG_ES_VERSION    version to use; default: the first of $CANDIDATES that resolves
#   IMGRAG_ES_DIST_DIR   where distributions are unpacked (default ~/.cache/imgrag/es, or
#                        /var/tmp/imgrag-es when running as root, so that `nobody` can read it)
#   IMGRAG_ES_JAVA_HOME  a JDK >= 21 (default: /usr/lib/jvm/temurin-25-jdk-amd64, else $JAVA_HOME)
#   IMGRAG_ES_HEAP       heap size (default 512m)
#   IMGRAG_ES_PORT       HTTP port (default 9200 if free, else a free one)
#   IMGRAG_ES_WAIT       seconds to wait for the cluster (default 120)
#   IMGRAG_ES_DATA       data directory (default: a fresh one in the run's folder, removed at stop);
#                        kept at stop, so a later start serves the same indices (benchmarks' --keep)
set -uo pipefail

CANDIDATES="9.5.4 9.5.3 9.5.2 9.5.0 9.2.4 9.2.0"
GROUP=org.elasticsearch.distribution.integ-test-zip
ARTIFACT=elasticsearch
RUN_ROOT=/tmp/imgrag-es-runs
HEAP=${IMGRAG_ES_HEAP:-512m}
WAIT=${IMGRAG_ES_WAIT:-120}
M2=${MAVEN_REPO:-$HOME/.m2/repository}

say() { echo "elasticsearch.sh: $*" >&2; }
die() { say "ERROR: $*"; exit 1; }

is_root() { [ "$(id -u)" = 0 ]; }
as_server_user() {  # run a command as the user the server runs as
  if is_root; then setpriv --reuid=65534 --regid=65534 --clear-groups -- "$@"; else "$@"; fi
}

zip_path() { echo "$M2/${GROUP//.//}/$ARTIFACT/$1/$ARTIFACT-$1.zip"; }

fetch() {  # fetch() VERSION -> 0 if the zip is in ~/.m2 afterwards
  local v=$1 zip
  zip=$(zip_path "$v")
  [ -s "$zip" ] && return 0
  command -v mvn >/dev/null || { say "mvn is not installed and $zip is missing"; return 1; }
  say "fetching $GROUP:$ARTIFACT:$v:zip from Maven Central (once) ..."
  mvn -q -B dependency:get -Dartifact="$GROUP:$ARTIFACT:$v:zip" -Dtransitive=false >&2 2>/dev/null || true
  [ -s "$zip" ]
}

pick_version() {
  if [ -n "${IMGRAG_ES_VERSION:-}" ]; then
    fetch "$IMGRAG_ES_VERSION" || die "could not fetch Elasticsearch $IMGRAG_ES_VERSION from Maven Central ($GROUP:$ARTIFACT:$IMGRAG_ES_VERSION:zip); unset IMGRAG_ES_VERSION to use a default"
    echo "$IMGRAG_ES_VERSION"; return
  fi
  local v
  for v in $CANDIDATES; do [ -s "$(zip_path "$v")" ] && { echo "$v"; return; }; done
  for v in $CANDIDATES; do fetch "$v" && { echo "$v"; return; }; done
  die "none of Elasticsearch $CANDIDATES could be fetched from Maven Central ($GROUP:$ARTIFACT); check network/proxy settings of mvn (~/.m2/settings.xml) or set IMGRAG_ES_VERSION"
}

java_home() {
  local j
  for j in "${IMGRAG_ES_JAVA_HOME:-}" "${ES_JAVA_HOME:-}" /usr/lib/jvm/temurin-25-jdk-amd64 "${JAVA_HOME:-}" /usr/lib/jvm/temurin-21-jdk-amd64; do
    [ -n "$j" ] && [ -x "$j/bin/java" ] || continue
    local major
    major=$("$j/bin/java" -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java.specification.version = //p')
    [ -n "$major" ] && [ "${major%%.*}" -ge 21 ] 2>/dev/null && { echo "$j"; return; }
  done
  die "no JDK >= 21 found; set IMGRAG_ES_JAVA_HOME (e.g. /usr/lib/jvm/temurin-25-jdk-amd64)"
}

dist_dir() {
  if [ -n "${IMGRAG_ES_DIST_DIR:-}" ]; then echo "$IMGRAG_ES_DIST_DIR"
  elif is_root; then echo /var/tmp/imgrag-es
  else echo "$HOME/.cache/imgrag/es"; fi
}

unpack() {  # unpack() VERSION -> prints ES_HOME; idempotent, atomic
  local v=$1 base home tmp
  base=$(dist_dir); home="$base/$v"
  if [ -x "$home/bin/elasticsearch" ] && [ -f "$home/.complete" ]; then echo "$home"; return; fi
  mkdir -p "$base" || die "cannot create $base (set IMGRAG_ES_DIST_DIR)"
  tmp=$(mktemp -d "$base/.unpack.XXXXXX")
  say "unpacking Elasticsearch $v into $home (once) ..."
  unzip -q "$(zip_path "$v")" -d "$tmp" || { rm -rf "$tmp"; die "cannot unzip $(zip_path "$v") (corrupt? delete it and retry)"; }
  [ -d "$tmp/elasticsearch-$v" ] || { rm -rf "$tmp"; die "unexpected layout in $(zip_path "$v")"; }
  touch "$tmp/elasticsearch-$v/.complete"
  chmod -R a+rX "$tmp/elasticsearch-$v"
  if ! mv -T "$tmp/elasticsearch-$v" "$home" 2>/dev/null; then
    [ -f "$home/.complete" ] || { rm -rf "$tmp"; die "cannot move the distribution into $home"; }
  fi
  chmod a+rx "$base"
  rm -rf "$tmp"
  echo "$home"
}

port_free() {
  python3 - "$1" <<'EOF' 2>/dev/null
import socket, sys
s = socket.socket()
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError:
    sys.exit(1)
EOF
}

claim() {  # claim PORT: atomically take $RUN_ROOT/PORT if the port is free and no live run owns it
  local p=$1 run="$RUN_ROOT/$1" pid
  port_free "$p" || return 1
  if ! mkdir "$run" 2>/dev/null; then
    pid=$(cat "$run/pid" 2>/dev/null || true)
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then return 1; fi
    # no live server: a crashed run, or another start still booting (then leave it alone)
    [ -n "$(find "$run" -maxdepth 0 -mmin +5 2>/dev/null)" ] || [ -f "$run/pid" ] || return 1
    rm -rf "$run"
    mkdir "$run" 2>/dev/null || return 1
  fi
  return 0
}

free_port() {  # picks and claims a port (concurrent starts never share one)
  if [ -n "${IMGRAG_ES_PORT:-}" ]; then
    claim "$IMGRAG_ES_PORT" || die "IMGRAG_ES_PORT=$IMGRAG_ES_PORT is in use"
    echo "$IMGRAG_ES_PORT"; return
  fi
  local p
  for p in 9200 $(seq 9201 9299); do claim "$p" && { echo "$p"; return; }; done
  die "no free port in 9200-9299; set IMGRAG_ES_PORT"
}

health() { curl -s -m 3 "http://127.0.0.1:$1/_cluster/health?wait_for_status=yellow&timeout=2s" 2>/dev/null; }

stop_run() {  # stop_run RUNDIR
  local run=$1 pid i
  pid=$(cat "$run/pid" 2>/dev/null || true)
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill "$pid" 2>/dev/null
    for i in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    kill -0 "$pid" 2>/dev/null && { say "server $pid did not stop in 30 s: killing it"; kill -9 "$pid" 2>/dev/null; }
  fi
  rm -rf "$run"
}

cmd_start() {
  command -v unzip >/dev/null || die "unzip is not installed"
  command -v curl >/dev/null || die "curl is not installed"
  local version home jh port run pid i out status
  version=$(pick_version) || exit 1
  home=$(unpack "$version") || exit 1
  jh=$(java_home) || exit 1
  if is_root && ! as_server_user test -r "$home/lib" -a -x "$home/bin/elasticsearch"; then
    die "user nobody cannot read $home: set IMGRAG_ES_DIST_DIR to a world-readable folder"
  fi
  mkdir -p "$RUN_ROOT" && chmod 1777 "$RUN_ROOT"
  port=$(free_port) || exit 1
  run="$RUN_ROOT/$port"
  local data=${IMGRAG_ES_DATA:-$run/data}
  mkdir -p "$data" "$run/logs" "$run/tmp" "$run/config"
  is_root && chown -R 65534:65534 "$data"
  cp -r "$home/config/." "$run/config/"
  printf '%s\n' "-Xms$HEAP" "-Xmx$HEAP" >"$run/config/jvm.options.d/heap.options" 2>/dev/null \
    || { mkdir -p "$run/config/jvm.options.d"; printf '%s\n' "-Xms$HEAP" "-Xmx$HEAP" >"$run/config/jvm.options.d/heap.options"; }
  echo "$version" >"$run/version"
  is_root && chown -R 65534:65534 "$run"
  say "starting Elasticsearch $version on 127.0.0.1:$port (data: $data, log: $run/logs/imgrag-test.log)"
  (
    cd "$run" || exit 1
    export ES_JAVA_HOME="$jh" JAVA_HOME="$jh" ES_PATH_CONF="$run/config" ES_TMPDIR="$run/tmp" HOME="$run"
    unset ES_JAVA_OPTS JAVA_TOOL_OPTIONS
    exec setsid bash -c 'exec "$@"' _ $(is_root && echo setpriv --reuid=65534 --regid=65534 --clear-groups --) \
      "$home/bin/elasticsearch" -d -p "$run/pid" \
      -Ecluster.name=imgrag-test -Enode.name="imgrag-test-$port" \
      -Ediscovery.type=single-node -Enetwork.host=127.0.0.1 -Ehttp.port="$port" \
      -Epath.data="$data" -Epath.logs="$run/logs" \
      -Expack.security.enabled=false \
      -Ecluster.routing.allocation.disk.threshold_enabled=false \
      -Eaction.destructive_requires_name=false
  ) </dev/null >"$run/stdout.log" 2>&1 &
  local launcher=$!
  for i in $(seq 1 $((WAIT * 2))); do
    out=$(health "$port")
    status=$(printf '%s' "$out" | sed -n 's/.*"status":"\([a-z]*\)".*/\1/p')
    if { [ "$status" = green ] || [ "$status" = yellow ]; } \
      && [ "$(curl -s -m 3 "http://127.0.0.1:$port/_cat/nodes?h=name" 2>/dev/null | tr -d '[:space:]')" = "imgrag-test-$port" ]; then
      say "Elasticsearch $version is $status at http://127.0.0.1:$port (pid $(cat "$run/pid" 2>/dev/null))"
      echo "http://127.0.0.1:$port"
      return 0
    fi
    pid=$(cat "$run/pid" 2>/dev/null || true)
    if [ -z "$pid" ] && ! kill -0 "$launcher" 2>/dev/null; then break; fi
    if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then break; fi
    sleep 0.5
  done
  say "ERROR: Elasticsearch $version did not become yellow/green on port $port within ${WAIT}s"
  say "---- launcher output ($run/stdout.log) ----"
  tail -n 20 "$run/stdout.log" >&2 2>/dev/null
  say "---- server log tail ($run/logs/imgrag-test.log) ----"
  tail -n 40 "$run/logs/imgrag-test.log" >&2 2>/dev/null
  cp "$run/logs/imgrag-test.log" "/tmp/imgrag-es-failed-$port.log" 2>/dev/null && say "full log kept in /tmp/imgrag-es-failed-$port.log"
  kill "$launcher" 2>/dev/null
  stop_run "$run"
  exit 1
}

cmd_stop() {
  local target=${1:-${IMGRAG_TEST_ES_URL:-}} port run n=0
  if [ -n "$target" ]; then
    port=${target##*:}; port=${port%%/*}
    run="$RUN_ROOT/$port"
    [ -d "$run" ] || { say "no server started by this script on port $port"; return 0; }
    stop_run "$run"; say "stopped the server on port $port"; return 0
  fi
  for run in "$RUN_ROOT"/*/; do
    [ -f "$run/version" ] || continue
    stop_run "${run%/}"; n=$((n + 1))
  done
  say "stopped $n server(s)"
}

cmd_status() {
  local run pid
  for run in "$RUN_ROOT"/*/; do
    [ -f "$run/version" ] || continue
    pid=$(cat "$run/pid" 2>/dev/null || true)
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
      echo "http://127.0.0.1:$(basename "$run") $(cat "$run/version") pid $pid"
    fi
  done
}

case "${1:-}" in
  start) cmd_start ;;
  stop) shift; cmd_stop "${1:-}" ;;
  status) cmd_status ;;
  *) echo "usage: $0 start|stop [URL]|status" >&2; exit 2 ;;
esac
