#!/usr/bin/env bash
# Builds the example Python plugin (plugins/python/example/app.py) into a
# pulsehost component with componentize-py.
#
#   plugins/python/build-example.sh [OUTPUT.wasm] [APP_DIR]
#
# OUTPUT defaults to <repo>/target/plugins/hello-py.wasm; APP_DIR (a directory
# holding app.py) to plugins/python/example. The build runs in a fresh temporary
# directory outside the repository, on copies of the app and of the SDK:
# componentize-py imports the code while building and would otherwise leave
# __pycache__ directories in the source tree.
#
# Needs componentize-py 0.25.1 on PATH (or COMPONENTIZE_PY=/path/to/it):
#   pip install componentize-py==0.25.1
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
out="${1:-$repo/target/plugins/hello-py.wasm}"
app_dir="$(cd "${2:-$here/example}" && pwd)"
componentize_py="${COMPONENTIZE_PY:-componentize-py}"
wanted_version="0.25.1"

if ! command -v "$componentize_py" >/dev/null 2>&1; then
    echo "error: componentize-py not found; install it with: pip install componentize-py==$wanted_version" >&2
    exit 1
fi
version="$("$componentize_py" --version | awk '{print $NF}')"
if [[ "$version" != "$wanted_version" ]]; then
    echo "warning: componentize-py $version found; this SDK is tested with $wanted_version" >&2
fi
if [[ ! -f "$app_dir/app.py" ]]; then
    echo "error: $app_dir/app.py does not exist" >&2
    exit 1
fi

work="$(mktemp -d "${TMPDIR:-/tmp}/pulsehost-py-build.XXXXXX")"
trap 'rm -rf "$work"' EXIT

# The app and the SDK, copied without bytecode caches.
mkdir -p "$work/app" "$work/sdk"
(cd "$app_dir" && tar --exclude=__pycache__ -cf - .) | tar -xf - -C "$work/app"
(cd "$here" && tar --exclude=__pycache__ -cf - pulsehost) | tar -xf - -C "$work/sdk"

mkdir -p "$(dirname "$out")"
out="$(cd "$(dirname "$out")" && pwd)/$(basename "$out")"
start=$(date +%s)
(
    cd "$work"
    # -d/-w: the world to target (generates the `wit_world` bindings module);
    # `app`: the module whose `WitWorld` class implements the exports;
    # -p: where `app` and the `pulsehost` package are found.
    "$componentize_py" -d "$repo/wit" -w plugin componentize app \
        -p "$work/app" -p "$work/sdk" -o "$out"
)
end=$(date +%s)
size=$(wc -c <"$out")
echo "built $out: $size bytes ($((size / 1024 / 1024)) MiB) in $((end - start)) s"
