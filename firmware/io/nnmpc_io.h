/*
 * nnmpc on-board sensing and actuation: calibration from raw readings to physical units and
 * from units to actuator commands, and the excitation signals of `nnmpc collect`.
 *
 * Board-independent: the HAL reads raw sensor values (ADC counts) and writes raw actuator
 * values (PWM duty in [0, 1]) through the two callbacks of nnmpc_io_t; the core converts with
 * one linear calibration per channel, so the nets see the units they were trained in.
 */
#ifndef NNMPC_IO_H
#define NNMPC_IO_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/** A linear calibration: the physical value `units_lo` reads as `raw_lo`, `units_hi` as
 *  `raw_hi`. Sensors map raw -> units (not clamped); actuators map units -> raw, clamped to
 *  [min(raw_lo, raw_hi), max(raw_lo, raw_hi)]. */
typedef struct {
    float raw_lo, raw_hi;
    float units_lo, units_hi;
} nnmpc_cal_t;

/** raw -> units; NaN when the calibration is degenerate (raw_lo == raw_hi). */
float nnmpc_cal_to_units(const nnmpc_cal_t *c, float raw);

/** units -> raw, clamped to the raw range; a NaN command gives raw_lo. */
float nnmpc_cal_to_raw(const nnmpc_cal_t *c, float units);

/** The board's local channels; set by the HAL (NULL in nnmpc_app_t: none). */
typedef struct {
    int n_sensors;
    int n_actuators;
    const nnmpc_cal_t *sensor;      /* n_sensors entries */
    const nnmpc_cal_t *actuator;    /* n_actuators entries */
    /** Sample the sensors into raw[0..n); returns n, or a negative value on a failed read. */
    int (*read)(uint32_t k, float *raw, int n);
    /** Drive the actuators from raw[0..n) (duty in [0, 1] on PWM boards). */
    void (*write)(uint32_t k, const float *raw, int n);
} nnmpc_io_t;

/** Sample and calibrate n values into y; a failed read gives NaN (the loop then holds u). */
void nnmpc_io_sense(const nnmpc_io_t *io, uint32_t k, float *y, int n);

/** Calibrate and drive n actuator values from u. */
void nnmpc_io_actuate(const nnmpc_io_t *io, uint32_t k, const float *u, int n);

/* -- excitation ------------------------------------------------------------------------------ */
enum {
    NNMPC_EXCITE_STEPS = 0,     /* random levels held for `hold` periods */
    NNMPC_EXCITE_CHIRP = 1,     /* linear sweep f_lo -> f_hi over `periods` */
    NNMPC_EXCITE_MULTISINE = 2, /* 12 evenly spaced tones in [f_lo, f_hi], random phases */
    NNMPC_EXCITE_PRBS = 3,      /* +-1 switching with random hold of 1..hold periods */
    NNMPC_EXCITE_KINDS = 4
};
#define NNMPC_EXCITE_TONES 12

typedef struct {
    uint8_t kind;
    uint16_t hold;       /* steps, prbs: periods per level (>= 1) */
    uint32_t seed;
    uint32_t periods;    /* chirp: sweep length */
    float f_lo, f_hi;    /* Hz */
    float dt;            /* s per period */
} nnmpc_excite_t;

/** The excitation of channel `ch` at period k, in [-1, 1]; a pure function of its arguments. */
float nnmpc_excite_value(const nnmpc_excite_t *e, uint32_t k, int ch);

#ifdef __cplusplus
}
#endif

#endif /* NNMPC_IO_H */
