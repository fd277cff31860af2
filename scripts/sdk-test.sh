#!/usr/bin/env bash
# Regenerate and test the TypeScript SDK (sdk/typescript) in one command.
#
#   scripts/sdk-test.sh           regenerate src/generated/openapi.ts from the server, then test
#   scripts/sdk-test.sh --check   fail instead when the committed types are stale (CI: CI=true does the same)
#   scripts/sdk-test.sh --types   only regenerate the types (`make openapi` runs this)
#   scripts/sdk-test.sh --pack    only build the npm package: sdk/typescript/rivya-sdk.tgz (`make sdk-pack`;
#                                 needs Node.js, not Python: the committed types are used as they are)
#
# Steps: npm ci (when package-lock.json changed since the last install), regenerate or check
# the types (manage.py spectacular, no server needed), type-check, build (ESM + .d.ts), bundle
# size budget, then vitest against a real Rivya server the tests start themselves (temporary
# SQLite, rivya_bootstrap, uvicorn), including `npm pack` installed into a scratch project.
# Needs Node.js 20+ and the repository's Python environment (.venv, or RIVYA_PYTHON).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root/sdk/typescript"

check=false
types_only=false
pack_only=false
case "${1:-}" in
  --check) check=true ;;
  --types) types_only=true ;;
  --pack) pack_only=true ;;
  "") [ "${CI:-}" = "true" ] && check=true ;;
  *) echo "usage: scripts/sdk-test.sh [--check|--types|--pack]" >&2; exit 2 ;;
esac

if ! command -v node >/dev/null 2>&1; then
  echo "sdk-test: Node.js 20+ is needed (node is not on PATH)" >&2
  exit 1
fi
major="$(node -p 'process.versions.node.split(".")[0]')"
if [ "$major" -lt 20 ]; then
  echo "sdk-test: Node.js 20+ is needed (found $(node --version))" >&2
  exit 1
fi
if [ -z "${RIVYA_PYTHON:-}" ] && [ -x "$root/.venv/bin/python" ]; then export RIVYA_PYTHON="$root/.venv/bin/python"; fi

step() { printf '\n== sdk: %s\n' "$*"; }

stamp=node_modules/.package-lock.sha256
want="$(sha256sum package-lock.json | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  step "npm ci"
  npm ci --no-audit --no-fund --loglevel=error
  echo "$want" >"$stamp"
fi

if $pack_only; then
  # npm pack runs the build (prepack); one stable name, so `npm install <path>` reads the same every time.
  step "pack"
  packed="$(npm pack --json --loglevel=error | node -e 'process.stdout.write(JSON.parse(require("fs").readFileSync(0, "utf8"))[0].filename)')"
  mv -f "$packed" rivya-sdk.tgz
  printf '\nThe SDK package: %s\nInstall it in your project with: npm install %s\n' \
    "$root/sdk/typescript/rivya-sdk.tgz" "$root/sdk/typescript/rivya-sdk.tgz"
  exit 0
fi

if $check; then
  step "types are current (npm run check-types)"
  npm run --silent check-types
else
  step "regenerate types (npm run generate)"
  npm run --silent generate
fi
if $types_only; then exit 0; fi

step "type-check"
npm run --silent typecheck

step "build"
npm run --silent build

step "bundle size"
npm run --silent size

step "tests (vitest, real server)"
npx vitest run --reporter=verbose
