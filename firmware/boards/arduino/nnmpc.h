/*
 * nnmpc library umbrella header: the compiled model, the application core and, on the Arduino
 * framework, nnmpc_begin()/nnmpc_poll(). Include it from a sketch:
 *
 *     #include <nnmpc.h>
 *     void setup() { nnmpc_begin(); }
 *     void loop() { nnmpc_poll(); }
 */
#ifndef NNMPC_H
#define NNMPC_H

#include "model.h"
#include "nnmpc_app.h"
#include "nnmpc_arduino.h"
#include "nnmpc_hal.h"

#endif /* NNMPC_H */
