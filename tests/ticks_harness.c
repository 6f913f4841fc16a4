/* nnmpc_us_to_ticks (32-bit arithmetic only) equals floor(us * clock_hz / 10^6) computed in
 * 64 bits, and refuses exactly what does not fit (tests/test_control.py). */
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include "nnmpc_control.h"
static uint64_t s = 88172645463325252ull;
static uint32_t rnd(void) { s ^= s << 13; s ^= s >> 7; s ^= s << 17; return (uint32_t)s; }
int main(void) {
    /* nnmpc_us_to_ticks against 64-bit arithmetic: edge values and 2 million random pairs */
    long bad = 0, n = 0;
    uint32_t clocks[] = {0, 1, 999999, 1000000, 1000001, 25000000, 168000000, 600000000, 4294967295u};
    uint32_t uss[] = {0, 1, 4095, 4096, 4097, 999999, 1000000, 9999999, 10000000, 10000001, 4294967295u};
    for (int t = 0; t < 2000000 + 99; ++t) {
        uint32_t c, u;
        if (t < 99) { c = clocks[t / 11]; u = uss[t % 11]; }
        else { c = rnd() >> (rnd() % 32); u = rnd() % 10000002u; }
        int ok = 1;
        uint32_t got = nnmpc_us_to_ticks(u, c, &ok);
        uint64_t want = ((uint64_t)u * c) / 1000000u;
        int want_ok = u <= 10000000u && want <= 0x7fffffffu;
        if (ok != want_ok || (ok && got != want)) { if (bad < 5) printf("us=%u clk=%u got %u ok %d want %llu\n", u, c, got, ok, (unsigned long long)want); bad++; }
        n++;
    }
    printf("%ld of %ld differ\n", bad, n);
    return bad != 0;
}
