#!/usr/bin/env bash
# Generates Python code from proto/ into meshfed/_gen (or, with --check, into a temp dir and
# fails if the committed code differs).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
shopt -s nullglob
protos=(proto/*.proto)
if [ ${#protos[@]} -eq 0 ]; then exit 0; fi
gen() {
  local out=$1
  mkdir -p "$out"
  "$PY" -m grpc_tools.protoc -Iproto --python_out="$out" --grpc_python_out="$out" \
    --mypy_out="$out" "${protos[@]}"
  # grpc_tools emits absolute imports; make them package-relative.
  for f in "$out"/*_pb2*.py; do
    sed -i -E 's/^import ([a-z_0-9]+_pb2) as /from meshfed._gen import \1 as /' "$f"
  done
}
if [ "${1:-}" = "--check" ]; then
  tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
  gen "$tmp"
  for f in "$tmp"/*_pb2*.py "$tmp"/*_pb2*.pyi; do
    name=$(basename "$f")
    if ! cmp -s "$f" "meshfed/_gen/$name"; then
      echo "meshfed/_gen/$name is out of date with proto/: run 'make proto' and commit" >&2
      exit 1
    fi
  done
  echo "generated code matches proto/"
else
  gen "${1:-meshfed/_gen}"
fi
