#!/usr/bin/env bash
# Rebuilds the provider console (GraphiQL) that the server embeds: web-examples/console
# → src/http/console/{console.js,console.css,index.html}. Commit those files with the change;
# `cargo build` needs no npm. scripts/browser-test.sh fails while they are stale.
set -euo pipefail
cd "$(dirname "$0")/../web-examples/console"
npm ci --no-audit --no-fund
npm run build
