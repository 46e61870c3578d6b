#!/usr/bin/env bash
# `make docker-smoke`: build the image offline and check that the compose stack predicts.
#
#  1. docker.io, debootstrap and compose from apt if missing; dockerd started if not running
#  2. local base image (debootstrap bookworm + docker import; cached)   .ci/docker/make_base.sh
#  3. wheelhouse from the host's pip (cached)                             .ci/docker/make_wheelhouse.sh cpu
#  4. docker build of the CPU image (Dockerfile) with BASE_IMAGE=the local base; the build compiles
#     the numba kernels into the image (its log shows `numba warm-up: ... 0 kernels compiled`)
#  5. compose up; wait until predictions flow (FIRST_PREDICTION_S, default 15 s, after compose up,
#     else FAIL: the baked numba cache makes the processes live in ~2 s); measure SMOKE_SECONDS (default 20) with
#     `prescient-healthcheck flow` inside the planner container; container health states;
#     the planner's end-to-end summary and the recorder's log (`prescient log info`) after stopping
#  6. PASS/FAIL with the numbers; everything torn down (containers, network, volume) on exit.
#
# Needs root (apt, dockerd) or a user in the docker group with everything installed, and the
# project's venv (`make setup`; `make docker-smoke` makes it first): its pip fills the wheelhouse and
# its python reads the budgets. Works from a fresh clone.
# Writes runs/docker/ (gitignored): build.log, dockerd.log, flow.json, stack-logs.txt.
set -euo pipefail
cd "$(dirname "$0")/../.."
VENV="${VENV:-.venv}"  # the Makefile's
PY="$VENV/bin/python"
[ -x "$PY" ] || { echo "no $PY: run \`make setup\` first (or \`make docker-smoke\`, which does)" >&2; exit 1; }

BASE_TAG="${BASE_TAG:-prescient-base:bookworm}"
IMAGE="${IMAGE:-prescient:latest}"
PROJECT="${PROJECT:-prescient-smoke}"
SMOKE_SECONDS="${SMOKE_SECONDS:-20}"
START_TIMEOUT_S="${START_TIMEOUT_S:-90}"
FIRST_PREDICTION_S="${FIRST_PREDICTION_S:-15}"
OUT=runs/docker
mkdir -p "$OUT"

say() { printf '\n== %s\n' "$*"; }
fail() { printf '\nFAIL: %s\n' "$*"; exit 1; }

# ---- 1. tools -----------------------------------------------------------------------------------
need_apt=()
command -v dockerd >/dev/null || need_apt+=(docker.io)
command -v debootstrap >/dev/null || need_apt+=(debootstrap)
if docker compose version >/dev/null 2>&1; then
  COMPOSE=(docker compose)
elif command -v docker-compose >/dev/null; then
  COMPOSE=(docker-compose)
else
  need_apt+=(docker-compose)  # Debian bookworm ships compose 1.29 as `docker-compose`
  COMPOSE=(docker-compose)
