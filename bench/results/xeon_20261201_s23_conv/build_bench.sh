#!/bin/sh
# build_bench.sh OUT -- conv_bench with variant 0 = main 0111c4a's gm_kern_xt.c, 1 = this tree's
# with -DGMF_CONV_ZSKIP0 (the zero skip off), 2 = this tree's (run from the repository root)
set -e
O=${1:-/tmp/conv_bench}
F="-O3 -march=native -std=c11 -Wall -Wextra -Iinclude -Isrc"
R="-Dgmf_nn_kern_xt_trans=trans_vX -Dgmf_nn_kern_xt=xt_vX"
git show 0111c4a:src/discrete/gm_kern_xt.c > $O.base.c
gcc $F -Isrc/discrete -Dgmf_nn_kern_xt_conv_u8=conv_v0 $(echo $R | sed s/X/0/g) -c $O.base.c -o $O.0.o
gcc $F $V1 -DGMF_CONV_ZSKIP0 -Dgmf_nn_kern_xt_conv_u8=conv_v1 $(echo $R | sed s/X/1/g) -c src/discrete/gm_kern_xt.c -o $O.1.o
gcc $F $V2 -Dgmf_nn_kern_xt_conv_u8=conv_v2 $(echo $R | sed s/X/2/g) -c src/discrete/gm_kern_xt.c -o $O.2.o
gcc $F bench/results/xeon_20261201_s23_conv/conv_bench.c $O.0.o $O.1.o $O.2.o -lm -o $O
