#!/usr/bin/env bash
# Builds one Go tool the tests use (jaeger, promtool, toxiproxy) from the Go module proxy, pinned by the
# small module in deploy/local/tools/NAME (go.mod's `tool` line names the program, go.sum pins every
# dependency). Portable shell: no GNU-only flags.
#
#   deploy/local/tools/build.sh NAME OUTPUT_BINARY
set -euo pipefail

name=$1
out=$2
here=$(cd "$(dirname "$0")" && pwd)
case "$out" in /*) ;; *) out="$PWD/$out" ;; esac
mkdir -p "$(dirname "$out")"
cd "$here/$name"
export GOTOOLCHAIN=local GOFLAGS=-mod=mod
program=$(sed -n 's/^tool[[:space:]]\{1,\}//p' go.mod | head -n 1)
if [ -z "$program" ]; then
    echo "build.sh: no 'tool' line in $here/$name/go.mod" >&2
    exit 2
fi
echo "building $name ($program) into $out" >&2
go build -trimpath -o "$out.tmp" "$program"
mv "$out.tmp" "$out"
