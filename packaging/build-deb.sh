#!/bin/sh
# Builds tocsin-agent and tocsin-collector .deb packages into target/debian/, from the
# shipping profiles: `dist` (fat LTO) for the collector, `dist-agent` (also size-optimised,
# glibc linked statically: packaging/build-agent.sh) for the agent. Needs cargo-deb (`cargo install cargo-deb`).
set -eu
cd "$(dirname "$0")/.."
command -v cargo-deb >/dev/null 2>&1 || {
    echo "cargo-deb is missing: cargo install cargo-deb" >&2
    exit 1
}
cargo build --profile dist --locked -p tocsin-collector
packaging/build-agent.sh >/dev/null
triple=$(rustc -vV | sed -n 's/^host: //p')
cargo deb --no-build --profile dist -p tocsin-collector
cargo deb --no-build --profile dist-agent --target "$triple" -p tocsin-agent
ls -l target/debian/*.deb "target/$triple/debian/"*.deb