fi
if ((${#need_apt[@]})); then
  say "installing ${need_apt[*]}"
  [ "$(id -u)" = 0 ] || fail "need root to install ${need_apt[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi
if ! docker info >/dev/null 2>&1; then
  say "starting dockerd (log: $OUT/dockerd.log)"
  [ "$(id -u)" = 0 ] || fail "dockerd is not running and only root can start it"
  nohup dockerd >"$OUT/dockerd.log" 2>&1 &
  for _ in $(seq 60); do docker info >/dev/null 2>&1 && break; sleep 0.5; done
  docker info >/dev/null 2>&1 || { tail -20 "$OUT/dockerd.log"; fail "dockerd did not come up"; }
fi
echo "docker server $(docker version --format '{{.Server.Version}}'), compose: ${COMPOSE[*]} $("${COMPOSE[@]}" version --short 2>/dev/null || true)"

# ---- 2-4. base, wheelhouse, image ----------------------------------------------------------------
say "base image $BASE_TAG"
.ci/docker/make_base.sh "$BASE_TAG"
say "wheelhouse"
PIP="$VENV/bin/pip" .ci/docker/make_wheelhouse.sh cpu
say "docker build $IMAGE (log: $OUT/build.log)"
t0=$SECONDS
# The classic builder: works offline with a `docker import`ed base (BuildKit would look it up in a
# registry on older engines).
if ! DOCKER_BUILDKIT=0 docker build --build-arg BASE_IMAGE="$BASE_TAG" -t "$IMAGE" . >"$OUT/build.log" 2>&1; then
  tail -30 "$OUT/build.log"
  fail "docker build failed"
fi
grep -E '^onnxruntime |^numba warm-up' "$OUT/build.log" || true
echo "built $IMAGE in $((SECONDS - t0)) s, $(docker image inspect "$IMAGE" --format '{{.Size}}' | awk '{printf "%.0f MB", $1/1e6}')"

# ---- 5. the stack ---------------------------------------------------------------------------------
compose() { "${COMPOSE[@]}" -p "$PROJECT" -f compose.yaml "$@"; }
teardown() {
  compose logs --no-color >"$OUT/stack-logs.txt" 2>&1 || true
  compose down -v --remove-orphans >/dev/null 2>&1 || true
  echo "stack torn down (logs: $OUT/stack-logs.txt)"
}
trap teardown EXIT
compose down -v --remove-orphans >/dev/null 2>&1 || true
say "compose up (project $PROJECT)"
compose up -d
t0=$SECONDS
until compose exec -T planner prescient-healthcheck flow --duration-s 3 --min-predictions 1 >/dev/null 2>&1; do
  if ((SECONDS - t0 > START_TIMEOUT_S)); then
    compose ps
    compose logs --no-color --tail 15
    fail "no predictions and planner verdicts within ${START_TIMEOUT_S} s"
  fi
  sleep 2
done
first_s=$((SECONDS - t0))
echo "predictions flowing ${first_s} s after compose up (budget ${FIRST_PREDICTION_S} s)"

say "measuring ${SMOKE_SECONDS} s"
flow_rc=0
# Targets: >= 9 Hz, <= 5 % degraded, end-to-end p99 within the budget of benchmarks/budgets.toml.
P99_BUDGET_MS="$("$PY" -c "import tomllib; print(tomllib.load(open('benchmarks/budgets.toml', 'rb'))['e2e']['p99_ms'])")"
compose exec -T planner prescient-healthcheck flow --duration-s "$SMOKE_SECONDS" \
  --min-rate-hz 9 --max-degraded-share 0.05 --p99-budget-ms "$P99_BUDGET_MS" >"$OUT/flow.json" || flow_rc=$?
cat "$OUT/flow.json"

say "container health"
unhealthy=0
for svc in bus sim service planner recorder; do
  cid="$(compose ps -q "$svc")"
  state="$(docker inspect --format '{{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{end}} restarts={{.RestartCount}}' "$cid")"
  printf '%-9s %s\n' "$svc" "$state"
  [[ "$state" == "running healthy "* ]] || unhealthy=$((unhealthy + 1))
done
for svc in bus sim service planner recorder; do
  docker inspect --format '{{if .State.Health}}{{range .State.Health.Log}}{{.Output}}{{end}}{{end}}' "$(compose ps -q "$svc")" \
    | grep -E '^(healthy|unhealthy)' | tail -1 | sed "s/^/  $svc: /" || true
done

say "stopping (planner and recorder print their summaries)"
compose stop -t 10 planner recorder service sim >/dev/null 2>&1
compose logs --no-color service | grep -E 'provider in use|loaded model|not found|service stopped' | sed 's/^[^|]*| //' | tail -4 || true
compose logs --no-color planner | grep -E 'planner: ' | sed 's/^[^|]*| //' | tail -1 || true
vol="${PROJECT}_recordings"
docker run --rm -v "$vol:/data:ro" --entrypoint prescient "$IMAGE" log info /data/stack.mcap 2>&1 | head -25 || true

# ---- 6. verdict ------------------------------------------------------------------------------------
"$PY" - "$OUT/flow.json" "$flow_rc" "$unhealthy" "$first_s" "$FIRST_PREDICTION_S" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
flow_rc, unhealthy = int(sys.argv[2]), int(sys.argv[3])
first_s, first_budget_s = int(sys.argv[4]), float(sys.argv[5])
e2e = r["e2e_ms"]
line = (
    f"{r['predictions']} predictions in {r['seconds']:.0f} s ({r['rate_hz']} Hz, {r['agents_mean']} agents each), "
    f"{r['degraded']} degraded {r['degraded_reasons'] or ''}, nonfinite {r['nonfinite']}, "
    f"provider {r['provider']}, model {','.join(r['model_ids'])}, "
    f"{r['planner_statuses']} planner verdicts, end-to-end p50 {e2e['p50']} ms p99 {e2e['p99']} ms max {e2e['max']} ms, "
    f"{unhealthy} unhealthy containers, first predictions {first_s} s after compose up"
)
late = first_s > first_budget_s
ok = flow_rc == 0 and unhealthy == 0 and not late
print(("\nPASS: " if ok else "\nFAIL: ") + line)
whys = r.get("failures", []) + ([f"{unhealthy} unhealthy containers"] if unhealthy else [])
whys += [f"first predictions after {first_s} s > {first_budget_s:g} s (numba cache not used?)"] if late else []
for why in whys:
    print(f"  why: {why}")
sys.exit(0 if ok else 1)
EOF
