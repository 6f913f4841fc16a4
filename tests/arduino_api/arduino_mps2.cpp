/*
 * The Arduino API of tests/arduino_api/Arduino.h implemented on the emulated board (QEMU
 * mps2-an386: CMSDK UART0, SysTick), so that the Arduino HAL in firmware/boards/arduino runs
 * unchanged in QEMU in the tests: Serial is UART0, micros() counts SysTick, analogRead() returns
 * a fixed value per pin and analogWrite() keeps the last value per pin.
 */
#include "Arduino.h"

#ifndef SYSTICK_INPUT_HZ
#define SYSTICK_INPUT_HZ 25000000u
#endif
#define SYSTICK_RELOAD (SYSTICK_INPUT_HZ / 1000u)

#define UART_DATA (*(volatile uint32_t *)0x40004000u)
#define UART_STATE (*(volatile uint32_t *)0x40004004u)
#define UART_CTRL (*(volatile uint32_t *)0x40004008u)
#define SYST_CSR (*(volatile uint32_t *)0xE000E010u)
#define SYST_RVR (*(volatile uint32_t *)0xE000E014u)
#define SYST_CVR (*(volatile uint32_t *)0xE000E018u)

Stream Serial;
Stream Serial1;
Stream Serial2;

static volatile uint32_t g_ms;
volatile int g_analog_out[64];

extern "C" void SysTick_Handler(void)
{
    g_ms++;
}

void Stream::begin(unsigned long baud)
{
    (void)baud;
    UART_CTRL = 0x3u;
}

int Stream::available(void)
{
    return (UART_STATE & 0x2u) ? 1 : 0;
}

int Stream::read(void)
{
    return (UART_STATE & 0x2u) ? (int)(UART_DATA & 0xFFu) : -1;
}

size_t Stream::write(const uint8_t *buffer, size_t size)
{
    for (size_t i = 0; i < size; ++i) {
        while (UART_STATE & 0x1u) {
        }
        UART_DATA = buffer[i];
    }
    return size;
}

unsigned long micros(void)
{
    uint32_t ms, cvr;
    do {
        ms = g_ms;
        cvr = SYST_CVR;
    } while (ms != g_ms);
    return ms * 1000u + (SYSTICK_RELOAD - 1u - cvr) / (SYSTICK_INPUT_HZ / 1000000u);
}

unsigned long millis(void)
{
    return g_ms;
}

int analogRead(uint8_t pin)
{
    return 100 + pin;
}

void analogWrite(uint8_t pin, int value)
{
    g_analog_out[pin & 63u] = value;
}

void analogReadResolution(int bits)
{
    (void)bits;
}

void analogWriteResolution(int bits)
{
    (void)bits;
}

void noInterrupts(void)
{
    __asm volatile("cpsid i" ::: "memory");
}

void interrupts(void)
{
    __asm volatile("cpsie i" ::: "memory");
}

void setup();
void loop();

int main(void)
{
    SYST_RVR = SYSTICK_RELOAD - 1u;
    SYST_CVR = 0u;
    SYST_CSR = 0x7u;
    setup();
    for (;;) {
        loop();
    }
}
