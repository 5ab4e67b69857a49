#!/usr/bin/env bash
# tools/fuzz.sh -- build the libFuzzer targets (tests/fuzz/fuzz_*.c, one per reader) with clang,
# ASan and UBSan, and run each for a given time.
#
# usage: tools/fuzz.sh [-h | --help] [SECONDS_PER_TARGET [TARGET...]]
#   SECONDS_PER_TARGET  a positive integer (default: 60 s)
#   TARGET              csv state npy idx_raw idx_gz dataset checkpoint (default: all)
#
# Targets: csv state npy idx_raw idx_gz dataset checkpoint.  Each run starts from the committed
# regression corpus tests/fuzz/corpus/<target>/ (read-only: new inputs go to
# build-fuzz/corpus/<target>/), with -rss_limit_mb=256 -malloc_limit_mb=256 -max_len=65536, so a
# single allocation above 256 MB for an input under 1 MB is a finding, as is any crash, sanitizer
# report, GMF_ENOMEM or error message not naming the file (tests/fuzz/fuzz_common.h).  Findings
# land in build-fuzz/findings/<target>/; add them to tests/fuzz/corpus/<target>/ once fixed.
# The final libFuzzer statistics of each target go to build-fuzz/logs/<target>.log and a summary
# table (executions, cov, ft, corpus, findings) is printed at the end (docs/FUZZING.md).
#
# Environment: FUZZ_CPU (taskset CPU list, default 1), FUZZ_NICE (default 10), CC (default clang),
# TMPDIR for the targets' scratch files (default /dev/shm when it exists: 25x faster than a disk).
set -euo pipefail
# me, usage, usage_error, positional_args: the scripts' convention
# shellcheck source-path=SCRIPTDIR source=scriptargs.sh
. "$(dirname "$0")/scriptargs.sh"
all_targets=(csv state npy idx_raw idx_gz dataset checkpoint)
positional_args "$@"
secs=${pos[0]:-60}
[[ $secs =~ ^[1-9][0-9]*$ ]] || usage_error "SECONDS_PER_TARGET must be a positive integer (got '$secs')"
targets=("${pos[@]:1}")
for t in "${targets[@]}"; do
  case " ${all_targets[*]} " in
  *" $t "*) ;;
  *) usage_error "unknown target '$t' (choose from: ${all_targets[*]})" ;;
  esac
done
[ ${#targets[@]} -gt 0 ] || targets=("${all_targets[@]}")
cd "$(dirname "$0")/.."
cpu=${FUZZ_CPU:-1}
nicev=${FUZZ_NICE:-10}
B=build-fuzz
if [ -z "${TMPDIR:-}" ] && [ -d /dev/shm ] && [ -w /dev/shm ]; then export TMPDIR=/dev/shm; fi

CC=${CC:-clang} cmake -S . -B $B -DCMAKE_BUILD_TYPE=RelWithDebInfo -DGMFLOW_FUZZ=ON \
  -DGMFLOW_NATIVE=OFF >/dev/null
cmake --build $B -j2 --target $(printf 'fuzz_%s ' "${targets[@]}") >/dev/null

mkdir -p $B/logs
for t in "${targets[@]}"; do
  mkdir -p $B/corpus/$t $B/findings/$t
  echo "== $t: ${secs} s on CPU $cpu" >&2
  set +e
  OPENBLAS_NUM_THREADS=1 ASAN_OPTIONS=detect_leaks=1:quarantine_size_mb=32 \
    UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
    taskset -c "$cpu" nice -n "$nicev" $B/fuzz/fuzz_$t $B/corpus/$t tests/fuzz/corpus/$t \
    -max_total_time="$secs" -rss_limit_mb=256 -malloc_limit_mb=256 -max_len=65536 \
    -timeout=10 -print_final_stats=1 -artifact_prefix=$B/findings/$t/ \
    >$B/logs/$t.log 2>&1
  echo "   exit status $?" >>$B/logs/$t.log
  set -e
done

printf '| target | seconds | executions | exec/s | cov | ft | corpus | findings |\n'
printf '|---|---:|---:|---:|---:|---:|---:|---:|\n'
for t in "${targets[@]}"; do
  log=$B/logs/$t.log
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' $log | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' $log | tail -1)
  last=$(grep -E '^#[0-9]+' $log | grep -E 'cov:' | tail -1)
  cov=$(sed -n 's/.*cov: \([0-9]*\).*/\1/p' <<<"$last")
  ft=$(sed -n 's/.*ft: \([0-9]*\).*/\1/p' <<<"$last")
  corp=$(sed -n 's/.*corp: \([0-9]*\)\/.*/\1/p' <<<"$last")
  nfind=$(find $B/findings/$t -type f | wc -l)
  printf '| %s | %s | %s | %s | %s | %s | %s | %s |\n' "$t" "$secs" "${runs:-?}" "${rate:-?}" \
    "${cov:-?}" "${ft:-?}" "${corp:-?}" "$nfind"
done
