#!/bin/sh
# Builds tocsin-agent and tocsin-collector .deb packages into target/debian/.
# Needs cargo-deb (`cargo install cargo-deb`); Debian's dpkg-dev is not required.
set -eu
cd "$(dirname "$0")/.."
command -v cargo-deb >/dev/null 2>&1 || {
    echo "cargo-deb is missing: cargo install cargo-deb" >&2
    exit 1
}
cargo build --release --locked -p tocsin-agent -p tocsin-collector
cargo deb --no-build -p tocsin-agent
cargo deb --no-build -p tocsin-collector
ls -l target/debian/*.deb
