/*
 * nnmpc thin hardware abstraction: serial link, time, sensor read, actuator write.
 *
 * The board-independent core (model, solver, protocol, application) is plain C99 and never
 * includes a board header; a board's main implements these functions and hands the core what
 * it needs. This header is the contract of the Arduino-framework implementation
 * (nnmpc_arduino.cpp); the bare-metal emulated board (firmware/boards/mps2) does the same with
 * registers.
 */
#ifndef NNMPC_HAL_H
#define NNMPC_HAL_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/** Blocking write of n bytes to the host link (UART or USB CDC). */
void nnmpc_hal_serial_write(const uint8_t *data, size_t n);

/** Next received byte, or -1 when none is waiting. Never blocks. */
int nnmpc_hal_serial_read(void);

/** Microseconds since start-up; wraps after 2^32 us (about 71 minutes). */
uint32_t nnmpc_hal_micros(void);

/** Sample up to n sensors into y (each scaled to [0, 1] of the ADC range); returns how many. */
int nnmpc_hal_sensor_read(float *y, int n);

/** Drive up to n actuators from u (each clamped to [0, 1] of the PWM range). */
void nnmpc_hal_actuator_write(const float *u, int n);

/**
 * Called once per board tick (NNMPC_PERIOD_US) from the main loop, outside interrupt
 * context, with the tick time. The default does nothing; a control loop defines its own.
 */
void nnmpc_board_tick(uint32_t now_us);

#ifdef __cplusplus
}
#endif

#endif /* NNMPC_HAL_H */
