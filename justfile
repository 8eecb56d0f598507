# baton's everyday commands. `scripts/install-deps` installs what they need.

# List the recipes.
default:
    @just --list

# clippy as the compiler of our own crates (cargo's RUSTC_WORKSPACE_WRAPPER; the lints
# and `-D warnings` go through CLIPPY_ARGS as `cargo clippy` passes them): the build the
# tests run is linted as it compiles, so CI compiles the dependency tree once instead of a
# second time for `cargo clippy`'s check build (6 min 32 s cold, BENCHMARKS.md). The same
# lints over the same targets as `just lint`; a lint fails the build.
linted := "RUSTC_WORKSPACE_WRAPPER=clippy-driver CLIPPY_ARGS=-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__"

# Formatting, then every test against the real programs (sshd, cloud-init, nft, ...),
# built with clippy's lints as errors. Eight at a time on two cores: most of a test's
# time is waiting on a loopback VM, sshd, moto or exosim, not computing (the `it`
# binary used 0.85 of the two cores at four; 527 s at four, 356 s at eight,
# BENCHMARKS.md).
test: build
    {{linted}} cargo test --all-targets -- --test-threads 8

# Formatting, then the build the tests and the rehearsal run, linted as it compiles.
build:
    cargo fmt --check
    {{linted}} cargo test --all-targets --no-run

# Formatting and clippy, warnings as errors, without running anything (`just test` lints
# inside its build).
lint:
    cargo fmt --check
    cargo clippy --all-targets -- -D warnings

# The rehearsal of a swap on real VMs (qemu), no cloud account needed (root; 14 min 28 s
# cold with `scripts/install-deps` on 2 cores, BENCHMARKS.md).
demo:
    rehearsal/run demo

# The same rehearsal on loopback "VMs": seconds instead of minutes, no containers.
demo-loopback:
    cargo build --quiet
    scripts/demo

# First deploy and two swaps on real VMs, every promise asserted (root; run by .ci/run).
# Built as `just test` builds: after it, nothing is left to compile.
e2e:
    {{linted}} rehearsal/run e2e

# The rehearsal's image only (the stand-in container image and the bake's build, cached
# for `just e2e`); .ci/run makes it while the tests run (root).
image:
    {{linted}} rehearsal/run image

# Benchmark backups against restic on a >= 1 GiB TSDB (minutes; cached data in /var/tmp).
bench-backup:
    scripts/bench-backup

# The swap's overhead against a cloud's pace (needs root; about 3 minutes).
bench-swap:
    scripts/bench-swap

# The AWS fronts in the moto rehearsal: the Elastic IP's gap, the ALB's failed requests
# (needs root; about 2 minutes).
bench-aws-front:
    scripts/bench-aws-front

# How fast a rollback puts the previous generation back, automatic and by hand (root;
# about 6 minutes).
bench-rollback:
    scripts/bench-rollback

# The automatic rollback on real (qemu) VMs: a release whose proxy stops during its watch
# (root; ~12 minutes).
bench-rollback-vm:
    rehearsal/run rollback-bench
