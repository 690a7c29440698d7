#!/bin/sh
# Builds both .deb packages from the already-built debug binaries (fast: the packaging is what is
# checked, not the optimised build), then checks what they hold and that what they install
# works as installed: the collector starts with the installed configuration and rules, the agent
# with its installed configuration, and the collector hears of the agent.
#   packaging/check-deb.sh        (needs cargo-deb and dpkg-deb; run after `cargo build`)
set -eu
cd "$(dirname "$0")/.."
command -v cargo-deb >/dev/null 2>&1 || { echo "cargo-deb is missing: cargo install cargo-deb" >&2; exit 1; }
command -v dpkg-deb >/dev/null 2>&1 || { echo "dpkg-deb is missing" >&2; exit 1; }
out=$(mktemp -d)
pids=
trap 'for p in $pids; do kill $p 2>/dev/null || true; done; rm -rf "$out"' EXIT
fail() { echo "package check: $*" >&2; exit 1; }

# (cargo-deb warns that the dev profile is meant for releases only; CI pins cargo-deb's version.)
cargo deb --no-build --profile dev --fast --no-strip -p tocsin-collector -o "$out/" >/dev/null 2>"$out/deb.log" || { cat "$out/deb.log" >&2; fail "cargo deb failed"; }
cargo deb --no-build --profile dev --fast --no-strip -p tocsin-agent -o "$out/" >/dev/null 2>"$out/deb.log" || { cat "$out/deb.log" >&2; fail "cargo deb failed"; }
for pkg in collector agent; do
    deb=$(ls "$out"/tocsin-${pkg}_*.deb) || fail "no tocsin-$pkg package built"
    dpkg-deb --info "$deb" >"$out/$pkg.info"
    dpkg-deb --contents "$deb" | awk '{print $6}' | sed 's|^\./|/|' >"$out/$pkg.files"
    dpkg-deb --control "$deb" "$out/$pkg.control"
    mkdir -p "$out/root"
    dpkg-deb --extract "$deb" "$out/root"
    grep -q "^ Depends:.*adduser" "$out/$pkg.info" || fail "$pkg: does not depend on adduser"
    grep -qx "/etc/tocsin/$pkg.yaml" "$out/$pkg.control/conffiles" || fail "$pkg: $pkg.yaml is not a conffile"
    grep -Eqx "(/usr)?/lib/systemd/system/tocsin-$pkg.service" "$out/$pkg.files" || fail "$pkg: no systemd unit"
    for f in /usr/bin/tocsin-$pkg /etc/tocsin/$pkg.yaml \
             /usr/share/doc/tocsin-$pkg/examples/$pkg.yaml /usr/share/doc/tocsin-$pkg/OPERATIONS.md; do
        grep -qx "$f" "$out/$pkg.files" || fail "$pkg: $f missing; it holds: $(tr '\n' ' ' <"$out/$pkg.files")"
    done
    grep -q "dpkg-statoverride" "$out/$pkg.control/postinst" || fail "$pkg: postinst does not set the configuration's group"
    grep -q "deb-systemd-helper" "$out/$pkg.control/postinst" || fail "$pkg: postinst does not enable the unit"
done
for f in /etc/tocsin/rules/host.yaml /etc/tocsin/rules/probes.yaml /etc/tocsin/rules/liveness.yaml \
         /usr/share/tocsin/dashboards/host-overview.json \
         /usr/share/tocsin/grafana/provisioning/datasources/tocsin.yaml; do
    grep -qx "$f" "$out/collector.files" || fail "collector: $f missing"
done

# What is installed runs as installed (the units' flags, with paths and ports of this check).
r=$out/root
"$r/usr/bin/tocsin-collector" check-rules "$r/etc/tocsin/rules" >/dev/null || fail "installed rules do not check"
"$r/usr/bin/tocsin-collector" check-config --config "$r/etc/tocsin/collector.yaml" --data-dir "$out/data" \
    --rules "$r/etc/tocsin/rules" >/dev/null || fail "the installed collector configuration does not check"
"$r/usr/bin/tocsin-agent" check-config --config "$r/etc/tocsin/agent.yaml" --state-dir "$out/agent-state" \
    >/dev/null || fail "the installed agent configuration does not check"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$r/usr/bin/tocsin-collector" --config "$r/etc/tocsin/collector.yaml" --data-dir "$out/data" \
    --rules "$r/etc/tocsin/rules" --listen 127.0.0.1:$port >"$out/c.out" 2>"$out/c.log" &
pids="$pids $!"
"$r/usr/bin/tocsin-agent" --config "$r/etc/tocsin/agent.yaml" --collector "http://127.0.0.1:$port/api/v1/write" \
    --listen 127.0.0.1:0 --state-dir "$out/agent-state" --interval 1s --host deb-check >"$out/a.out" 2>"$out/a.log" &
pids="$pids $!"
i=0
until curl -sf "http://127.0.0.1:$port/api/v1/hosts" 2>/dev/null | grep -q '"deb-check"'; do
    i=$((i + 1))
    [ $i -lt 200 ] || fail "the installed collector never heard of the installed agent; logs:
$(cat "$out/c.log" "$out/a.log")"
    sleep 0.1
done
echo "package check: tocsin-collector and tocsin-agent packages hold their files, and what they install runs"
