#!/usr/bin/env bash
# A two-node Ray cluster on this machine, on loopback: a head and a second node, each a separate
# `ray start` with its own temp dir and 1 CPU; the second node carries a custom resource
# (`node2: 1`) so `ray status` / `ray.nodes()` tell it apart. Token auth (Ray's default) with a
# token of its own in DIR/token. What tokenmill's cluster test (tests/test_cluster.py) runs.
#
#   deploy/local_cluster.sh up DIR [GCS_PORT [DASHBOARD_PORT]]   start; ~15 s here. Writes DIR/env
#   . DIR/env                                                      RAY_ADDRESS, RAY_AUTH_*, RAY_DASHBOARD
#   tokenmill run CONFIG --ray-address "$RAY_ADDRESS"              attach a run (or: ray job submit
#                                                                  --address "$RAY_DASHBOARD" ...)
#   deploy/local_cluster.sh kill-node2 DIR      SIGKILL the second node: raylet, workers, agents
#   deploy/local_cluster.sh down DIR            stop both nodes (SIGTERM, then SIGKILL)
#
# DIR must be a short path (/tmp/tmc): Ray's socket paths live under it and are limited to 107
# bytes. `ray stop` is not used: it stops every Ray on the machine, not only this cluster's;
# processes are found by their temp dir (DIR/head, DIR/node2) and as children of their raylet.
set -euo pipefail

cmd=${1:?usage: $0 up|down|kill-node2 DIR [GCS_PORT [DASHBOARD_PORT]]}
dir=${2:?usage: $0 up|down|kill-node2 DIR [GCS_PORT [DASHBOARD_PORT]]}
dir=$(realpath -m "$dir")
RAY=${RAY:-$(dirname "$(realpath "$0")")/../.venv/bin/ray}
[ -x "$RAY" ] || RAY=ray

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# PIDs of one node: processes whose command line names its temp dir, and their raylet's children
# (Ray renames worker processes `ray::IDLE`, `ray::call_task`, so their command lines do not).
node_pids() {
  local tmp=$1 pids raylets
  pids=$(pgrep -f -- "$tmp/" || true)
  raylets=$(pgrep -f -- "raylet/raylet .*$tmp/" || true)
  for r in $raylets; do pids="$pids $(pgrep -P "$r" || true)"; done
  echo $pids
}

stop_node() {  # SIGNAL TEMPDIR
  local pids
  pids=$(node_pids "$2")
  [ -n "$pids" ] && kill "-$1" $pids 2>/dev/null || true
}

case "$cmd" in
  up)
    gcs_port=${3:-$(free_port)}
    dash_port=${4:-$(free_port)}
    mkdir -p "$dir"
    [ -s "$dir/token" ] || python3 -c 'import secrets; print(secrets.token_hex(32))' > "$dir/token"
    export RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH="$dir/token" RAY_USAGE_STATS_ENABLED=0
    # jobs (`ray job submit ... -- python -m tokenmill ...`) run with the nodes' PATH: this Python's
    export PATH="$(dirname "$RAY"):$PATH"
    common=(--node-ip-address=127.0.0.1 --num-cpus=1 --object-store-memory=100000000 --disable-usage-stats)
    "$RAY" start --head --port="$gcs_port" --temp-dir="$dir/head" "${common[@]}" \
      --include-dashboard=true --dashboard-host=127.0.0.1 --dashboard-port="$dash_port" > "$dir/head.log" 2>&1 \
      || { cat "$dir/head.log" >&2; exit 1; }
    "$RAY" start --address="127.0.0.1:$gcs_port" --temp-dir="$dir/node2" "${common[@]}" \
      --resources='{"node2": 1}' > "$dir/node2.log" 2>&1 \
      || { cat "$dir/node2.log" >&2; stop_node KILL "$dir/head"; exit 1; }
    cat > "$dir/env" <<ENV
export RAY_ADDRESS=127.0.0.1:$gcs_port
export RAY_DASHBOARD=http://127.0.0.1:$dash_port
export RAY_AUTH_MODE=token
export RAY_AUTH_TOKEN_PATH=$dir/token
ENV
    echo "head 127.0.0.1:$gcs_port (dashboard http://127.0.0.1:$dash_port), node2 up; . $dir/env"
    ;;
  kill-node2)
    stop_node KILL "$dir/node2"
    ;;
  down)
    stop_node TERM "$dir/node2"
    stop_node TERM "$dir/head"
    for _ in $(seq 1 25); do
      [ -z "$(node_pids "$dir/node2")$(node_pids "$dir/head")" ] && break
      sleep 0.2
    done
    stop_node KILL "$dir/node2"
    stop_node KILL "$dir/head"
    ;;
  *)
    echo "usage: $0 up|down|kill-node2 DIR [GCS_PORT [DASHBOARD_PORT]]" >&2
    exit 2
    ;;
esac
