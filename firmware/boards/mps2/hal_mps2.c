/* Board support for QEMU mps2-an386: CMSDK UART0, SysTick clock, semihosting exit, main loop.
 * This is the HAL side: it includes the core (app, control, model), never the other way round.
 * The main loop polls the UART and lets the application run the control period when due. */
#include <stddef.h>
#include <stdint.h>

#include "model.h"
#include "nnmpc_app.h"

#ifndef NNMPC_BOARD_NAME
#define NNMPC_BOARD_NAME "qemu-m4f"
#endif
#ifndef NNMPC_SYSTICK_INPUT_HZ
#define NNMPC_SYSTICK_INPUT_HZ 25000000u /* the MPS2 FPGA system clock QEMU models */
#endif

#define UART0_BASE 0x40004000u
#define UART_DATA (*(volatile uint32_t *)(UART0_BASE + 0x00u))
#define UART_STATE (*(volatile uint32_t *)(UART0_BASE + 0x04u))
#define UART_CTRL (*(volatile uint32_t *)(UART0_BASE + 0x08u))
#define UART_BAUDDIV (*(volatile uint32_t *)(UART0_BASE + 0x10u))
#define UART_STATE_TXFULL 0x1u
#define UART_STATE_RXFULL 0x2u

#define SYST_CSR (*(volatile uint32_t *)0xE000E010u)
#define SYST_RVR (*(volatile uint32_t *)0xE000E014u)
#define SYST_CVR (*(volatile uint32_t *)0xE000E018u)

#define SYSTICK_RELOAD (NNMPC_SYSTICK_INPUT_HZ / 1000u) /* 1 ms interrupts */

static volatile uint32_t g_millis;

void SysTick_Handler(void)
{
    g_millis++;
}

/* Free-running tick counter at NNMPC_SYSTICK_INPUT_HZ: milliseconds from the interrupt plus
 * the down-counter's progress. Read twice around the counter so a wrap in between is seen. */
static uint32_t clock_ticks(void)
{
    uint32_t ms, cvr;
    do {
        ms = g_millis;
        cvr = SYST_CVR;
    } while (ms != g_millis);
    return ms * SYSTICK_RELOAD + (SYSTICK_RELOAD - 1u - cvr);
}

static void uart_init(void)
{
    UART_BAUDDIV = 16u;   /* ignored by QEMU; a valid value for silicon */
    UART_CTRL = 0x3u;     /* TX and RX enabled, no interrupts: the main loop polls */
}

static void uart_write(const uint8_t *data, size_t n)
{
    size_t i;
    for (i = 0; i < n; ++i) {
        while (UART_STATE & UART_STATE_TXFULL) {
        }
        UART_DATA = data[i];
    }
}

static void semihost_exit(int code)
{
    /* SYS_EXIT_EXTENDED (0x20) with ADP_Stopped_ApplicationExit: QEMU exits with `code`. */
    uint32_t block[2] = {0x20026u, (uint32_t)code};
    register uint32_t r0 __asm("r0") = 0x20u;
    register uint32_t *r1 __asm("r1") = block;
    __asm volatile("bkpt 0xab" : "+r"(r0) : "r"(r1) : "memory");
}

static const nnmpc_model_t g_model = {
    MODEL_INPUT_SIZE, MODEL_OUTPUT_SIZE, MODEL_HASH, model_predict, model_predict_jacobian,
};

static nnmpc_control_t g_control;
static nnmpc_app_t g_app;

/* Peripherals and the application; a function of its own so an instruction counter can set
 * the image up and then drive nnmpc_app_on_byte(&g_app, ...) itself (bench/mpc_bench.py). */
__attribute__((noinline)) int nnmpc_board_init(void);
__attribute__((noinline)) int nnmpc_board_init(void)
{
    uart_init();
    SYST_RVR = SYSTICK_RELOAD - 1u;
    SYST_CVR = 0u;
    SYST_CSR = 0x7u; /* processor clock, interrupt, enable */

    g_app.model = &g_model;
    g_app.board = NNMPC_BOARD_NAME;
    g_app.write = uart_write;
    g_app.exit = semihost_exit;
    g_app.clock = clock_ticks;
    g_app.clock_hz = NNMPC_SYSTICK_INPUT_HZ;
    g_app.control = &g_control;
    return nnmpc_app_init(&g_app);
}

int main(void)
{
    if (nnmpc_board_init() != 0) {
        semihost_exit(3);
    }
    /* Sample the UART, run the control period when it is due (fixed rate) or when a SENSOR
     * frame completes (lock-step). */
    for (;;) {
        if (UART_STATE & UART_STATE_RXFULL) {
            nnmpc_app_on_byte(&g_app, (uint8_t)UART_DATA);
        }
        nnmpc_app_poll(&g_app);
    }
}
