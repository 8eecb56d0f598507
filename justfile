# baton's everyday commands. `scripts/install-deps` installs what they need.

# List the recipes.
default:
    @just --list

# Lint, then run every test against the real programs (sshd, cloud-init, nft, ...).
# Four at a time on two cores: most of a test's time is waiting on a loopback VM, sshd,
# moto or exosim, not computing (the integration tests took 670 s so, BENCHMARKS.md).
test: lint
    cargo test --all-targets -- --test-threads 4

# Formatting and clippy, warnings as errors.
lint:
    cargo fmt --check
    cargo clippy --all-targets -- -D warnings

# The rehearsal of a swap on real VMs (qemu), no cloud account needed (root; cold figure
# in BENCHMARKS.md).
demo:
    rehearsal/run demo

# The same rehearsal on loopback "VMs": seconds instead of minutes, no containers.
demo-loopback:
    cargo build --quiet
    scripts/demo

# First deploy and two swaps on real VMs, every promise asserted (root; run by .ci/run).
e2e:
    rehearsal/run e2e

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
