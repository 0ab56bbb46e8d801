#!/usr/bin/env bash
# Download the documentation pages' scripts again (npm pack) into src/roiml/serving/static and
# check them against the sums in its README.md. Usage: scripts/vendor_docs_assets.sh
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
static="$root/src/roiml/serving/static"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"
npm pack --silent swagger-ui-dist@5.36.0 redoc@2.5.4 >/dev/null
mkdir swagger redoc
tar -xzf swagger-ui-dist-5.36.0.tgz -C swagger
tar -xzf redoc-2.5.4.tgz -C redoc
cp swagger/package/{swagger-ui-bundle.js,swagger-ui-bundle.js.LICENSE.txt,swagger-ui.css,favicon-32x32.png} "$static/"
cp swagger/package/LICENSE "$static/LICENSE-swagger-ui"
cp swagger/package/NOTICE "$static/NOTICE-swagger-ui"
cp redoc/package/bundles/{redoc.standalone.js,redoc.standalone.js.LICENSE.txt} "$static/"
cp redoc/package/LICENSE "$static/LICENSE-redoc"
cd "$static"
grep -oE '`[a-z0-9.-]+\.(js|css|png)` \| `[^`]+` \| [^|]+\| `[0-9a-f]{64}`' README.md |
    sed -E 's/^`([^`]+)`.*`([0-9a-f]{64})`$/\2  \1/' | sha256sum --check
