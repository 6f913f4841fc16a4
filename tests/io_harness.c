/* argv: mode. stdin: cal raw_lo raw_hi units_lo units_hi, then values; or excitation params.
 * mode "units": raw -> units; "raw": units -> raw; "excite": kind hold seed periods f_lo f_hi dt n ch
 * prints one value per line (%.9g). */
#include <stdio.h>
#include <string.h>

#include "nnmpc_io.h"

int main(int argc, char **argv)
{
    if (argc < 2) {
        return 2;
    }
    if (!strcmp(argv[1], "excite")) {
        nnmpc_excite_t e;
        unsigned kind, hold, seed, periods, n, ch, k;
        float f_lo, f_hi, dt;
        if (scanf("%u %u %u %u %f %f %f %u %u", &kind, &hold, &seed, &periods, &f_lo, &f_hi, &dt,
                  &n, &ch) != 9) {
            return 2;
        }
        e.kind = (uint8_t)kind;
        e.hold = (uint16_t)hold;
        e.seed = seed;
        e.periods = periods;
        e.f_lo = f_lo;
        e.f_hi = f_hi;
        e.dt = dt;
        for (k = 0; k < n; ++k) {
            printf("%.9g\n", (double)nnmpc_excite_value(&e, k, (int)ch));
        }
        return 0;
    } else {
        nnmpc_cal_t c;
        float v;
        if (scanf("%f %f %f %f", &c.raw_lo, &c.raw_hi, &c.units_lo, &c.units_hi) != 4) {
            return 2;
        }
        while (scanf("%f", &v) == 1) {
            const float r = !strcmp(argv[1], "units") ? nnmpc_cal_to_units(&c, v)
                                                      : nnmpc_cal_to_raw(&c, v);
            printf("%.9g\n", (double)r);
        }
    }
    return 0;
}
