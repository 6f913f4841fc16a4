/*
 * Arduino-framework board support for nnmpc (Teensy, STM32duino, Adafruit SAMD, nRF52, RP2040).
 *
 * Implements the thin HAL (nnmpc_hal.h) with the Arduino API and runs the board-independent
 * application core: nnmpc_begin() from setup(), nnmpc_poll() from loop(). Received bytes go to
 * nnmpc_app_on_byte(); a fixed-rate tick calls nnmpc_board_tick(). Everything board-specific
 * comes in as macros, from the generated platformio.ini (host/pio.py) or from nnmpc_config.h
 * (written by `nnmpc export-lib --board B`), with these defaults:
 *
 *   NNMPC_BOARD_NAME      "arduino"          name reported to the host in HELLO
 *   NNMPC_SERIAL          Serial             the Arduino stream of the host link
 *   NNMPC_BAUD            115200             UART baud rate (ignored by USB CDC)
 *   NNMPC_PERIOD_US       10000              period of nnmpc_board_tick() in microseconds (the
 *                                            control period comes with the host's CONFIG)
 *   NNMPC_TIMER_INTERVALTIMER / NNMPC_TIMER_HARDWARETIMER
 *                                            tick from a Teensy IntervalTimer or an STM32duino
 *                                            HardwareTimer (NNMPC_TIMER_INSTANCE, e.g. TIM2)
 *                                            instead of polling micros() in loop()
 *   NNMPC_SENSOR_PINS     A0, A1             analog inputs read by nnmpc_hal_sensor_read()
 *   NNMPC_ACTUATOR_PINS   5, 6               PWM outputs written by nnmpc_hal_actuator_write()
 *   NNMPC_ADC_BITS, NNMPC_PWM_BITS           analogRead/analogWrite resolution, if the core
 *                                            supports analogReadResolution/analogWriteResolution
 *   NNMPC_LOCAL_SENSORS                      feed the fixed-rate loop from the analog inputs
 *                                            instead of the host's SENSOR frames
 *
 * The application core runs the control periods on the clock given here (micros(), 1 MHz);
 * after every period the new inputs u go to the actuators.
 */
#include <Arduino.h>

#if defined(__has_include)
#if __has_include("nnmpc_config.h")
#include "nnmpc_config.h"
#endif
#endif

#include "model.h"
#include "nnmpc_app.h"
#include "nnmpc_arduino.h"
#include "nnmpc_hal.h"

#ifndef NNMPC_BOARD_NAME
#define NNMPC_BOARD_NAME "arduino"
#endif
#ifndef NNMPC_SERIAL
#define NNMPC_SERIAL Serial
#endif
#ifndef NNMPC_BAUD
#define NNMPC_BAUD 115200
#endif
#ifndef NNMPC_PERIOD_US
#define NNMPC_PERIOD_US 10000u
#endif
#if (NNMPC_PERIOD_US) < 100 || (NNMPC_PERIOD_US) > 10000000
#error "NNMPC_PERIOD_US must be within [100, 10000000]"
#endif
#ifndef NNMPC_SENSOR_PINS
#define NNMPC_SENSOR_PINS A0
#endif
#ifndef NNMPC_ACTUATOR_PINS
#define NNMPC_ACTUATOR_PINS 5
#endif
#ifndef NNMPC_ADC_BITS
#define NNMPC_ADC_BITS 10
#define NNMPC_ADC_DEFAULT 1
#endif
#ifndef NNMPC_PWM_BITS
#define NNMPC_PWM_BITS 8
#define NNMPC_PWM_DEFAULT 1
#endif

static const int g_sensor_pins[] = {NNMPC_SENSOR_PINS};
static const int g_actuator_pins[] = {NNMPC_ACTUATOR_PINS};

/* ---- HAL: serial ---------------------------------------------------------------------- */

extern "C" void nnmpc_hal_serial_write(const uint8_t *data, size_t n)
{
    NNMPC_SERIAL.write(data, n);
}

extern "C" int nnmpc_hal_serial_read(void)
{
    return NNMPC_SERIAL.available() > 0 ? NNMPC_SERIAL.read() : -1;
}

/* ---- HAL: time and the control tick ----------------------------------------------------- */

extern "C" uint32_t nnmpc_hal_micros(void)
{
    return (uint32_t)micros();
}

static volatile uint32_t g_ticks_pending;

