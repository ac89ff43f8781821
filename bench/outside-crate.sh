#!/usr/bin/env bash
# bench/outside-crate.sh — does an application outside this workspace get
# the workspace's speed? Builds bench/src/bin/uploads.rs twice in release
# mode: as the workspace's `mockinterview-bench-uploads`, and as the
# main.rs of a crate outside the workspace (in a temporary directory, its
# own Cargo.lock resolved from crates.io) that depends on the library and
# `migration` by path. Then runs both, alternating which goes first, for
# ROUNDS rounds (default 3), and prints one line per run: label, chunks/s,
# upload p50 ms per 50-chunk resume, scoped-search p50 ms.
#
#   bench/outside-crate.sh            # DATABASE_URL from the environment or .env
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"
cd "$ROOT"
load_database_url
export DATABASE_URL

rounds=${ROUNDS:-3}
resumes=${RESUMES:-300}
outside=$(mktemp -d)
trap 'rm -rf "$outside"' EXIT

cargo build -q --release -p mockinterview-bench --bin mockinterview-bench-uploads
inside_bin="$ROOT/target/release/mockinterview-bench-uploads"

mkdir -p "$outside/src"
cp bench/src/bin/uploads.rs "$outside/src/main.rs"
cat >"$outside/Cargo.toml" <<TOML
[package]
name = "outside-app"
version = "0.1.0"
edition = "2024"
publish = false

[workspace]

[dependencies]
mockinterview-db = { path = "$ROOT" }
migration = { path = "$ROOT/migration" }
sea-orm = { version = "2.0.4", default-features = false, features = ["sqlx-postgres", "runtime-tokio-rustls"] }
tokio = { version = "1", features = ["macros", "rt-multi-thread"] }
TOML
CARGO_TARGET_DIR="$outside/target" cargo build -q --release --manifest-path "$outside/Cargo.toml"
outside_bin="$outside/target/release/outside-app"
printf 'sqlx in the outside crate: %s\n' \
    "$(grep -A1 '^name = "sqlx-core"' "$outside/Cargo.lock" | sed -n 's/^version = //p')" >&2

printf 'label\tchunks/s\tupload p50 ms\tsearch p50 ms\n'
for ((round = 0; round < rounds; round++)); do
    if ((round % 2 == 0)); then
        order=(inside outside)
    else
        order=(outside inside)
    fi
    for which in "${order[@]}"; do
        bin=$inside_bin
        [[ $which == outside ]] && bin=$outside_bin
        "$bin" "$which" "mi_bench_uploads_$which" "$resumes"
    done
done
