#!/bin/sh
# Builds tocsin-agent and tocsin-collector .deb packages into target/debian/, from the
# shipping profiles: `dist` (fat LTO) for the collector, `dist-agent` (also size-optimised)
# for the agent. Needs cargo-deb (`cargo install cargo-deb`).
set -eu
cd "$(dirname "$0")/.."
command -v cargo-deb >/dev/null 2>&1 || {
    echo "cargo-deb is missing: cargo install cargo-deb" >&2
    exit 1
}
cargo build --profile dist --locked -p tocsin-collector
cargo build --profile dist-agent --locked -p tocsin-agent
cargo deb --no-build --profile dist -p tocsin-collector
cargo deb --no-build --profile dist-agent -p tocsin-agent
ls -l target/debian/*.deb
