/* nnmpc on-board sensing, actuation and excitation. See nnmpc_io.h. */
#include "nnmpc_io.h"

#include <math.h> /* NAN only: no libm call, so the image links no libm for this */

#define NNMPC_PI 3.14159265358979f

float nnmpc_cal_to_units(const nnmpc_cal_t *c, float raw)
{
    const float span = c->raw_hi - c->raw_lo;
    if (span == 0.0f) {
        return NAN;
    }
    return c->units_lo + (raw - c->raw_lo) * ((c->units_hi - c->units_lo) / span);
}

float nnmpc_cal_to_raw(const nnmpc_cal_t *c, float units)
{
    const float lo = c->raw_lo < c->raw_hi ? c->raw_lo : c->raw_hi;
    const float hi = c->raw_lo < c->raw_hi ? c->raw_hi : c->raw_lo;
    const float span = c->units_hi - c->units_lo;
    float raw;
    if (span == 0.0f || !(units == units)) {
        return c->raw_lo;
    }
    raw = c->raw_lo + (units - c->units_lo) * ((c->raw_hi - c->raw_lo) / span);
    return raw < lo ? lo : (raw > hi ? hi : raw);
}

void nnmpc_io_sense(const nnmpc_io_t *io, uint32_t k, float *y, int n)
{
    float raw[16];
    int i;
    const int got = (io && io->read && n <= 16 && n <= io->n_sensors) ? io->read(k, raw, n) : -1;
    for (i = 0; i < n; ++i) {
        y[i] = got == n ? nnmpc_cal_to_units(&io->sensor[i], raw[i]) : NAN;
    }
}

void nnmpc_io_actuate(const nnmpc_io_t *io, uint32_t k, const float *u, int n)
{
    float raw[16];
    int j;
    if (!io || !io->write || n > 16 || n > io->n_actuators) {
        return;
    }
    for (j = 0; j < n; ++j) {
        raw[j] = nnmpc_cal_to_raw(&io->actuator[j], u[j]);
    }
    io->write(k, raw, n);
}

/* A 32-bit integer hash (lowbias32): decorrelated values from (seed, channel, segment). */
static uint32_t mix32(uint32_t x)
{
    x ^= x >> 16;
    x *= 0x7feb352du;
    x ^= x >> 15;
    x *= 0x846ca68bu;
    x ^= x >> 16;
    return x;
}

static uint32_t hash3(uint32_t seed, uint32_t ch, uint32_t i)
{
    return mix32(seed ^ mix32(ch * 0x9e3779b9u ^ mix32(i + 0x632be5abu)));
}

/* sin(x) without libm: x reduced to [-pi, pi], then to [-pi/2, pi/2] by symmetry, and an odd
 * Taylor polynomial to x^11 (error below 6e-8 there). Periods run to 2^24 rad before the
 * float reduction loses accuracy. */
static float sin_approx(float x)
{
    const float two_pi = 2.0f * NNMPC_PI;
    float q = x / two_pi, x2;
    long n = (long)(q < 0.0f ? q - 0.5f : q + 0.5f);
    x -= (float)n * two_pi;
    if (x > 0.5f * NNMPC_PI) {
        x = NNMPC_PI - x;
    } else if (x < -0.5f * NNMPC_PI) {
        x = -NNMPC_PI - x;
    }
    x2 = x * x;
    return x * (1.0f + x2 * (-1.0f / 6.0f + x2 * (1.0f / 120.0f + x2 * (-1.0f / 5040.0f +
           x2 * (1.0f / 362880.0f - x2 * (1.0f / 39916800.0f))))));
}

/* Uniform in [-1, 1). */
static float unit(uint32_t h)
{
    return (float)(h >> 8) * (2.0f / 16777216.0f) - 1.0f;
}

float nnmpc_excite_value(const nnmpc_excite_t *e, uint32_t k, int ch)
{
    const uint32_t c = (uint32_t)ch;
    const uint32_t hold = e->hold ? e->hold : 1u;
    const float t = (float)k * e->dt;
    switch (e->kind) {
    case NNMPC_EXCITE_STEPS:
        return unit(hash3(e->seed, c, k / hold));
    case NNMPC_EXCITE_PRBS: {
        /* Segments of 1..hold periods; the level flips at every segment boundary with
         * probability 1/2. Segment boundaries are found by walking from a block start. */
        const uint32_t block = k / (16u * hold);
        uint32_t start = block * 16u * hold, seg = 0u;
        for (;;) {
            const uint32_t len = 1u + hash3(e->seed, c, (block << 5) + seg) % hold;
            if (k < start + len || seg == 31u) {
                break;
            }
            start += len;
            ++seg;
        }
        return (hash3(e->seed ^ 0x5bd1e995u, c, (block << 5) + seg) & 1u) ? 1.0f : -1.0f;
    }
    case NNMPC_EXCITE_CHIRP: {
        const uint32_t len = e->periods ? e->periods : 1u;
        const float T = (float)len * e->dt;
        const float tt = (float)(k % len) * e->dt; /* the sweep repeats */
        const float phase = 2.0f * NNMPC_PI * (e->f_lo * tt + 0.5f * (e->f_hi - e->f_lo) * tt * tt / T);
        return sin_approx(phase + (float)c * (0.5f * NNMPC_PI));
    }
    case NNMPC_EXCITE_MULTISINE: {
        /* Evenly spaced tones with random phases per channel (channels uncorrelated). */
        float sum = 0.0f, v;
        int i;
        const float df = (e->f_hi - e->f_lo) / (float)(NNMPC_EXCITE_TONES - 1);
        for (i = 0; i < NNMPC_EXCITE_TONES; ++i) {
            const float f = e->f_lo + df * (float)i;
            const float phi = unit(hash3(e->seed, c, (uint32_t)i)) * NNMPC_PI;
            /* the phase of f t taken modulo one cycle first keeps it accurate for long runs */
            const float cyc = f * t - (float)(long)(f * t);
            sum += sin_approx(2.0f * NNMPC_PI * cyc + phi);
        }
        v = sum * 0.16f; /* RMS about 0.39; the rare peaks beyond 1 are clipped */
        return v > 1.0f ? 1.0f : (v < -1.0f ? -1.0f : v);
    }
    default:
        return 0.0f;
    }
}
