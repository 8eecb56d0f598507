#!/bin/sh
# Installed by baton's user-data; run once by cloud-init's runcmd.
# Usage: install-agent URL SHA256
# Downloads the baton binary by its pre-signed URL and installs it only if its sha256 is
# the one the swap uploaded: a tampered or truncated download never runs.
set -eu
url="$1"
want="$2"
target="${BATON_BIN:-/usr/local/bin/baton}"
tmp=$(mktemp "$(dirname "$target")/.baton.XXXXXX")
trap 'rm -f "$tmp"' EXIT
curl --fail --silent --show-error --location --retry 5 --retry-connrefused \
    --connect-timeout 10 --max-time 600 --output "$tmp" "$url"
got=$(sha256sum "$tmp" | cut -d ' ' -f 1)
if [ "$got" != "$want" ]; then
    echo "install-agent: refusing the downloaded baton: sha256 $got, expected $want" >&2
    exit 1
fi
chmod 0755 "$tmp"
mv -f "$tmp" "$target"
trap - EXIT
echo "install-agent: installed $target (sha256 $want)"
