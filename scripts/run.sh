#!/usr/bin/env bash
# run.sh [dialtone arguments…]: install what the build needs (once), build Dialtone (release) and run it.
#   scripts/run.sh --headless                      # the engine alone, saved settings, JSON events on stdout
#   scripts/run.sh --headless --account sip:carol@127.0.0.1 --password carolpw --listen 127.0.0.1:5065
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh --build-only >&2
cargo build --release --quiet
exec target/release/dialtone "$@"