#if defined(NNMPC_TIMER_INTERVALTIMER)
static IntervalTimer g_timer;
static void on_timer(void)
{
    g_ticks_pending++;
}
static void timer_start(void)
{
    g_timer.begin(on_timer, NNMPC_PERIOD_US);
}
static bool tick_due(void)
{
    bool due;
    noInterrupts();
    due = g_ticks_pending != 0u;
    g_ticks_pending = 0u; /* overruns are dropped, not queued */
    interrupts();
    return due;
}
#elif defined(NNMPC_TIMER_HARDWARETIMER)
#ifndef NNMPC_TIMER_INSTANCE
#define NNMPC_TIMER_INSTANCE TIM2
#endif
static HardwareTimer *g_timer;
static void on_timer(void)
{
    g_ticks_pending++;
}
static void timer_start(void)
{
    g_timer = new HardwareTimer(NNMPC_TIMER_INSTANCE);
    g_timer->setOverflow(NNMPC_PERIOD_US, MICROSEC_FORMAT);
    g_timer->attachInterrupt(on_timer);
    g_timer->resume();
}
static bool tick_due(void)
{
    bool due;
    noInterrupts();
    due = g_ticks_pending != 0u;
    g_ticks_pending = 0u;
    interrupts();
    return due;
}
#else
static uint32_t g_next_tick_us;
static void timer_start(void)
{
    g_next_tick_us = (uint32_t)micros() + NNMPC_PERIOD_US;
}
static bool tick_due(void)
{
    uint32_t now = (uint32_t)micros();
    if ((int32_t)(now - g_next_tick_us) < 0) {
        return false;
    }
    g_next_tick_us += NNMPC_PERIOD_US;
    if ((int32_t)(now - g_next_tick_us) >= 0) {
        g_next_tick_us = now + NNMPC_PERIOD_US; /* overrun: skip, do not burst */
    }
    return true;
}
#endif

/* ---- HAL: sensors and actuators --------------------------------------------------------- */

extern "C" int nnmpc_hal_sensor_read(float *y, int n)
{
    const float scale = 1.0f / (float)((1ul << NNMPC_ADC_BITS) - 1ul);
    int i, count = (int)(sizeof(g_sensor_pins) / sizeof(g_sensor_pins[0]));
    if (n < count) {
        count = n;
    }
    for (i = 0; i < count; ++i) {
        y[i] = (float)analogRead(g_sensor_pins[i]) * scale;
    }
    return count;
}

extern "C" void nnmpc_hal_actuator_write(const float *u, int n)
{
    const float full = (float)((1ul << NNMPC_PWM_BITS) - 1ul);
    int i, count = (int)(sizeof(g_actuator_pins) / sizeof(g_actuator_pins[0]));
    if (n < count) {
        count = n;
    }
    for (i = 0; i < count; ++i) {
        float v = u[i];
        v = v < 0.0f ? 0.0f : (v > 1.0f ? 1.0f : v);
        analogWrite(g_actuator_pins[i], (int)(v * full + 0.5f));
    }
}

extern "C" __attribute__((weak)) void nnmpc_board_tick(uint32_t now_us)
{
    (void)now_us;
}

/* ---- The application ------------------------------------------------------------------- */

static uint32_t clock_micros(void)
{
    return (uint32_t)micros();
}

static const nnmpc_model_t g_model = {
    MODEL_INPUT_SIZE, MODEL_OUTPUT_SIZE, MODEL_HASH, model_predict, model_predict_jacobian,
};
static nnmpc_control_t g_control;
static nnmpc_app_t g_app;

void nnmpc_begin(void)
{
    NNMPC_SERIAL.begin(NNMPC_BAUD);
#if !defined(NNMPC_ADC_DEFAULT)
    analogReadResolution(NNMPC_ADC_BITS);
#endif
#if !defined(NNMPC_PWM_DEFAULT)
    analogWriteResolution(NNMPC_PWM_BITS);
#endif
    g_app.model = &g_model;
    g_app.board = NNMPC_BOARD_NAME;
    g_app.write = nnmpc_hal_serial_write;
    g_app.exit = NULL; /* a real board keeps running after the host says goodbye */
    g_app.clock = clock_micros;
    g_app.clock_hz = 1000000u;
    g_app.control = &g_control;
    if (nnmpc_app_init(&g_app) != 0) {
        for (;;) {
        }
    }
    timer_start();
}

void nnmpc_poll(void)
{
    const uint32_t periods = g_app.periods;
    int c;
    while ((c = nnmpc_hal_serial_read()) >= 0) {
        nnmpc_app_on_byte(&g_app, (uint8_t)c); /* lock-step periods run from SENSOR frames */
    }
#if defined(NNMPC_LOCAL_SENSORS)
    /* Fixed-rate loop on the board's own sensors: sample just before a due period, in place
     * of the last SENSOR frame's values. */
    if (g_control.running && g_control.config.source == NNMPC_SOURCE_HOST &&
        g_app.period_ticks != 0u && (int32_t)(clock_micros() - g_app.next_due) >= 0) {
        nnmpc_hal_sensor_read(g_app.y_latest, g_control.config.p);
    }
#endif
    nnmpc_app_poll(&g_app); /* fixed-rate periods run here when due */
    if (g_app.periods != periods) {
        nnmpc_hal_actuator_write(g_control.u, g_control.config.m);
    }
    if (tick_due()) {
        nnmpc_board_tick(nnmpc_hal_micros());
    }
}
