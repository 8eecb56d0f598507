# baton's everyday commands. `scripts/install-deps` installs what they need.

# List the recipes.
default:
    @just --list

# Lint, then run every test against the real programs (sshd, cloud-init, nft, ...).
test: lint
    cargo test --all-targets

# Formatting and clippy, warnings as errors.
lint:
    cargo fmt --check
    cargo clippy --all-targets -- -D warnings

# A local rehearsal: init a site, render two generations, serve each with a real sshd.
demo:
    cargo build --quiet
    scripts/demo

# Benchmark backups against restic on a >= 1 GiB TSDB (minutes; cached data in /var/tmp).
bench-backup:
    scripts/bench-backup

# The swap's overhead against a cloud's pace (needs root; about 3 minutes).
bench-swap:
    scripts/bench-swap
