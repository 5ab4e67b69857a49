#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <time.h>
int main(void) {
    struct timespec a, b;
    long n = 400000000L, x = 3;
    clock_gettime(CLOCK_MONOTONIC, &a);
    __asm__ volatile("mov %1, %%rcx\n1:\n imul %0, %0\n imul %0, %0\n imul %0, %0\n imul %0, %0\n sub $4, %%rcx\n jnz 1b" : "+r"(x) : "r"(n) : "rcx", "cc");
    clock_gettime(CLOCK_MONOTONIC, &b);
    const double s = (b.tv_sec - a.tv_sec) + 1e-9 * (b.tv_nsec - a.tv_nsec);
    printf("dependent imul (latency 3): %.3f GHz (%.3f s, %ld)\n", 3e-9 * n / s, s, x);
    return 0;
}
