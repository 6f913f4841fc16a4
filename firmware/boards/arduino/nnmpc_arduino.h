/*
 * nnmpc on the Arduino framework: call nnmpc_begin() from setup() and nnmpc_poll() from loop().
 *
 * nnmpc_begin() opens the serial link and starts the control tick; nnmpc_poll() answers host
 * requests and runs nnmpc_board_tick() once per control period. Neither blocks for long, so a
 * sketch can do its own work in loop() too.
 */
#ifndef NNMPC_ARDUINO_H
#define NNMPC_ARDUINO_H

#include "nnmpc_hal.h"

#ifdef __cplusplus
void nnmpc_begin(void);
void nnmpc_poll(void);
#endif

#endif /* NNMPC_ARDUINO_H */
