/* Board support for QEMU mps2-an386: CMSDK UART0, SysTick clock, semihosting exit, main loop.
 * This is the HAL side: it includes the core (app, control, model), never the other way round.
 * The main loop polls the UART and lets the application run the control period when due;
 * with nothing due before the next byte (stopped, lock-step) it sleeps in WFI until the UART's
 * RX interrupt or the 1 ms SysTick wakes it, so an idle emulated board costs no host CPU. */
#include <stddef.h>
#include <stdint.h>

#include "model.h"
#include "nnmpc_app.h"
#include "systick_clock.h"

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
#define UART_INTSTATUS (*(volatile uint32_t *)(UART0_BASE + 0x0Cu))
#define UART_BAUDDIV (*(volatile uint32_t *)(UART0_BASE + 0x10u))
#define UART_STATE_TXFULL 0x1u
#define UART_STATE_RXFULL 0x2u
#define UART_CTRL_RX_IRQ 0x8u
#define UART_INT_RX 0x2u
#define NVIC_ISER0 (*(volatile uint32_t *)0xE000E100u)
#define UART0_RX_IRQ 0u

#define SYST_CSR (*(volatile uint32_t *)0xE000E010u)
#define SYST_RVR (*(volatile uint32_t *)0xE000E014u)
#define SYST_CVR (*(volatile uint32_t *)0xE000E018u)
#define SCB_ICSR (*(volatile uint32_t *)0xE000ED04u)
#define SCB_ICSR_PENDSTSET (1u << 26) /* SysTick exception pending */

#define SYSTICK_RELOAD (NNMPC_SYSTICK_INPUT_HZ / 1000u) /* 1 ms interrupts */

static volatile uint32_t g_millis;

void SysTick_Handler(void)
{
    g_millis++;
}

/* Free-running, monotonic tick counter at NNMPC_SYSTICK_INPUT_HZ: milliseconds from the
 * interrupt plus the down-counter's progress. A reload that the interrupt has not counted yet
 * (pending) is counted here (see systick_clock.h); if the interrupt ran during the reads,
 * they are taken again. */
static uint32_t clock_ticks(void)
{
    uint32_t ms, before, pending, after;
    do {
        ms = g_millis;
        before = SYST_CVR;
        pending = SCB_ICSR & SCB_ICSR_PENDSTSET;
        after = SYST_CVR;
    } while (ms != g_millis);
    return nnmpc_systick_ticks(ms, before, pending, after, SYSTICK_RELOAD);
}

/* The RX interrupt only wakes the core from WFI; the main loop reads the byte. */
void UART0RX_Handler(void)
{
    UART_INTSTATUS = UART_INT_RX;
}

static void uart_init(void)
{
    UART_BAUDDIV = 16u;   /* ignored by QEMU; a valid value for silicon */
    UART_CTRL = 0x3u | UART_CTRL_RX_IRQ;  /* TX and RX enabled; RX raises IRQ 0 */
    NVIC_ISER0 = 1u << UART0_RX_IRQ;
}

/* Sleep until an interrupt (a received byte, or SysTick within 1 ms). Interrupts are masked
 * around the check, so a byte that arrives just before WFI still ends it (a pending interrupt
 * wakes WFI even while masked). */
