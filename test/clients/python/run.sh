#!/usr/bin/env bash
# Generates Python stubs from proto/ with the stock protoc and grpc_python_plugin (Debian's
# protobuf-compiler, protobuf-compiler-grpc, python3-grpcio), starts the built server on
# the embedded default, and runs ingest_client.py against it over gRPC with a token.
set -euo pipefail
cd "$(dirname "$0")/../../.."
PY=${PYTHON:-/usr/bin/python3}
work=$(mktemp -d)
chmod 755 "$work"
gen="$work/gen"
mkdir -p "$gen"
protoc -I proto --python_out="$gen" --grpc_out="$gen" --plugin=protoc-gen-grpc="$(command -v grpc_python_plugin)" \
  proto/google/api/http.proto proto/google/api/annotations.proto \
  proto/dodil/k3/ingest/v1/ingest.proto proto/dodil/k3/pipeline/v1/pipeline.proto

free_port() { node -e "const s=require('net').createServer().listen(0,'127.0.0.1',()=>{console.log(s.address().port);s.close()})"; }
http=$(free_port); grpc=$(free_port); pg=$(free_port)
data="$work/data"
mkdir -p "$data/buckets/kb-python/docs"
printf 'Python users trigger ingests over gRPC. %.0s' $(seq 1 20) >"$data/buckets/kb-python/docs/hello.txt"
env -u DATABASE_URL K3_DATA_DIR="$data" K3_HOST=127.0.0.1 K3_HTTP_PORT="$http" K3_GRPC_PORT="$grpc" K3_EMBEDDED_PG_PORT="$pg" \
  node dist/src/main.js serve >"$work/server.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true; wait $pid 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 1 120); do curl -fsS "http://127.0.0.1:$http/readyz" >/dev/null 2>&1 && break; sleep 0.5; done
token=$(cat "$data/admin-token")
# Twice in a row, as a user reruns an example: the second run finds the pipeline by name.
for run in 1 2; do
  out=$(PYTHONPATH="$gen" "$PY" test/clients/python/ingest_client.py "127.0.0.1:$grpc" "$token" kb-python docs/hello.txt)
  echo "$out"
  echo "$out" | RUN=$run "$PY" -c '
import json, os, sys
r = json.load(sys.stdin)
run = int(os.environ["RUN"])
assert r["status"] == "INGEST_STATUS_COMPLETED", r
assert r["chunksCreated"] == r["embeddingsWritten"] and r["chunksCreated"] > 1, r
assert r["listed"][0] == r["jobId"] and r["totalCount"] == run, r
assert r["withoutToken"] == "UNAUTHENTICATED", r
assert "WATCH_EVENT_TYPE_SYNCED" in r["watched"], r
assert r["watched"][-1].endswith("INGEST_STATUS_COMPLETED"), r
print(f"python client, run {run}: 1 passed, 0 failed")
'
done
