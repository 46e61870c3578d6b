#!/usr/bin/env bash
# A real two-node Ray cluster on this machine: a fleet replay submitted to the head's address, and
# proof from Ray's state API (ray.util.state.list_tasks) that its tasks ran on both nodes.
#
#   benchmarks/fleet_cluster.sh OUT_DIR LOG_OR_FOLDER... [-- more `fleet replay` arguments]
#
# Each node gets 1 CPU, so two tasks at once must run on two nodes. The nodes get their own
# --temp-dir and free ports (no clash with anyone's Ray on this host); at exit, success or not,
# exactly the processes of these two nodes are stopped (those whose command line names this run's
# temp dir). Not `ray stop`: that stops every Ray process of the host, other users' included.
# Writes OUT_DIR (the fleet results) and OUT_DIR/cluster_proof.json; exit 0 when tasks ran on
# both nodes, 1 otherwise, or the fleet replay's own status when that is not 0 or 100+.
set -euo pipefail

if [[ $# -lt 2 ]]; then
  echo "usage: $0 OUT_DIR LOG_OR_FOLDER... [-- fleet replay args]" >&2
  exit 2
fi
OUT=$1
shift
LOGS=()
while [[ $# -gt 0 && $1 != "--" ]]; do LOGS+=("$1"); shift; done
[[ ${1:-} == "--" ]] && shift
EXTRA=("$@")

HERE=$(cd "$(dirname "$0")/.." && pwd)
PY=${PYTHON:-$HERE/.venv/bin/python}
RAY="$(dirname "$PY")/ray"
PRESCIENT="$(dirname "$PY")/prescient"
RUN=$(mktemp -d /tmp/pfc.XXXXXX)  # short: Ray's unix sockets live under it

stop_nodes() {
  local pids=() p
  for p in /proc/[0-9]*; do
    if tr '\0' ' ' < "$p/cmdline" 2>/dev/null | grep -qF -- "$RUN"; then pids+=("${p#/proc/}"); fi
  done
  if [[ ${#pids[@]} -gt 0 ]]; then
    kill -TERM "${pids[@]}" 2>/dev/null || true
    for _ in $(seq 50); do
      local alive=0
      for p in "${pids[@]}"; do [[ -e /proc/$p ]] && alive=1; done
      [[ $alive == 0 ]] && break
      sleep 0.2
    done
    kill -KILL "${pids[@]}" 2>/dev/null || true
  fi
  rm -rf "$RUN"
}
trap stop_nodes EXIT

# Free ports for everything each node listens on.
read -r -a P <<< "$("$PY" - <<'PYEOF'
import socket
socks = [socket.socket() for _ in range(16)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))
PYEOF
)"
node_ports() {  # $1: offset into P
  local o=$1
  echo --node-manager-port "${P[o]}" --object-manager-port "${P[o+1]}" --metrics-export-port "${P[o+2]}" \
    --dashboard-agent-listen-port "${P[o+3]}" --dashboard-agent-grpc-port "${P[o+4]}" \
    --runtime-env-agent-port "${P[o+5]}"
}
GCS_PORT=${P[12]}
DASH_PORT=${P[13]}
ADDRESS=127.0.0.1:$GCS_PORT
# One token for this cluster only (Ray >= 2.5x enables token authentication by default).
export RAY_AUTH_MODE=token RAY_AUTH_TOKEN
RAY_AUTH_TOKEN=$("$PY" -c 'import secrets; print(secrets.token_hex(32))')
export RAY_USAGE_STATS_ENABLED=0

t0=$(date +%s.%N)
# shellcheck disable=SC2046
"$RAY" start --head --num-cpus 1 --port "$GCS_PORT" --node-ip-address 127.0.0.1 --temp-dir "$RUN/head" \
  --include-dashboard true --dashboard-host 127.0.0.1 --dashboard-port "$DASH_PORT" \
  --ray-client-server-port "${P[14]}" $(node_ports 0) > "$RUN/head.log" 2>&1 \
  || { echo "fleet_cluster: the head node did not start:" >&2; tail -5 "$RUN/head.log" >&2; exit 1; }
# shellcheck disable=SC2046
"$RAY" start --address "$ADDRESS" --num-cpus 1 --node-ip-address 127.0.0.1 --temp-dir "$RUN/worker" \
  $(node_ports 6) > "$RUN/worker.log" 2>&1 \
  || { echo "fleet_cluster: the second node did not start:" >&2; tail -5 "$RUN/worker.log" >&2; exit 1; }
t1=$(date +%s.%N)

set +e
"$PRESCIENT" fleet replay "${LOGS[@]}" --address "$ADDRESS" --out "$OUT" "${EXTRA[@]}"
code=$?
set -e
if [[ $code != 0 && $code -lt 100 ]]; then exit "$code"; fi

"$PY" - "$ADDRESS" "$OUT" "$t0" "$t1" <<'PYEOF'
"""Ask Ray's state API where the fleet's tasks ran; write OUT/cluster_proof.json."""
import json
import sys
from pathlib import Path

import ray
from ray.util.state import list_nodes, list_tasks

address, out, t0, t1 = sys.argv[1], Path(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
ray.init(address=address, log_to_driver=False, logging_level="ERROR")
try:
    nodes = {n.node_id: n.node_ip for n in list_nodes(filters=[("state", "=", "ALIVE")])}
    tasks = list_tasks(filters=[("func_or_class_name", "=", "_ray_task")], detail=True, limit=10_000)
finally:
    ray.shutdown()
per_node: dict[str, int] = {}
for t in tasks:
    if t.state == "FINISHED":
        per_node[t.node_id] = per_node.get(t.node_id, 0) + 1
proof = {
    "address": address,
    "alive_nodes": sorted(nodes),
    "finished_tasks_per_node": per_node,
    "tasks_on_both_nodes": len(nodes) == 2 and set(per_node) == set(nodes),
    "cluster_start_s": round(t1 - t0, 2),
}
(out / "cluster_proof.json").write_text(json.dumps(proof, indent=1) + "\n")
print(f"fleet_cluster: {len(nodes)} nodes; finished tasks per node {per_node}")
sys.exit(0 if proof["tasks_on_both_nodes"] else 1)
PYEOF
