#!/usr/bin/env bash
# Rebuild dist/rave-player.js (committed, so `rave publish` needs no Node): pinned npm packages, esbuild bundle.
set -euo pipefail
cd "$(dirname "$0")"
npm ci --no-audit --no-fund
npm run build
