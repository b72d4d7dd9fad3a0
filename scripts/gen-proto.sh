#!/usr/bin/env bash
# Generates Python code (messages, gRPC stubs and their mypy stubs) from proto/ into
# meshfed/_gen, or, with --check, into a temp dir and fails if the committed code differs
# (a changed, missing or stale generated file).
#
# Usage: scripts/gen-proto.sh [OUT_DIR]     (default meshfed/_gen)
#        scripts/gen-proto.sh --check
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
BIN=$(dirname "$PY")
GEN=meshfed/_gen
shopt -s nullglob

gen() {
  local out=$1
  mkdir -p "$out"
  # Start clean so code generated from a deleted .proto does not linger.
  rm -f "$out"/*_pb2.py "$out"/*_pb2.pyi "$out"/*_pb2_grpc.py "$out"/*_pb2_grpc.pyi
  local protos=(proto/*.proto)
  if [ ${#protos[@]} -eq 0 ]; then return 0; fi
  # Plugins are named explicitly: the venv's bin/ need not be on PATH.
  "$PY" -m grpc_tools.protoc -Iproto \
    --plugin=protoc-gen-mypy="$BIN/protoc-gen-mypy" \
    --plugin=protoc-gen-mypy_grpc="$BIN/protoc-gen-mypy_grpc" \
    --python_out="$out" --grpc_python_out="$out" \
    --mypy_out=quiet:"$out" --mypy_grpc_out=quiet:"$out" \
    "${protos[@]}"
  # protoc emits top-level imports of sibling modules; make them absolute in our package.
  local f
  for f in "$out"/*_pb2*.py "$out"/*_pb2*.pyi; do
    sed -i -E 's/^import ([a-z_0-9]+_pb2) as /from meshfed._gen import \1 as /' "$f"
  done
}

generated_names() {
  local dir=$1 f
  for f in "$dir"/*_pb2.py "$dir"/*_pb2.pyi "$dir"/*_pb2_grpc.py "$dir"/*_pb2_grpc.pyi; do
    basename "$f"
  done | sort
}

if [ "${1:-}" = "--check" ]; then
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  gen "$tmp"
  if [ "$(generated_names "$tmp")" != "$(generated_names "$GEN")" ]; then
    echo "$GEN has missing or stale generated files: run 'make proto' and commit" >&2
    diff <(generated_names "$GEN") <(generated_names "$tmp") >&2 || true
    exit 1
  fi
  for name in $(generated_names "$tmp"); do
    if ! cmp -s "$tmp/$name" "$GEN/$name"; then
      echo "$GEN/$name is out of date with proto/: run 'make proto' and commit" >&2
      exit 1
    fi
  done
  echo "generated code matches proto/"
else
  gen "${1:-$GEN}"
fi
