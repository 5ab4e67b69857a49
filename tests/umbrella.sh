#!/usr/bin/env bash
# umbrella.sh -- include/gmflow/gmflow.h includes every public header (each include/gmflow/*.h
# and the generated gmflow/version.h), and every public header compiles on its own (C11,
# -Wall -Wextra -Werror, nothing else included first).
#
#   tests/umbrella.sh <path to gmflow> <build dir>      (run from the repository root)
set -u
BUILD=${2:?usage: umbrella.sh <gmflow> <build dir>}
fails=0
for h in include/gmflow/*.h "$BUILD/include/gmflow/version.h"; do
    name=$(basename "$h")
    [ "$name" = gmflow.h ] && continue
    grep -q "^#include \"gmflow/$name\"" include/gmflow/gmflow.h ||
        { echo "FAIL: include/gmflow/gmflow.h does not include gmflow/$name" >&2; fails=$((fails + 1)); }
done
TMP=$(mktemp -d /tmp/gmflow_umbrella.XXXXXX)
trap 'rm -rf "$TMP"' EXIT
for h in include/gmflow/*.h "$BUILD/include/gmflow/version.h"; do
    name=$(basename "$h")
    printf '#include "gmflow/%s"\n#include "gmflow/%s"\n' "$name" "$name" >"$TMP/t.c"
    ${CC:-cc} -std=c11 -Wall -Wextra -Werror -Iinclude -I"$BUILD/include" -c "$TMP/t.c" \
        -o "$TMP/t.o" 2>"$TMP/err" ||
        { echo "FAIL: gmflow/$name does not compile alone (or twice):" >&2; cat "$TMP/err" >&2; fails=$((fails + 1)); }
done
[ $fails -eq 0 ] || { echo "umbrella: $fails failure(s)" >&2; exit 1; }
echo "umbrella: PASS (gmflow.h includes all $(ls include/gmflow/*.h | wc -l) headers + version.h; each compiles alone)"
