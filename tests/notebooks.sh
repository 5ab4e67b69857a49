#!/usr/bin/env bash
# notebooks.sh -- every figure notebook (notebooks/*.ipynb) runs headless on fresh quick outputs:
# examples/run_all.sh --quick into a temporary results directory, then
# `jupyter nbconvert --to notebook --execute` of each notebook with GMFLOW_RESULTS pointing there
# and GMFLOW_FIGDIR at a temporary image directory.  Fails when a notebook raises, when its PNG
# (<figdir>/<notebook name>.png) is missing, empty or not a PNG, when a committed notebook still
# carries outputs, or when jupyter nbconvert is not installed (not a skip: the figures are part of
# the project; tools/setup.sh installs the Debian packages).  Without ../shared/data the drivers
# cannot run, and the notebooks run on the committed results/quick instead.
#
#   tests/notebooks.sh <path to gmflow> [build dir]      (run from the repository root)
set -u
GMFLOW=${1:?usage: notebooks.sh <gmflow> [build dir]}
# flow_dynamics.ipynb calls the Python package of this build (build/python; docs/PYTHON.md); an
# AddressSanitizer build's extension needs the ASan runtime preloaded into the interpreter
NB_ENV=()
if [ -d "${2:-build}/python/gmflow" ]; then
    export PYTHONPATH="$(cd "${2:-build}/python" && pwd)${PYTHONPATH:+:$PYTHONPATH}"
    for so in "${2:-build}"/python/gmflow/_gmflow*.so; do
        if [ -f "$so" ] && ldd "$so" 2>/dev/null | grep -q libasan; then
            NB_ENV=(env "LD_PRELOAD=$(${CC:-cc} -print-file-name=libasan.so)" ASAN_OPTIONS=detect_leaks=0)
        fi
    done
fi
PKGS="jupyter-nbconvert python3-ipykernel python3-matplotlib python3-nbformat python3-numpy"
if ! command -v jupyter >/dev/null 2>&1 || ! jupyter nbconvert --version >/dev/null 2>&1; then
    echo "notebooks: FAIL: jupyter nbconvert is not installed; install the Debian packages" >&2
    echo "  $PKGS" >&2
    echo "  (tools/setup.sh does, or: apt-get install -y --no-install-recommends $PKGS)" >&2
    exit 1
fi
TMP=$(mktemp -d /tmp/gmflow_notebooks.XXXXXX)
trap 'rm -rf "$TMP"' EXIT
fails=0
bad() {
    fails=$((fails + 1))
    echo "FAIL: $*" >&2
}
t0=$(date +%s)

nbs=(notebooks/*.ipynb)
[ -f "${nbs[0]}" ] || { echo "notebooks: FAIL: no notebooks/*.ipynb (run from the repository root)" >&2; exit 1; }

# committed notebooks carry no outputs (strip with: jupyter nbconvert --clear-output --inplace)
/usr/bin/python3 - "${nbs[@]}" <<'PY' || bad "committed notebooks carry outputs (jupyter nbconvert --clear-output --inplace notebooks/*.ipynb)"
import json, sys
dirty = []
for f in sys.argv[1:]:
    for c in json.load(open(f))["cells"]:
        if c["cell_type"] == "code" and (c.get("outputs") or c.get("execution_count") is not None):
            dirty.append(f)
            break
for f in dirty:
    print(f"  {f} has outputs or execution counts", file=sys.stderr)
sys.exit(1 if dirty else 0)
PY

if [ -d ../shared/data/mnist ]; then
    RES=$TMP/res
    if ! examples/run_all.sh --quick --results "$RES" --work "$TMP/work" --gmflow "$GMFLOW" \
        >"$TMP/run_all.log" 2>&1; then
        tail -20 "$TMP/run_all.log" >&2
        echo "notebooks: FAIL: examples/run_all.sh --quick failed" >&2
        exit 1
    fi
    echo "notebooks: quick results in $(($(date +%s) - t0)) s"
else
    RES=$PWD/results/quick
    echo "notebooks: no ../shared/data/mnist: running the notebooks on the committed $RES"
    [ -d "$RES" ] || { echo "notebooks: FAIL: no $RES either" >&2; exit 1; }
fi

export GMFLOW_RESULTS=$RES GMFLOW_FIGDIR=$TMP/img PYDEVD_DISABLE_FILE_VALIDATION=1 MPLBACKEND=Agg
for nb in "${nbs[@]}"; do
    name=$(basename "$nb" .ipynb)
    t1=$(date +%s)
    if ! "${NB_ENV[@]}" jupyter nbconvert --to notebook --execute --ExecutePreprocessor.timeout=600 \
        --output-dir "$TMP/nb" "$nb" >"$TMP/$name.log" 2>&1; then
        grep -v '^\[NbConvertApp\]' "$TMP/$name.log" | sed 's/\x1b\[[0-9;]*m//g' | tail -25 >&2
        bad "$nb raised"
        continue
    fi
    png=$TMP/img/$name.png
    if [ ! -s "$png" ]; then
        bad "$nb did not write $name.png"
    elif [ "$(head -c 8 "$png" | od -An -tx1 | tr -d ' \n')" != 89504e470d0a1a0a ]; then
        bad "$name.png is not a PNG"
    else
        echo "notebooks: $name ok ($(($(date +%s) - t1)) s, $(wc -c <"$png") bytes)"
    fi
done

if [ $fails -ne 0 ]; then
    echo "notebooks: $fails failure(s)"
    exit 1
fi
echo "notebooks: PASS (${#nbs[@]} notebooks, $(($(date +%s) - t0)) s)"
