/*
 * The board's tick clock from SysTick: milliseconds counted by the SysTick interrupt plus the
 * down-counter's progress within the millisecond. Pure arithmetic (no registers), so the host
 * tests can check it against a simulated counter (tests/test_systick.py).
 *
 * The counter runs R-1 .. 0 and reloads to R-1; reaching 0 pends the SysTick exception, and
 * the handler counts the millisecond some cycles later. Read as `ms * R + (R-1 - VAL)` the
 * clock jumps back by about 1 ms whenever VAL has reloaded but the handler has not run yet (the
 * exception is pending: interrupt latency, or in QEMU the rest of a translation block): the
 * period's work then reads as ~2^32 ticks. So the reader also samples the pending bit
 * (ICSR.PENDSTSET), with VAL read before (v_before) and after (v_after) it:
 *   - not pending: no reload is uncounted, and none happened between v_before and the
 *     pending read (it would have pended): ms * R + (R-1 - v_before);
 *   - pending, v_after != 0: a reload happened that ms does not count yet, and v_after was
 *     read after it: (ms + 1) * R + (R-1 - v_after);
 *   - pending, v_after == 0: on the tick that pends the exception, before the reload:
 *     ms * R + (R-1), the last tick of the millisecond.
 * The caller re-reads ms after the samples and retries if the handler ran in between. With
 * the SysTick interrupt masked for more than a millisecond two reloads can be uncounted;
 * that is not detectable from these registers.
 */
#ifndef NNMPC_SYSTICK_CLOCK_H
#define NNMPC_SYSTICK_CLOCK_H

#include <stdint.h>

/* r: ticks per millisecond (SysTick RELOAD + 1); v_before, v_after: SysTick VAL (< r);
 * pending: non-zero if the SysTick exception was pending between the two VAL reads. */
static inline uint32_t nnmpc_systick_ticks(uint32_t ms, uint32_t v_before, uint32_t pending,
                                           uint32_t v_after, uint32_t r)
{
    if (!pending) {
        return ms * r + (r - 1u - v_before);
    }
    if (v_after != 0u) {
        return (ms + 1u) * r + (r - 1u - v_after);
    }
    return ms * r + (r - 1u);
}

#endif /* NNMPC_SYSTICK_CLOCK_H */
