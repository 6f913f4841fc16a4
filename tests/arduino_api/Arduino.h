/*
 * The declarations of the Arduino API that firmware/boards/arduino uses, as the Teensyduino,
 * STM32duino, Adafruit SAMD, nRF52 and RP2040 cores declare them. Only for compile checks of the
 * Arduino HAL with arm-none-eabi-g++ where no vendor core is installed (tests/test_boards.py);
 * nothing is linked against it.
 */
#ifndef NNMPC_TEST_ARDUINO_H
#define NNMPC_TEST_ARDUINO_H

#include <stddef.h>
#include <stdint.h>

unsigned long micros(void);
unsigned long millis(void);
int analogRead(uint8_t pin);
void analogWrite(uint8_t pin, int value);
void analogReadResolution(int bits);
void analogWriteResolution(int bits);
void noInterrupts(void);
void interrupts(void);

#define A0 14
#define A1 15
#define A2 16
#define D3 3
#define D5 5
#define D6 6

class Stream {
public:
    void begin(unsigned long baud);
    int available(void);
    int read(void);
    size_t write(const uint8_t *buffer, size_t size);
};
extern Stream Serial;
extern Stream Serial1;
extern Stream Serial2;

/* Teensyduino */
class IntervalTimer {
public:
    bool begin(void (*funct)(), unsigned int microseconds);
    void end(void);
};

/* STM32duino */
typedef struct TIM_TypeDef TIM_TypeDef;
#define TIM2 ((TIM_TypeDef *)0x40000000u)
typedef enum { TICK_FORMAT, MICROSEC_FORMAT, HERTZ_FORMAT } TimerFormat_t;
class HardwareTimer {
public:
    explicit HardwareTimer(TIM_TypeDef *instance);
    void setOverflow(uint32_t val, TimerFormat_t format = TICK_FORMAT);
    void attachInterrupt(void (*callback)(void));
    void resume(void);
};

#endif