static void wait_for_byte(void)
{
    __asm volatile("cpsid i" ::: "memory");
    if (!(UART_STATE & UART_STATE_RXFULL)) {
        __asm volatile("dsb\n wfi" ::: "memory");
    }
    __asm volatile("cpsie i" ::: "memory");
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

#if defined(NNMPC_LOCAL_SENSORS)
/* The stand-in rig: the sensors and actuators of a simulated plant behind UART1 (its own
 * loopback socket; host/link/rig.py). Each period: RIG_SAMPLE k -> raw readings, then
 * RIG_DRIVE k with the actuators' duty. The channels and their calibration come from the
 * generated nnmpc_io_config.h. */
#include "nnmpc_io_config.h"

#define UART1_BASE 0x40005000u
#define UART1_DATA (*(volatile uint32_t *)(UART1_BASE + 0x00u))
#define UART1_STATE (*(volatile uint32_t *)(UART1_BASE + 0x04u))
#define UART1_CTRL (*(volatile uint32_t *)(UART1_BASE + 0x08u))
#define UART1_BAUDDIV (*(volatile uint32_t *)(UART1_BASE + 0x10u))
#ifndef NNMPC_RIG_TIMEOUT_US
#define NNMPC_RIG_TIMEOUT_US 500000u /* a reading that takes longer is a failed read: the
                                       * stand-in rig is a host thread that may be slow to
                                       * answer; plant time waits with it */
#endif

static nnmpc_decoder_t g_rig_decoder;
static nnmpc_frame_t g_rig_frame;
static uint8_t g_rig_wire[NNMPC_WIRE_MAX];
static uint8_t g_rig_payload[NNMPC_PAYLOAD_MAX];
static uint8_t g_rig_seq;

static uint32_t clock_ticks(void);

static void rig_send(uint8_t type, const uint8_t *payload, size_t len)
{
    size_t i, n = nnmpc_frame_encode(type, ++g_rig_seq, payload, len, g_rig_wire);
    for (i = 0; i < n; ++i) {
        while (UART1_STATE & UART_STATE_TXFULL) {
        }
        UART1_DATA = g_rig_wire[i];
    }
}

static int rig_read(uint32_t k, float *raw, int n)
{
    nnmpc_rig_sample_req_t req;
    static nnmpc_rig_sample_rep_t rep;
    const uint32_t t0 = clock_ticks();
    const uint32_t limit = (uint32_t)(((uint64_t)NNMPC_RIG_TIMEOUT_US * NNMPC_SYSTICK_INPUT_HZ) / 1000000u);
    int i;
    req.k = k;
    rig_send(NNMPC_MSG_RIG_SAMPLE, g_rig_payload, nnmpc_rig_sample_req_pack(&req, g_rig_payload));
    while (clock_ticks() - t0 < limit) {
        if (!(UART1_STATE & UART_STATE_RXFULL)) {
            continue;
        }
        if (!nnmpc_decoder_push(&g_rig_decoder, (uint8_t)UART1_DATA, &g_rig_frame)) {
            continue;
        }
        if (g_rig_frame.type != (NNMPC_MSG_RIG_SAMPLE | NNMPC_MSG_REPLY) ||
            g_rig_frame.seq != g_rig_seq) {
            continue; /* a stale answer */
        }
        if (nnmpc_rig_sample_rep_unpack(&rep, g_rig_frame.payload, g_rig_frame.len) != 0 ||
            rep.raw_count < n) {
            return -1;
        }
        for (i = 0; i < n; ++i) {
            raw[i] = rep.raw[i];
        }
        return n;
    }
    return -1;
}

static void rig_write(uint32_t k, const float *raw, int n)
{
    static nnmpc_rig_drive_req_t req;
    int i;
    req.k = k;
    req.raw_count = (uint16_t)n;
    for (i = 0; i < n; ++i) {
        req.raw[i] = raw[i];
    }
    rig_send(NNMPC_MSG_RIG_DRIVE, g_rig_payload, nnmpc_rig_drive_req_pack(&req, g_rig_payload));
}

static const nnmpc_io_t g_io = {
    NNMPC_IO_SENSORS, NNMPC_IO_ACTUATORS, nnmpc_io_sensor_cal, nnmpc_io_actuator_cal,
    rig_read, rig_write,
};

static void rig_init(void)
{
    nnmpc_decoder_init(&g_rig_decoder);
    UART1_BAUDDIV = 16u;
    UART1_CTRL = 0x3u;
}
#endif /* NNMPC_LOCAL_SENSORS */

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
#if defined(NNMPC_LOCAL_SENSORS)
    rig_init();
    g_app.io = &g_io;
#endif
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
        } else if (nnmpc_app_idle(&g_app)) {
            wait_for_byte();
        }
        nnmpc_app_poll(&g_app);
    }
}
