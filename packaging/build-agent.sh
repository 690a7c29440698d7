#!/bin/sh
# Builds the agent as it ships and prints the binary's path: profile dist-agent (fat LTO,
# size-optimised) with glibc linked statically. The agent runs on every host, so its memory
# matters: without the shared libc, libm and loader mapped, it holds about 1.5 MB less. Host
# names resolve through files and DNS, which glibc (2.34 on) carries inside itself; other NSS
# sources are loaded from the system, whose glibc must be the one built against (the package
# is built per Debian release). The explicit --target keeps the flag off build scripts and
# procedural macros.
set -eu
cd "$(dirname "$0")/.."
triple=$(rustc -vV | sed -n 's/^host: //p')
RUSTFLAGS="-C target-feature=+crt-static" \
    cargo build -q --profile dist-agent --locked -p tocsin-agent --target "$triple"
echo "target/$triple/dist-agent/tocsin-agent"
