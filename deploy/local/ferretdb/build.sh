#!/usr/bin/env bash
# Builds the local FerretDB (main.go) with four small patches to FerretDB 1.24.2: three to its SQLite
# backend, about finding documents by _id through the _id index instead of scanning the whole collection,
# and one that makes single-document updates atomic, as they are on MongoDB:
#
# 1. internal/backends/sqlite/metadata/metadata.go: IDColumn `->'$._id'` becomes `->'_id'`.
#    FerretDB creates each collection's unique _id index on the expression `_ferretdb_sjson->"_id"` but
#    queried `_ferretdb_sjson->'$._id'`; SQLite matches index expressions by their text, so every
#    find/update/delete by _id was a full table scan whose cost grew with the collection (10 ms per
#    update at 3,000 documents). Both spellings are the same JSON path ('_id' is a label, read as
#    '$._id'); patched, EXPLAIN QUERY PLAN shows `SEARCH ... USING INDEX ..._id_`. Existing databases
#    need nothing: the index is already there.
# 2. internal/backends/sqlite/collection.go: a filter that has `_id: <string|ObjectId>` among other
#    conditions (`{_id, version}`, `{_id, "field": {$exists: false}}`) is pushed down as
#    `WHERE _id = ?` too, not only a filter made of `_id` alone. Every caller of Query filters the rows
#    again with the whole filter (FilterIterator/FilterDocument), and limits are pushed down only for
#    empty filters, so the result is the same; only the scan is gone.
# 3. internal/handler: `update` and `findAndModify` run under one mutex per collection
#    (paylink_atomic.go). FerretDB 1.24 runs a conditional update as a query, then a separate write by
#    _id, so of six concurrent `{_id, version: 3}` replaces all six "matched" and the last one won;
#    MongoDB applies a single-document update atomically, and the saga store's version check and the CRM's
#    link-once rely on that. Holding the lock from the query to the write gives the local store the
#    same guarantee (for one FerretDB process, which is how the local stack runs it). Inserts need no
#    lock: the unique _id index already refuses the second one.
# 4. internal/backends/sqlite/collection.go (Query): a filter whose `_id` condition is
#    `{$in: [<string|ObjectId>, ...]}` (up to 5,000) is pushed down as `WHERE _id IN (...)`
#    (paylink_in.go): the relay marks a published batch with `update_many({_id: {$in: ids}})`, which scanned
#    the whole outbox; as with patch 2, the rows are filtered again with the whole filter.
#
# Semantics are unchanged otherwise.
# The module cache is read-only and `go build -overlay` refuses files in it, so the module is copied
# into the build directory, patched there and used through a `replace` directive. Only the Go module
# proxy is used (the same download as a plain build).
#
#   deploy/local/ferretdb/build.sh OUTPUT_BINARY
set -euo pipefail

# Portable to macOS: no `sed -i` (BSD's takes a suffix argument), no `sed 0,/re/` and no `\t`/`\n` in
# sed (GNU only), no `realpath -m`. Files are edited by the awk functions below (POSIX awk), with the
# texts passed through the environment so that nothing in them is read as an escape or a pattern.
case "$1" in
    /*) out=$1 ;;
    *) out="$(pwd)/$1" ;;
esac
mkdir -p "$(dirname "$out")"
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
build="$root/.local/ferretdb-build"
export GOTOOLCHAIN=local
tab=$(printf '\t')

replace() {  # FILE OLD NEW: the first OLD of each line becomes NEW (literal texts)
    OLD=$2 NEW=$3 awk '
        BEGIN { old = ENVIRON["OLD"]; new = ENVIRON["NEW"] }
        { at = index($0, old); if (at > 0) $0 = substr($0, 1, at - 1) new substr($0, at + length(old)); print }
    ' "$1" > "$1.paylink" && mv "$1.paylink" "$1"
}

insert_before() {  # FILE LINE TEXT [first]: TEXT, indented like LINE, before each (or the first) line
    # that is LINE after its leading tabs
    LINE=$2 TEXT=$3 ONLY=${4:-} awk '
        BEGIN { line = ENVIRON["LINE"]; text = ENVIRON["TEXT"]; only = ENVIRON["ONLY"] }
        {
            body = $0; sub(/^\t*/, "", body)
            if (body == line && !(only == "first" && done)) {
                print substr($0, 1, length($0) - length(body)) text; done = 1
            }
            print
        }
    ' "$1" > "$1.paylink" && mv "$1.paylink" "$1"
}

rm -rf "$build"
mkdir -p "$build"
cp "$here/main.go" "$here/go.mod" "$here/go.sum" "$build/"
cd "$build"
go mod download github.com/FerretDB/FerretDB
src=$(go list -m -f '{{.Dir}}' github.com/FerretDB/FerretDB)
cp -r "$src" "$build/ferretdb-src"
chmod -R u+w "$build/ferretdb-src"

target="$build/ferretdb-src/internal/backends/sqlite/metadata/metadata.go"
replace "$target" "IDColumn = DefaultColumn + \"->'\$._id'\"" "IDColumn = DefaultColumn + \"->'_id'\""
if ! grep -q "IDColumn = DefaultColumn + \"->'_id'\"" "$target"; then
    echo "build.sh: the _id index patch no longer applies to $src; check the FerretDB version" >&2
    exit 1
fi

backend="$build/ferretdb-src/internal/backends/sqlite/collection.go"
if [ "$(grep -c 'if params.Filter.Len() == 1 {' "$backend")" != 2 ]; then
    echo "build.sh: the _id pushdown patch no longer applies to $src; check the FerretDB version" >&2
    exit 1
fi
replace "$backend" 'if params.Filter.Len() == 1 {' \
    'if params.Filter.Len() >= 1 { // paylink: push down _id among other conditions'

handler="$build/ferretdb-src/internal/handler"
cp "$here/paylink_atomic.go.txt" "$handler/paylink_atomic.go"
patch_call() {  # file, exact call line: lock the collection for the rest of the command
    if [ "$(grep -c "^$tab*$2\$" "$handler/$1")" != 1 ]; then
        echo "build.sh: the atomic update patch no longer applies to $1; check the FerretDB version" >&2
        exit 1
    fi
    insert_before "$handler/$1" "$2" "defer lockCollection(params.DB, params.Collection)() // paylink: atomic"
}
patch_call msg_update.go "matched, modified, upserted, err := h.updateDocument(connCtx, params)"
patch_call msg_findandmodify.go "res, err := h.findAndModifyDocument(connCtx, params)"

cp "$here/paylink_in.go.txt" "$build/ferretdb-src/internal/backends/sqlite/paylink_in.go"
query_switch='switch v.(type) {'
if [ "$(grep -c "^$tab$tab$query_switch\$" "$backend")" != 2 ]; then
    echo "build.sh: the _id \$in pushdown patch no longer applies to $src; check the FerretDB version" >&2
    exit 1
fi
# Only the first switch (Query); the second is Explain's, which reports pushdowns and is left alone.
insert_before "$backend" "$query_switch" \
    "if where, in := paylinkIDIn(v); where != \"\" { whereClause, args = where, in } // paylink: \$in" first

go mod edit -replace "github.com/FerretDB/FerretDB=./ferretdb-src"
# Built aside and renamed over the old binary, so a FerretDB running from it is left untouched.
go build -o "$out.new" .
mv -f "$out.new" "$out"
echo "built $out (FerretDB 1.24.2 with the SQLite _id index, pushdown, atomic update and _id \$in patches)"
