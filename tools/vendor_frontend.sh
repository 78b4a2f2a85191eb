#!/usr/bin/env bash
# Fetch exactly the front-end files the dashboard ships (and the one test asset) from the npm
# registry, at pinned versions, into the package. No Node build step: `npm pack` downloads a
# package's published tarball (checked against the registry's integrity hash) and nothing
# is installed or run. Re-run after changing a version below; commit what it writes.
#
#   tools/vendor_frontend.sh            # writes app/dashboard/static/vendor/ and
#                                       # tests/dashboard/vendor/
#
# Each package lands in its own folder with its LICENSE file(s) and a VERSION file
# ("name@version" and the tarball's integrity), see docs/DASHBOARD.md.
set -euo pipefail
cd "$(dirname "$0")/.."

STATIC=app/dashboard/static/vendor
TESTS=tests/dashboard/vendor

# package@version  destination  files inside the package (paths relative to package/)
VENDORED=(
  "tus-js-client@4.3.1|$STATIC/tus-js-client|dist/tus.min.js LICENSE"
  "swagger-ui-dist@5.35.0|$STATIC/swagger-ui-dist|swagger-ui-bundle.js swagger-ui.css favicon-32x32.png LICENSE"
  "redoc@2.5.2|$STATIC/redoc|bundles/redoc.standalone.js bundles/redoc.standalone.js.LICENSE.txt LICENSE"
  "axe-core@4.14.1|$TESTS/axe-core|axe.min.js LICENSE LICENSE-3RD-PARTY.txt"
)

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

for entry in "${VENDORED[@]}"; do
  IFS='|' read -r spec dest files <<<"$entry"
  echo "fetching $spec"
  tarball="$(cd "$work" && npm pack "$spec" --silent | tail -n 1)"
  integrity="$(npm view "$spec" dist.integrity)"
  rm -rf "$work/package" && tar -xzf "$work/$tarball" -C "$work"
  rm -rf "$dest" && mkdir -p "$dest"
  for file in $files; do
    cp "$work/package/$file" "$dest/$(basename "$file")"
  done
  printf '%s\n%s\n' "$spec" "$integrity" >"$dest/VERSION"
done

# ReDoc's sidebar shows a logo fetched from cdn.redoc.ly, with no option to turn it off: the
# one URL is replaced by an empty inline SVG, so /redoc asks nothing of another host.
logo='https://cdn.redoc.ly/redoc/logo-mini.svg'
sed -i "s|$logo|data:image/svg+xml,%3Csvg xmlns='http://www.w3.org/2000/svg'/%3E|g" \
  "$STATIC/redoc/redoc.standalone.js"
echo "patched: $logo replaced by an empty inline SVG (tools/vendor_frontend.sh)" \
  >>"$STATIC/redoc/VERSION"
echo "done: $(du -sh "$STATIC" | cut -f1) in $STATIC"
