/* The firmware entry point on Arduino-framework boards: all the work is in nnmpc_arduino.cpp. */
#include <Arduino.h>

#include "nnmpc.h"

void setup()
{
    nnmpc_begin();
}

void loop()
{
    nnmpc_poll();
}
