#!/usr/bin/env bash
# Sets everything up, then runs the whole test suite (unit, integration, real-data and CLI tests).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh" test
# What only the tests use: iproute2's `ip` makes the network namespaces of the two-host data-parallel test;
# Slurm and munge the one-node cluster of the job-array test; Chromium renders the HTML report.
missing=""
for package in iproute2 slurmctld slurmd slurm-client munge chromium; do
  dpkg -s "$package" >/dev/null 2>&1 || missing="$missing $package"
done
if [ -n "$missing" ]; then
  echo "orchard: installing$missing (for the distributed and report tests)" >&2
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
  $SUDO apt-get update -qq && $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
fi
# --release shares every artifact with the build setup.sh just made (libtorch's C++ wrapper included).
cargo test --release --workspace --locked "$@"
