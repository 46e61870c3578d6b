#!/usr/bin/env bash
# A real two-node Ray cluster on this machine: a fleet replay submitted to the head's address, and
# proof from Ray's state API (ray.util.state.list_tasks) that its tasks ran on both nodes.
#
#   benchmarks/fleet_cluster.sh OUT_DIR LOG_OR_FOLDER... [-- more `fleet replay` arguments]
#
# Each node gets 1 CPU, so two tasks at once must run on two nodes. The nodes get their own
# --temp-dir and free ports (no clash with anyone's Ray on this host); at exit, success or not,
# exactly the processes of this run are stopped. Most of Ray's processes (client server, dashboard
# agents, workers) do not name the temp dir on their command line, so a process is this run's when
#   - it is in the session of a node: each `ray start` runs in a new session (setsid), which every
#     process it and its raylet start inherits;
#   - or its environment holds PRESCIENT_FLEET_CLUSTER=<this run's temp dir>, exported before
#     `ray start` (not enough alone: Ray's setproctitle overwrites the environment that /proc shows);
#   - or its command line names this run's temp dir.
# They get TERM, up to 10 s, then KILL; then once more for any process a dying node started
# meanwhile. The temp dir, marker and node sessions are printed to stderr as the script goes.
# Not `ray stop`: that stops every Ray process of the host, other users' included.
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
export PRESCIENT_FLEET_CLUSTER=$RUN  # inherited by everything started from here on
MARK=PRESCIENT_FLEET_CLUSTER=$RUN
SIDS=()  # the session of each node started (that of its `ray start`)
echo "fleet_cluster: run $RUN; its processes carry $MARK" >&2

# Does process $1 carry $MARK in its environment or name $RUN on its command line? Here and below
# bash builtins only: a helper process forked from here would itself carry $MARK. Errors (another
# user's process, one that is gone) read as "no".
marked() {
  local e
  while IFS= read -r -d '' e || [[ -n $e ]]; do
    [[ $e == "$MARK" ]] && return 0
  done 2>/dev/null < "/proc/$1/environ"
  while IFS= read -r -d '' e || [[ -n $e ]]; do
    [[ $e == *"$RUN"* ]] && return 0
  done 2>/dev/null < "/proc/$1/cmdline"
  return 1
}

# Is process $1 one of this run's and alive (a zombie is dead: only its parent can reap it):
# marked, or in the session of one of its nodes? A node's session leader, its `ray start`, has
# exited; should another process have got its pid since and lead a session of the same id, that one
# is not marked, and the id is trusted no more.
ours() {
  local st state sid s
  read -r st 2>/dev/null < "/proc/$1/stat" || return 1
  read -r state _ _ sid _ <<< "${st##*) }"  # after "pid (comm) ": state ppid pgrp session
  [[ $state != [ZX] ]] || return 1
  marked "$1" && return 0
  for s in "${SIDS[@]}"; do
    if [[ $sid == "$s" ]] && { [[ ! -e /proc/$s ]] || marked "$s"; }; then return 0; fi
  done
  return 1
}

# One round: TERM this run's processes (never this script, which carries $MARK too, nor its
# ancestors), wait up to 10 s for them to go, KILL what is left.
stop_round() {
  local -A skip=()
  local p=$$ k v d found=() left=() i
  while [[ -n $p && $p != 0 && -z ${skip[$p]:-} ]]; do
    skip[$p]=1
    v=
    while read -r k v; do [[ $k == PPid: ]] && break; v=; done 2>/dev/null < "/proc/$p/status"
    p=$v
  done
  for d in /proc/[0-9]*; do
    p=${d#/proc/}
    if [[ -z ${skip[$p]:-} ]] && ours "$p"; then found+=("$p"); fi
  done
  [[ ${#found[@]} -gt 0 ]] || return 0
  kill -TERM "${found[@]}" 2>/dev/null || true
  for ((i = 0; i < 50; i++)); do
    left=()
    for p in "${found[@]}"; do if ours "$p"; then left+=("$p"); fi; done
    [[ ${#left[@]} -gt 0 ]] || return 0
    sleep 0.2
  done
  kill -KILL "${left[@]}" 2>/dev/null || true
}

stop_nodes() {
  [[ -n ${RUN:-} ]] || return 0
  stop_round
  stop_round  # a dying raylet may have started workers after the first scan
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
# Each `ray start` in a session of its own (setsid execs it: a background child of this shell is no
# process group leader), so its pid is the node's session id.
# shellcheck disable=SC2046
setsid "$RAY" start --head --num-cpus 1 --port "$GCS_PORT" --node-ip-address 127.0.0.1 --temp-dir "$RUN/head" \
  --include-dashboard true --dashboard-host 127.0.0.1 --dashboard-port "$DASH_PORT" \
  --ray-client-server-port "${P[14]}" $(node_ports 0) > "$RUN/head.log" 2>&1 &
SIDS+=("$!")
echo "fleet_cluster: head node session $!" >&2
wait "$!" || { echo "fleet_cluster: the head node did not start:" >&2; tail -5 "$RUN/head.log" >&2; exit 1; }
# shellcheck disable=SC2046
setsid "$RAY" start --address "$ADDRESS" --num-cpus 1 --node-ip-address 127.0.0.1 --temp-dir "$RUN/worker" \
  $(node_ports 6) > "$RUN/worker.log" 2>&1 &
SIDS+=("$!")
echo "fleet_cluster: second node session $!" >&2
wait "$!" || { echo "fleet_cluster: the second node did not start:" >&2; tail -5 "$RUN/worker.log" >&2; exit 1; }
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
