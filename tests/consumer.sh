#!/usr/bin/env bash
# consumer.sh -- gmflow as a user outside the tree gets it: `cmake --install` the current build
# into a temporary prefix, then build tests/consumer/consumer.c against that prefix
#   1. with find_package(gmflow) (tests/consumer/CMakeLists.txt): gmflow::gmflow (libgmflow.so)
#      and gmflow::gmflow_static (libgmflow.a, its dependencies from the exported config),
#   2. with `pkg-config --cflags --libs gmflow` (shared) and `pkg-config --static` (libgmflow.a:
#      Requires.private / Libs.private must name every dependency),
# and run each: it must print the installed version (project(VERSION) of CMakeLists.txt) and a
# loss equal to the hand-computed one (the program checks to 1e-12 and prints PASS).  The
# installed tree must hold the headers, both libraries, the binary, the CMake config and the .pc.
#
#   tests/consumer.sh <path to gmflow> <build dir>      (run from the repository root)
set -u
BUILD=${2:?usage: consumer.sh <gmflow> <build dir>}
BUILD=$(cd "$BUILD" && pwd)
SRC=$PWD/tests/consumer
TMP=$(mktemp -d /tmp/gmflow_consumer.XXXXXX)
trap 'rm -rf "$TMP"' EXIT
P=$TMP/prefix
fails=0
bad() { fails=$((fails + 1)); echo "FAIL: $*" >&2; }
want=$(sed -n 's/^project(gmflow VERSION \([0-9.]*\).*/\1/p' CMakeLists.txt)
# the SONAME's version: <major>, or 0.<minor> while the major version is 0 (CMakeLists.txt)
sov=${want%%.*}
[ "$sov" = 0 ] && sov=$(echo "$want" | cut -d. -f1,2)
# A sanitized build's library needs the sanitizer runtime in the consumer's link too.
FLAGS=""
grep -q '^GMFLOW_SANITIZE:BOOL=ON' "$BUILD/CMakeCache.txt" && FLAGS="-fsanitize=address,undefined"

cmake --install "$BUILD" --prefix "$P" >"$TMP/install.log" 2>&1 ||
    { cat "$TMP/install.log" >&2; echo "consumer: FAIL: cmake --install" >&2; exit 1; }
pc=$(find "$P" -name gmflow.pc)
[ -n "$pc" ] || { echo "consumer: FAIL: no gmflow.pc installed" >&2; exit 1; }
LIBDIR=$(dirname "$(dirname "$pc")")
for f in include/gmflow/gmflow.h include/gmflow/version.h include/gmflow/flow.h bin/gmflow; do
    [ -e "$P/$f" ] || bad "not installed: $f"
done
for f in libgmflow.a "libgmflow.so.$sov" gmflow.pc cmake/gmflow/gmflowConfig.cmake \
    cmake/gmflow/gmflowConfigVersion.cmake cmake/gmflow/gmflowTargets.cmake; do
    [ -e "$LIBDIR/$f" ] || [ -e "$LIBDIR/pkgconfig/$f" ] || bad "not installed: $LIBDIR/$f"
done
soname=$(readelf -d "$LIBDIR/libgmflow.so" 2>/dev/null | sed -n 's/.*SONAME.*\[\(.*\)\]/\1/p')
[ "$soname" = "libgmflow.so.$sov" ] || bad "SONAME '$soname', want libgmflow.so.$sov"
"$P/bin/gmflow" --version | grep -qx "gmflow $want" || bad "installed gmflow --version is not 'gmflow $want'"

# check NAME CMD...: runs a consumer, wants PASS and the version line
check() {
    local name=$1
    shift
    if ! "$@" >"$TMP/$name.out" 2>&1; then
        bad "$name exited non-zero:"; cat "$TMP/$name.out" >&2; return
    fi
    grep -qx "gmflow $want (headers $want)" "$TMP/$name.out" || bad "$name: version line wrong: $(head -1 "$TMP/$name.out")"
    grep -qx PASS "$TMP/$name.out" || bad "$name: no PASS"
    echo "consumer: $name: $(sed -n 2p "$TMP/$name.out")"
}

# 1. find_package(gmflow)
if cmake -S "$SRC" -B "$TMP/cm" -DCMAKE_PREFIX_PATH="$P" -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_C_FLAGS="$FLAGS" -DCMAKE_EXE_LINKER_FLAGS="$FLAGS" >"$TMP/cm.log" 2>&1 &&
    cmake --build "$TMP/cm" >>"$TMP/cm.log" 2>&1; then
    check find_package-shared "$TMP/cm/consumer_shared"
    check find_package-static "$TMP/cm/consumer_static"
    readelf -d "$TMP/cm/consumer_static" | grep -q 'NEEDED.*libgmflow' &&
        bad "consumer_static depends on libgmflow.so"
else
    tail -30 "$TMP/cm.log" >&2
    bad "find_package(gmflow) consumer did not configure/build"
fi

# 2. pkg-config
export PKG_CONFIG_PATH=$LIBDIR/pkgconfig
if cflags=$(pkg-config --cflags gmflow) && libs=$(pkg-config --libs gmflow) &&
    slibs=$(pkg-config --static --libs gmflow); then
    # shellcheck disable=SC2086
    if cc -std=c11 $FLAGS $cflags "$SRC/consumer.c" -o "$TMP/pc_shared" $libs -lm \
        -Wl,-rpath,"$LIBDIR" 2>"$TMP/pc.log"; then
        check pkg-config-shared "$TMP/pc_shared"
    else
        cat "$TMP/pc.log" >&2; bad "cc \$(pkg-config --cflags --libs gmflow) failed"
    fi
    # shellcheck disable=SC2086
    if cc -std=c11 $FLAGS $cflags "$SRC/consumer.c" -o "$TMP/pc_static" ${slibs/-lgmflow/-l:libgmflow.a} \
        2>"$TMP/pcs.log"; then
        check pkg-config-static "$TMP/pc_static"
    else
        cat "$TMP/pcs.log" >&2; bad "cc \$(pkg-config --static --libs gmflow) with libgmflow.a failed"
    fi
else
    bad "pkg-config does not find gmflow in $PKG_CONFIG_PATH"
fi

[ $fails -eq 0 ] || { echo "consumer: $fails failure(s)" >&2; exit 1; }
echo "consumer: PASS (installed to a temporary prefix; find_package and pkg-config, shared and static)"
