#!/usr/bin/env bash
# Builds the example JavaScript plugin (example/app.js) into a pulsehost
# component, with jco and componentize-js installed from npm into a temporary
# directory outside the repository.
#
#   plugins/js/build-example.sh [OUT.wasm]      # default: ./hello-js.wasm
#
# Environment:
#   PULSEHOST_JS_TOOLS  a directory to install the npm tools into (reused when
#                       they are already there); default: a fresh temp dir
#   JCO_VERSION, COMPONENTIZE_JS_VERSION   npm versions (default: the tested ones)
#
# Needs node >= 20 and npm. The component imports no wasi:http: the build
# disables StarlingMonkey's `http` and `fetch-event` features, which the host
# does not provide.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
out=$(realpath -m "${1:-hello-js.wasm}")
jco_version=${JCO_VERSION:-1.35.0}
cjs_version=${COMPONENTIZE_JS_VERSION:-0.23.0}

work=$(mktemp -d "${TMPDIR:-/tmp}/pulsehost-js.XXXXXX")
trap 'rm -rf "$work"' EXIT
tools=${PULSEHOST_JS_TOOLS:-$work/tools}

# 1. The tools.
if [[ ! -x $tools/node_modules/.bin/componentize-js || ! -x $tools/node_modules/.bin/jco ]]; then
    echo "installing @bytecodealliance/jco@$jco_version and @bytecodealliance/componentize-js@$cjs_version into $tools" >&2
    mkdir -p "$tools"
    npm install --prefix "$tools" --no-audit --no-fund --loglevel=error \
        "@bytecodealliance/jco@$jco_version" "@bytecodealliance/componentize-js@$cjs_version" >&2
fi
bin=$tools/node_modules/.bin

# 2. The sources, in the repository's layout (app.js imports ../pulsehost.js).
# componentize-js makes the working directory the component's `/` while it
# pre-initializes the module, so every imported file must be under it.
src=$work/src
mkdir -p "$src/example"
cp -r "$here/pulsehost.js" "$here/lib" "$src/"
cp "$here/example/app.js" "$src/example/"

# 3. The component.
echo "building $out" >&2
start=$(date +%s.%N)
(cd "$src" && "$bin/componentize-js" "$src/example/app.js" \
    --wit "$repo/wit" --world-name plugin \
    --disable http fetch-event \
    -o "$out")
end=$(date +%s.%N)

# 4. Its imports: the host links only wasi:cli, io, clocks, random, filesystem, sockets.
imports=$("$bin/jco" wit "$out" | grep -E '^\s*import ' || true)
echo "$imports" >&2
if grep -q 'wasi:http' <<<"$imports"; then
    echo "error: $out imports wasi:http, which pulsehost does not provide" >&2
    exit 1
fi
printf 'built %s: %s bytes in %.1f s (jco %s, componentize-js %s)\n' "$out" "$(stat -c %s "$out")" \
    "$(awk "BEGIN { print $end - $start }")" "$("$bin/jco" --version)" "$("$bin/componentize-js" --version)" >&2
