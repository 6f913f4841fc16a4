/* Host driver for firmware/boards/mps2/systick_clock.h: reads lines "MS V_BEFORE PENDING
 * V_AFTER R" (samples of the SysTick registers, simulated by tests/test_systick.py) and
 * prints the tick count the board's clock_ticks() returns for each. */
#include <stdio.h>

#include "systick_clock.h"

int main(void)
{
    unsigned long ms, before, pending, after, r;
    while (scanf("%lu %lu %lu %lu %lu", &ms, &before, &pending, &after, &r) == 5) {
        printf("%lu\n", (unsigned long)nnmpc_systick_ticks((uint32_t)ms, (uint32_t)before,
                                                           (uint32_t)pending, (uint32_t)after,
                                                           (uint32_t)r));
    }
    return 0;
}
