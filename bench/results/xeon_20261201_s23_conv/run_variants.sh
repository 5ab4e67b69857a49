#!/bin/sh
# run_variants.sh -- every variant tried in s23-conv against main 0111c4a's kernel (conv_bench,
# core 1, 21 rounds), on MNIST batches (/tmp/conv_mnist.u8) and i.i.d. 80 %-zero bytes; run
# from the repository root at the commit that holds the variants, under flock /tmp/bench.lock.
# Variant 1 ("new, ZSKIP0") is this tree's kernel with every switch off: the control.
B=bench/results/xeon_20261201_s23_conv
run() { # name V2-flags data [d]
    echo "== $1 ($2) on $3 ${4:-784}: $(uptime)"
    V1=-DGMF_CONV_ZSKIP0 V2="$2" $B/build_bench.sh /tmp/conv_bench_v || exit 1
    taskset -c 1 /tmp/conv_bench_v $3 21 $4
}
M=/tmp/conv_mnist.u8
run "zero skip, 8-byte halves" "-DCONV_ZSKIP_HALF=1" $M
run "zero skip, 8-byte halves" "-DCONV_ZSKIP_HALF=1" rand
run "zero skip, whole 16x16 blocks" "-DCONV_ZSKIP_HALF=0" $M
run "zero skip, whole 16x16 blocks" "-DCONV_ZSKIP_HALF=0" rand
run "X^T from registers, 128-bit lane stores" "-DGMF_CONV_ZSKIP0 -DGMF_CONV_STRANS" $M
run "X^T from registers, masked 512-bit stores" "-DGMF_CONV_ZSKIP0 -DGMF_CONV_STRANS -DGMF_CONV_MSTORE" $M
run "prefetchw 2 blocks ahead" "-DGMF_CONV_ZSKIP0 -DGMF_CONV_PFW=32" $M
run "p outer, 64-row panels" "-DGMF_CONV_ZSKIP0 -DGMF_CONV_POUTER" $M
run "sensitivity: fake conversion (wrong values)" "-DGMF_CONV_ZSKIP0 -DGMF_CONV_FAKE" $M
run "sensitivity: fake conversion, d = 64 (all in L1)" "-DGMF_CONV_ZSKIP0 -DGMF_CONV_FAKE" $M 64
