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
 *   NNMPC_ADC_BITS, NNMPC_PWM_BITS           analogRead/analogWrite resolution, if the core
 *                                            supports analogReadResolution/analogWriteResolution
 *   NNMPC_LOCAL_SENSORS                      on-board sensing (CONFIG source 2): the board's
 *                                            channels, pins and calibration come from the
 *                                            generated nnmpc_io_config.h (the board file's
 *                                            [[sensor]] and [[actuator]] tables)
 *
 * The application core runs the control periods on the clock given here (micros(), 1 MHz).
 * With on-board sensing it samples the sensors (raw ADC counts), calibrates them to units,
 * solves, and drives the actuators (units calibrated to PWM duty) every period.
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
#if defined(NNMPC_LOCAL_SENSORS)
#include "nnmpc_io_config.h"
#if NNMPC_IO_SENSORS < 1 || NNMPC_IO_ACTUATORS < 1 || !defined(NNMPC_IO_SENSOR_PINS)
#error "on-board sensing needs [[sensor]] and [[actuator]] channels with pins in the board file"
#endif
#define NNMPC_SENSOR_PINS NNMPC_IO_SENSOR_PINS
#define NNMPC_ACTUATOR_PINS NNMPC_IO_ACTUATOR_PINS
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

#if defined(NNMPC_LOCAL_SENSORS)
/* The core's view of the channels: raw ADC counts in, PWM duty out. */
static int io_read(uint32_t k, float *raw, int n)
{
    int i;
    (void)k;
    for (i = 0; i < n && i < NNMPC_IO_SENSORS; ++i) {
        raw[i] = (float)analogRead(g_sensor_pins[i]);
    }
    return i;
}

static void io_write(uint32_t k, const float *duty, int n)
{
    (void)k;
    nnmpc_hal_actuator_write(duty, n);
}

static const nnmpc_io_t g_io = {
    NNMPC_IO_SENSORS, NNMPC_IO_ACTUATORS, nnmpc_io_sensor_cal, nnmpc_io_actuator_cal,
    io_read, io_write,
};
#endif

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
#if defined(NNMPC_LOCAL_SENSORS)
    g_app.io = &g_io;
#endif
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
    nnmpc_app_poll(&g_app); /* fixed-rate periods run here when due (on-board sensing:
                               sample, solve and actuate through g_io) */
    if (g_app.periods != periods && g_control.config.source != NNMPC_SOURCE_BOARD) {
        nnmpc_hal_actuator_write(g_control.u, g_control.config.m); /* duty = u, in [0, 1] */
    }
    if (tick_due()) {
        nnmpc_board_tick(nnmpc_hal_micros());
    }
}
