#!/bin/sh
# The compose deployment's one-shot bootstrap (docs/security.md): once the global answers,
# copy its KDS CA certificate (public) and issue every token into the `creds` volume, mode
# 0600: a zone token of scope kds per zone-cp, of scope ingress per zone ingress, and a
# dataplane token per sidecar (its service and name only); then apply the demo's Mesh and
# permission. Run at every `up`: the tokens are fresh each time, and the zones and proxies
# read their token files again at every connection.
#
# The paths can be moved (tests/integration/test_compose.py runs this against a real global).
set -eu
umask 077
GLOBAL_DIR=${BOOTSTRAP_GLOBAL_DIR:-/var/lib/meshfed}
OUT=${BOOTSTRAP_OUT:-/creds}
RESOURCES=${BOOTSTRAP_RESOURCES:-/compose/demo-resources.yaml}
WAIT=${BOOTSTRAP_WAIT_SECONDS:-120}
VALID_FOR=720h

deadline=$(($(date +%s) + WAIT))
past_deadline() { [ "$(date +%s)" -ge "$deadline" ]; }

# Waits for a file the global writes at its start.
wait_for_file() {
  until [ -s "$1" ]; do
    if past_deadline; then
      echo "bootstrap: $1 did not appear within ${WAIT}s" >&2
      exit 1
    fi
    sleep 0.5
  done
}

# issue FILE COMMAND...: COMMAND's output into FILE, replaced whole; retried until the
# deadline (a mesh's dataplane-token key is made by the global's leader once the mesh exists).
issue() {
  file=$1
  shift
  until "$@" >"$file.tmp"; do
    if past_deadline; then
      echo "bootstrap: '$*' kept failing for ${WAIT}s" >&2
      exit 1
    fi
    sleep 1
  done
  mv "$file.tmp" "$file"
  echo "bootstrap: wrote $file"
}

wait_for_file "$GLOBAL_DIR/admin-token"
wait_for_file "$GLOBAL_DIR/kds-ca.crt"
MESHFED_API_TOKEN=$(cat "$GLOBAL_DIR/admin-token")
export MESHFED_API_TOKEN
cp "$GLOBAL_DIR/kds-ca.crt" "$OUT/kds-ca.crt.tmp"
chmod 0644 "$OUT/kds-ca.crt.tmp"
mv "$OUT/kds-ca.crt.tmp" "$OUT/kds-ca.crt"

issue "$OUT/zone-1.token" meshctl generate zone-token --zone zone-1 --scope kds --valid-for "$VALID_FOR"
issue "$OUT/zone-2.token" meshctl generate zone-token --zone zone-2 --scope kds --valid-for "$VALID_FOR"
issue "$OUT/ingress-zone-1.token" meshctl generate zone-token --zone zone-1 --scope ingress --valid-for "$VALID_FOR"
issue "$OUT/ingress-zone-2.token" meshctl generate zone-token --zone zone-2 --scope ingress --valid-for "$VALID_FOR"

meshctl apply -f "$RESOURCES"

issue "$OUT/web-1.token" meshctl generate dataplane-token --mesh default --tag kuma.io/service=web --name web-1 --valid-for "$VALID_FOR"
issue "$OUT/backend-z1-1.token" meshctl generate dataplane-token --mesh default --tag kuma.io/service=backend --name backend-z1-1 --valid-for "$VALID_FOR"
issue "$OUT/backend-z2-1.token" meshctl generate dataplane-token --mesh default --tag kuma.io/service=backend --name backend-z2-1 --valid-for "$VALID_FOR"
issue "$OUT/backend-z2-2.token" meshctl generate dataplane-token --mesh default --tag kuma.io/service=backend --name backend-z2-2 --valid-for "$VALID_FOR"
echo "bootstrap: done"
