/*
 * Benchmark image: a minimal startup and a main() that references the functions under test,
 * so the linker keeps them. The host calls the functions directly in an instruction-level
 * emulator (host/bench/cortexm.py); main() itself never runs there.
 *
 * BENCH_PREFIX names the model (BENCH_PREFIX_predict, ..._jacobian). BENCH_JACOBIAN=1 keeps
 * the Jacobian too. Built once more against bench_empty.c (same symbols, empty bodies) to
 * measure the flash and RAM of the model alone.
 */
#include <stdint.h>

#ifndef BENCH_IN
#error "define BENCH_IN and BENCH_OUT (input and output sizes)"
#endif

#define CAT_(a, b) a##b
#define CAT(a, b) CAT_(a, b)
#define PREDICT CAT(BENCH_PREFIX, _predict)
#define JACOBIAN CAT(BENCH_PREFIX, _jacobian)

void PREDICT(const float *input, float *output);
void JACOBIAN(const float *input, float *jacobian);

float bench_input[BENCH_IN];
float bench_output[BENCH_OUT];
float bench_jac[BENCH_OUT * BENCH_IN];

int main(void)
{
    PREDICT(bench_input, bench_output);
#if BENCH_JACOBIAN
    JACOBIAN(bench_input, bench_jac);
#endif
    return 0;
}

extern uint32_t _sidata, _sdata, _edata, _sbss, _ebss, _estack;
void bench_reset(void);

void bench_reset(void)
{
    uint32_t *src = &_sidata, *dst;
    for (dst = &_sdata; dst < &_edata;) {
        *dst++ = *src++;
    }
    for (dst = &_sbss; dst < &_ebss;) {
        *dst++ = 0;
    }
    *(volatile uint32_t *)0xE000ED88u |= 0xFu << 20; /* enable the FPU (CPACR) */
    (void)main();
    for (;;) {
    }
}

__attribute__((section(".isr_vector"), used))
static void (*const bench_vectors[2])(void) = {
    (void (*)(void))(uintptr_t)&_estack, bench_reset,
};
