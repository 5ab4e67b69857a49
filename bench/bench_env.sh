# shellcheck shell=bash
# bench_env.sh -- sourced by the bench/run_*_bench.sh drivers: what every result file records
# about the machine it was measured on.
#
#   bench_machine_lines   "# key: value" lines: CPU model, the SIMD flags that matter (avx2, fma,
#                         avx512f/bw/vl, amx), cores, the clock (/proc/cpuinfo "cpu MHz", the
#                         nominal rate a VM reports, and lscpu's max MHz when it gives one), the
#                         load average, the date (UTC), the git commit of the tree (+dirty);
#   bench_load1           the 1-minute load average now (for per-row columns);
#   bench_cpu_model       the CPU model name.
bench_cpu_model() { grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | xargs; }
bench_load1() { cut -d' ' -f1 /proc/loadavg; }
bench_machine_lines() {
    local root=${1:-.} flags f simd="" maxmhz
    flags=" $(grep -m1 '^flags' /proc/cpuinfo | cut -d: -f2-) "
    for f in sse4_2 avx avx2 fma avx512f avx512bw avx512vl avx512_vnni avx512_bf16 amx_tile; do
        case "$flags" in *" $f "*) simd="$simd $f" ;; esac
    done
    maxmhz=$(lscpu 2>/dev/null | sed -n 's/^CPU max MHz: *//p')
    echo "# cpu: $(bench_cpu_model), $(getconf _NPROCESSORS_ONLN) online cores"
    echo "# simd flags:${simd:- none of the listed}"
    echo "# clock: cpu MHz $(grep -m1 'cpu MHz' /proc/cpuinfo | cut -d: -f2 | xargs) (/proc/cpuinfo)${maxmhz:+, lscpu max MHz $maxmhz}"
    echo "# load average (1/5/15 min): $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "# date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "# git: $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$root" diff --quiet HEAD 2>/dev/null || echo '+dirty')"
}
