/* nnmpc protocol messages, generated from firmware/protocol/schema.toml by host/link/protogen.py
 * (generator 1, schema 587dfbb45e50572d). Do not edit. */
#include "nnmpc_msgs.h"

#include <string.h>

static void put_u8(uint8_t *p, uint8_t v) { p[0] = v; }
static void put_u16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static void put_u32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); p[2] = (uint8_t)(v >> 16); p[3] = (uint8_t)(v >> 24);
}
static void put_f32(uint8_t *p, float v)
{
    uint32_t u;
    memcpy(&u, &v, 4);
    put_u32(p, u);
}
static uint8_t get_u8(const uint8_t *p) { return p[0]; }
static uint16_t get_u16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static uint32_t get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
static float get_f32(const uint8_t *p)
{
    const uint32_t u = get_u32(p);
    float v;
    memcpy(&v, &u, 4);
    return v;
}

static size_t put_str(uint8_t *p, const char *s)
{
    size_t n = 0;
    while (n < NNMPC_MSGS_STR_MAX && s[n]) {
        ++n;
    }
    p[0] = (uint8_t)n;
    memcpy(p + 1, s, n);
    return n + 1;
}

/* Reads one string at *at; returns -1 if it runs past len or is too long. */
static int get_str(char *s, const uint8_t *in, size_t len, size_t *at)
{
    size_t n;
    if (*at >= len) {
        return -1;
    }
    n = in[*at];
    if (n > NNMPC_MSGS_STR_MAX || *at + 1 + n > len) {
        return -1;
    }
    memcpy(s, in + *at + 1, n);
    s[n] = '\0';
    *at += 1 + n;
    return 0;
}

static void put_u8_array(uint8_t *p, const uint8_t *v, size_t n)
{
    size_t i;
    for (i = 0; i < n; ++i) {
        put_u8(p + 1 * i, v[i]);
    }
}

static void get_u8_array(uint8_t *v, const uint8_t *p, size_t n)
{
    size_t i;
    for (i = 0; i < n; ++i) {
        v[i] = get_u8(p + 1 * i);
    }
}

static void put_f32_array(uint8_t *p, const float *v, size_t n)
{
    size_t i;
    for (i = 0; i < n; ++i) {
        put_f32(p + 4 * i, v[i]);
    }
}

static void get_f32_array(float *v, const uint8_t *p, size_t n)
{
    size_t i;
    for (i = 0; i < n; ++i) {
        v[i] = get_f32(p + 4 * i);
    }
}

size_t nnmpc_hello_rep_pack(const nnmpc_hello_rep_t *m, uint8_t *out)
{
    size_t n = 14;
    put_u8(out + 0, m->proto_version);
    put_u8(out + 1, m->n_in);
    put_u8(out + 2, m->n_out);
    put_u8(out + 3, m->channels);
    put_u8(out + 4, m->max_horizon);
    put_u8(out + 5, m->max_lag);
    put_u16(out + 6, m->traj_max);
    put_u32(out + 8, m->clock_hz);
    put_u8(out + 12, m->sensors);
    put_u8(out + 13, m->actuators);
    n += put_str(out + n, m->model_hash);
    n += put_str(out + n, m->board);
    n += put_str(out + n, m->firmware);
    return n;
}

int nnmpc_hello_rep_unpack(nnmpc_hello_rep_t *m, const uint8_t *in, size_t len)
{
    size_t n = 14;
    if (len < n) {
        return -1;
    }
    m->proto_version = get_u8(in + 0);
    m->n_in = get_u8(in + 1);
    m->n_out = get_u8(in + 2);
    m->channels = get_u8(in + 3);
    m->max_horizon = get_u8(in + 4);
    m->max_lag = get_u8(in + 5);
    m->traj_max = get_u16(in + 6);
    m->clock_hz = get_u32(in + 8);
    m->sensors = get_u8(in + 12);
    m->actuators = get_u8(in + 13);
    if (get_str(m->model_hash, in, len, &n) != 0) {
        return -1;
    }
    if (get_str(m->board, in, len, &n) != 0) {
        return -1;
    }
    if (get_str(m->firmware, in, len, &n) != 0) {
        return -1;
    }
    if (n != len) {
        return -1;
    }
    return 0;
}

size_t nnmpc_predict_req_pack(const nnmpc_predict_req_t *m, uint8_t *out)
{
    size_t n = 0;
    {
        const size_t count = m->x_count < 128 ? m->x_count : 128;
        put_f32_array(out + n, m->x, count);
        n += count * 4;
    }
    return n;
}

int nnmpc_predict_req_unpack(nnmpc_predict_req_t *m, const uint8_t *in, size_t len)
{
    size_t n = 0;
    if (len < n) {
        return -1;
    }
    if ((len - n) % 4 != 0 || (len - n) / 4 > 128) {
        return -1;
    }
    m->x_count = (uint16_t)((len - n) / 4);
    get_f32_array(m->x, in + n, m->x_count);
    return 0;
}

size_t nnmpc_predict_rep_pack(const nnmpc_predict_rep_t *m, uint8_t *out)
{
    size_t n = 0;
    {
        const size_t count = m->y_count < 128 ? m->y_count : 128;
        put_f32_array(out + n, m->y, count);
        n += count * 4;
    }
    return n;
}

int nnmpc_predict_rep_unpack(nnmpc_predict_rep_t *m, const uint8_t *in, size_t len)
{
    size_t n = 0;
    if (len < n) {
        return -1;
    }
    if ((len - n) % 4 != 0 || (len - n) / 4 > 128) {
        return -1;
    }
    m->y_count = (uint16_t)((len - n) / 4);
    get_f32_array(m->y, in + n, m->y_count);
    return 0;
}

size_t nnmpc_jacobian_req_pack(const nnmpc_jacobian_req_t *m, uint8_t *out)
{
    size_t n = 0;
    {
        const size_t count = m->x_count < 128 ? m->x_count : 128;
        put_f32_array(out + n, m->x, count);
        n += count * 4;
    }
    return n;
}

int nnmpc_jacobian_req_unpack(nnmpc_jacobian_req_t *m, const uint8_t *in, size_t len)
{
    size_t n = 0;
    if (len < n) {
        return -1;
    }
    if ((len - n) % 4 != 0 || (len - n) / 4 > 128) {
        return -1;
    }
    m->x_count = (uint16_t)((len - n) / 4);
    get_f32_array(m->x, in + n, m->x_count);
    return 0;
}

size_t nnmpc_jacobian_rep_pack(const nnmpc_jacobian_rep_t *m, uint8_t *out)
{
    size_t n = 0;
    {
        const size_t count = m->y_jacobian_count < 128 ? m->y_jacobian_count : 128;
        put_f32_array(out + n, m->y_jacobian, count);
        n += count * 4;
    }
    return n;
}

int nnmpc_jacobian_rep_unpack(nnmpc_jacobian_rep_t *m, const uint8_t *in, size_t len)
{
    size_t n = 0;
    if (len < n) {
        return -1;
    }
    if ((len - n) % 4 != 0 || (len - n) / 4 > 128) {
        return -1;
    }
    m->y_jacobian_count = (uint16_t)((len - n) / 4);
    get_f32_array(m->y_jacobian, in + n, m->y_jacobian_count);
    return 0;
}

size_t nnmpc_stats_rep_pack(const nnmpc_stats_rep_t *m, uint8_t *out)
{
    size_t n = 44;
    put_u32(out + 0, m->frames_ok);
    put_u32(out + 4, m->frames_bad);
    put_u32(out + 8, m->frames_long);
    put_u32(out + 12, m->requests);
    put_u32(out + 16, m->rejected);
    put_u32(out + 20, m->periods);
    put_u32(out + 24, m->overruns);
    put_u32(out + 28, m->max_work);
    put_u32(out + 32, m->k);
    put_u32(out + 36, m->lost);
    put_u32(out + 40, m->safe_holds);
    return n;
}

int nnmpc_stats_rep_unpack(nnmpc_stats_rep_t *m, const uint8_t *in, size_t len)
{
    if (len != 44) {
        return -1;
    }
    m->frames_ok = get_u32(in + 0);
    m->frames_bad = get_u32(in + 4);
    m->frames_long = get_u32(in + 8);
    m->requests = get_u32(in + 12);
    m->rejected = get_u32(in + 16);
    m->periods = get_u32(in + 20);
    m->overruns = get_u32(in + 24);
    m->max_work = get_u32(in + 28);
    m->k = get_u32(in + 32);
    m->lost = get_u32(in + 36);
    m->safe_holds = get_u32(in + 40);
    return 0;
}

size_t nnmpc_config_req_pack(const nnmpc_config_req_t *m, uint8_t *out)
{
    size_t n = 24;
    put_u8(out + 0, m->controller);
    put_u8(out + 1, m->source);
    put_u8(out + 2, m->p);
    put_u8(out + 3, m->m);
    put_u8(out + 4, m->na);
    put_u8(out + 5, m->nb);
    put_u8(out + 6, m->horizon);
    put_u8(out + 7, m->moves);
    put_u32(out + 8, m->period_us);
    put_u32(out + 12, m->budget_us);
    put_u16(out + 16, m->max_iter);
    put_u16(out + 18, m->telemetry_every);
    put_f32(out + 20, m->fd_eps);
    return n;
}

int nnmpc_config_req_unpack(nnmpc_config_req_t *m, const uint8_t *in, size_t len)
{
    if (len != 24) {
        return -1;
    }
    m->controller = get_u8(in + 0);
    m->source = get_u8(in + 1);
    m->p = get_u8(in + 2);
    m->m = get_u8(in + 3);
    m->na = get_u8(in + 4);
    m->nb = get_u8(in + 5);
    m->horizon = get_u8(in + 6);
    m->moves = get_u8(in + 7);
    m->period_us = get_u32(in + 8);
    m->budget_us = get_u32(in + 12);
    m->max_iter = get_u16(in + 16);
    m->telemetry_every = get_u16(in + 18);
    m->fd_eps = get_f32(in + 20);
    return 0;
}

size_t nnmpc_weights_req_pack(const nnmpc_weights_req_t *m, uint8_t *out)
{
    size_t n = 84;
    put_f32_array(out + 0, m->q, 4);
    put_f32_array(out + 16, m->r, 4);
    put_f32_array(out + 32, m->s, 4);
    put_f32_array(out + 48, m->u_nom, 4);
    put_f32(out + 64, m->bias_gain);
    put_f32(out + 68, m->tol_step);
    put_f32(out + 72, m->lambda0);
    put_f32(out + 76, m->lag);
    put_f32(out + 80, m->y_filter);
    return n;
}

int nnmpc_weights_req_unpack(nnmpc_weights_req_t *m, const uint8_t *in, size_t len)
{
    if (len != 84) {
        return -1;
    }
    get_f32_array(m->q, in + 0, 4);
    get_f32_array(m->r, in + 16, 4);
    get_f32_array(m->s, in + 32, 4);
    get_f32_array(m->u_nom, in + 48, 4);
    m->bias_gain = get_f32(in + 64);
    m->tol_step = get_f32(in + 68);
    m->lambda0 = get_f32(in + 72);
    m->lag = get_f32(in + 76);
    m->y_filter = get_f32(in + 80);
    return 0;
}

size_t nnmpc_limits_req_pack(const nnmpc_limits_req_t *m, uint8_t *out)
{
    size_t n = 48;
    put_f32_array(out + 0, m->u_lo, 4);
    put_f32_array(out + 16, m->u_hi, 4);
    put_f32_array(out + 32, m->u_init, 4);
    return n;
}

int nnmpc_limits_req_unpack(nnmpc_limits_req_t *m, const uint8_t *in, size_t len)
{
    if (len != 48) {
        return -1;
    }
    get_f32_array(m->u_lo, in + 0, 4);
    get_f32_array(m->u_hi, in + 16, 4);
    get_f32_array(m->u_init, in + 32, 4);
    return 0;
}

size_t nnmpc_pid_req_pack(const nnmpc_pid_req_t *m, uint8_t *out)
{
    size_t n = 180;
    put_f32_array(out + 0, m->kp, 4);
    put_f32_array(out + 16, m->ki, 4);
    put_f32_array(out + 32, m->kd, 4);
    put_f32_array(out + 48, m->u_bias, 4);
    put_f32_array(out + 64, m->mix, 16);
    put_f32_array(out + 128, m->kff, 4);
    put_f32_array(out + 144, m->kdff, 4);
    put_f32_array(out + 160, m->y_bias, 4);
    put_u16(out + 176, m->lead);
    put_u16(out + 178, m->reserved);
    return n;
}

int nnmpc_pid_req_unpack(nnmpc_pid_req_t *m, const uint8_t *in, size_t len)
{
    if (len != 180) {
        return -1;
    }
    get_f32_array(m->kp, in + 0, 4);
    get_f32_array(m->ki, in + 16, 4);
    get_f32_array(m->kd, in + 32, 4);
    get_f32_array(m->u_bias, in + 48, 4);
    get_f32_array(m->mix, in + 64, 16);
    get_f32_array(m->kff, in + 128, 4);
    get_f32_array(m->kdff, in + 144, 4);
    get_f32_array(m->y_bias, in + 160, 4);
    m->lead = get_u16(in + 176);
    m->reserved = get_u16(in + 178);
    return 0;
}

size_t nnmpc_reference_req_pack(const nnmpc_reference_req_t *m, uint8_t *out)
{
    size_t n = 16;
    put_f32_array(out + 0, m->ref, 4);
    return n;
}

int nnmpc_reference_req_unpack(nnmpc_reference_req_t *m, const uint8_t *in, size_t len)
{
    if (len != 16) {
        return -1;
    }
    get_f32_array(m->ref, in + 0, 4);
    return 0;
}

size_t nnmpc_trajectory_req_pack(const nnmpc_trajectory_req_t *m, uint8_t *out)
{
    size_t n = 4;
    put_u16(out + 0, m->total);
    put_u16(out + 2, m->offset);
    {
        const size_t count = m->rows_count < 127 ? m->rows_count : 127;
        put_f32_array(out + n, m->rows, count);
        n += count * 4;
    }
    return n;
}

int nnmpc_trajectory_req_unpack(nnmpc_trajectory_req_t *m, const uint8_t *in, size_t len)
{
    size_t n = 4;
    if (len < n) {
        return -1;
    }
    m->total = get_u16(in + 0);
    m->offset = get_u16(in + 2);
    if ((len - n) % 4 != 0 || (len - n) / 4 > 127) {
        return -1;
    }
    m->rows_count = (uint16_t)((len - n) / 4);
    get_f32_array(m->rows, in + n, m->rows_count);
    return 0;
}

size_t nnmpc_sensor_req_pack(const nnmpc_sensor_req_t *m, uint8_t *out)
{
    size_t n = 4;
    put_u32(out + 0, m->k);
    {
        const size_t count = m->y_count < 127 ? m->y_count : 127;
        put_f32_array(out + n, m->y, count);
        n += count * 4;
    }
    return n;
}

int nnmpc_sensor_req_unpack(nnmpc_sensor_req_t *m, const uint8_t *in, size_t len)
{
    size_t n = 4;
    if (len < n) {
        return -1;
    }
    m->k = get_u32(in + 0);
    if ((len - n) % 4 != 0 || (len - n) / 4 > 127) {
        return -1;
    }
    m->y_count = (uint16_t)((len - n) / 4);
    get_f32_array(m->y, in + n, m->y_count);
    return 0;
}

size_t nnmpc_sensor_brief_req_pack(const nnmpc_sensor_brief_req_t *m, uint8_t *out)
{
    size_t n = 4;
    put_u32(out + 0, m->k);
    {
        const size_t count = m->y_count < 127 ? m->y_count : 127;
        put_f32_array(out + n, m->y, count);
        n += count * 4;
    }
    return n;
}

int nnmpc_sensor_brief_req_unpack(nnmpc_sensor_brief_req_t *m, const uint8_t *in, size_t len)
{
    size_t n = 4;
    if (len < n) {
        return -1;
    }
    m->k = get_u32(in + 0);
    if ((len - n) % 4 != 0 || (len - n) / 4 > 127) {
        return -1;
    }
    m->y_count = (uint16_t)((len - n) / 4);
    get_f32_array(m->y, in + n, m->y_count);
    return 0;
}

size_t nnmpc_plant_req_pack(const nnmpc_plant_req_t *m, uint8_t *out)
{
    size_t n = 40;
    put_u8(out + 0, m->kind);
    put_u8(out + 1, m->substeps);
    put_u16(out + 2, m->reserved);
    put_f32(out + 4, m->dt);
    put_f32_array(out + 8, m->params, 8);
    return n;
}

int nnmpc_plant_req_unpack(nnmpc_plant_req_t *m, const uint8_t *in, size_t len)
{
    if (len != 40) {
        return -1;
    }
    m->kind = get_u8(in + 0);
    m->substeps = get_u8(in + 1);
    m->reserved = get_u16(in + 2);
    m->dt = get_f32(in + 4);
    get_f32_array(m->params, in + 8, 8);
    return 0;
}

size_t nnmpc_excite_req_pack(const nnmpc_excite_req_t *m, uint8_t *out)
{
    size_t n = 24;
    put_u8(out + 0, m->kind);
    put_u8(out + 1, m->reserved);
    put_u16(out + 2, m->hold);
    put_u32(out + 4, m->seed);
    put_u32(out + 8, m->periods);
    put_f32(out + 12, m->f_lo);
    put_f32(out + 16, m->f_hi);
    put_f32(out + 20, m->amplitude);
    return n;
}

int nnmpc_excite_req_unpack(nnmpc_excite_req_t *m, const uint8_t *in, size_t len)
{
    if (len != 24) {
        return -1;
    }
    m->kind = get_u8(in + 0);
    m->reserved = get_u8(in + 1);
    m->hold = get_u16(in + 2);
    m->seed = get_u32(in + 4);
    m->periods = get_u32(in + 8);
    m->f_lo = get_f32(in + 12);
    m->f_hi = get_f32(in + 16);
    m->amplitude = get_f32(in + 20);
    return 0;
}

size_t nnmpc_safety_req_pack(const nnmpc_safety_req_t *m, uint8_t *out)
{
    size_t n = 52;
    put_u16(out + 0, m->link_timeout);
    put_u16(out + 2, m->reserved);
    put_f32_array(out + 4, m->u_safe, 4);
    put_f32_array(out + 20, m->y_lo, 4);
    put_f32_array(out + 36, m->y_hi, 4);
    return n;
}

int nnmpc_safety_req_unpack(nnmpc_safety_req_t *m, const uint8_t *in, size_t len)
{
    if (len != 52) {
        return -1;
    }
    m->link_timeout = get_u16(in + 0);
    m->reserved = get_u16(in + 2);
    get_f32_array(m->u_safe, in + 4, 4);
    get_f32_array(m->y_lo, in + 20, 4);
    get_f32_array(m->y_hi, in + 36, 4);
    return 0;
}

size_t nnmpc_estimator_req_pack(const nnmpc_estimator_req_t *m, uint8_t *out)
{
    size_t n = 52;
    put_u8(out + 0, m->enable);
    put_u8(out + 1, m->reserved);
    put_u16(out + 2, m->reserved2);
    put_f32_array(out + 4, m->q, 4);
    put_f32_array(out + 20, m->r, 4);
    put_f32_array(out + 36, m->qd, 4);
    return n;
}

int nnmpc_estimator_req_unpack(nnmpc_estimator_req_t *m, const uint8_t *in, size_t len)
{
    if (len != 52) {
        return -1;
    }
    m->enable = get_u8(in + 0);
    m->reserved = get_u8(in + 1);
    m->reserved2 = get_u16(in + 2);
    get_f32_array(m->q, in + 4, 4);
    get_f32_array(m->r, in + 20, 4);
    get_f32_array(m->qd, in + 36, 4);
    return 0;
}

size_t nnmpc_rig_sample_req_pack(const nnmpc_rig_sample_req_t *m, uint8_t *out)
{
    size_t n = 4;
    put_u32(out + 0, m->k);
    return n;
}

int nnmpc_rig_sample_req_unpack(nnmpc_rig_sample_req_t *m, const uint8_t *in, size_t len)
{
    if (len != 4) {
        return -1;
    }
    m->k = get_u32(in + 0);
    return 0;
}

size_t nnmpc_rig_sample_rep_pack(const nnmpc_rig_sample_rep_t *m, uint8_t *out)
{
    size_t n = 0;
    {
        const size_t count = m->raw_count < 128 ? m->raw_count : 128;
        put_f32_array(out + n, m->raw, count);
        n += count * 4;
    }
    return n;
}

int nnmpc_rig_sample_rep_unpack(nnmpc_rig_sample_rep_t *m, const uint8_t *in, size_t len)
{
    size_t n = 0;
    if (len < n) {
        return -1;
    }
    if ((len - n) % 4 != 0 || (len - n) / 4 > 128) {
        return -1;
    }
    m->raw_count = (uint16_t)((len - n) / 4);
    get_f32_array(m->raw, in + n, m->raw_count);
    return 0;
}

size_t nnmpc_rig_drive_req_pack(const nnmpc_rig_drive_req_t *m, uint8_t *out)
{
    size_t n = 4;
    put_u32(out + 0, m->k);
    {
        const size_t count = m->raw_count < 127 ? m->raw_count : 127;
        put_f32_array(out + n, m->raw, count);
        n += count * 4;
    }
    return n;
}

int nnmpc_rig_drive_req_unpack(nnmpc_rig_drive_req_t *m, const uint8_t *in, size_t len)
{
    size_t n = 4;
    if (len < n) {
        return -1;
    }
    m->k = get_u32(in + 0);
    if ((len - n) % 4 != 0 || (len - n) / 4 > 127) {
        return -1;
    }
    m->raw_count = (uint16_t)((len - n) / 4);
    get_f32_array(m->raw, in + n, m->raw_count);
    return 0;
}

size_t nnmpc_telemetry_evt_pack(const nnmpc_telemetry_evt_t *m, uint8_t *out)
{
    size_t n = 18;
    put_u32(out + 0, m->k);
    put_u32(out + 4, m->work);
    put_f32(out + 8, m->residual);
    put_u8(out + 12, m->iterations);
    put_u8(out + 13, m->status);
    put_u8(out + 14, m->controller);
    put_u8(out + 15, m->flags);
    put_u8(out + 16, m->p);
    put_u8(out + 17, m->m);
    {
        const size_t count = m->values_count < 123 ? m->values_count : 123;
        put_f32_array(out + n, m->values, count);
        n += count * 4;
    }
    return n;
}

int nnmpc_telemetry_evt_unpack(nnmpc_telemetry_evt_t *m, const uint8_t *in, size_t len)
{
    size_t n = 18;
    if (len < n) {
        return -1;
    }
    m->k = get_u32(in + 0);
    m->work = get_u32(in + 4);
    m->residual = get_f32(in + 8);
    m->iterations = get_u8(in + 12);
    m->status = get_u8(in + 13);
    m->controller = get_u8(in + 14);
    m->flags = get_u8(in + 15);
    m->p = get_u8(in + 16);
    m->m = get_u8(in + 17);
    if ((len - n) % 4 != 0 || (len - n) / 4 > 123) {
        return -1;
    }
    m->values_count = (uint16_t)((len - n) / 4);
    get_f32_array(m->values, in + n, m->values_count);
    return 0;
}

size_t nnmpc_telemetry_brief_evt_pack(const nnmpc_telemetry_brief_evt_t *m, uint8_t *out)
{
    size_t n = 2;
    put_u8(out + 0, m->status);
    put_u8(out + 1, m->iterations);
    {
        const size_t count = m->u_count < 127 ? m->u_count : 127;
        put_f32_array(out + n, m->u, count);
        n += count * 4;
    }
    return n;
}

int nnmpc_telemetry_brief_evt_unpack(nnmpc_telemetry_brief_evt_t *m, const uint8_t *in, size_t len)
{
    size_t n = 2;
    if (len < n) {
        return -1;
    }
    m->status = get_u8(in + 0);
    m->iterations = get_u8(in + 1);
    if ((len - n) % 4 != 0 || (len - n) / 4 > 127) {
        return -1;
    }
    m->u_count = (uint16_t)((len - n) / 4);
    get_f32_array(m->u, in + n, m->u_count);
    return 0;
}

size_t nnmpc_segment_req_pack(const nnmpc_segment_req_t *m, uint8_t *out)
{
    size_t n = 4;
    put_u8(out + 0, m->carried);
    put_u8(out + 1, m->index);
    put_u8(out + 2, m->count);
    put_u8(out + 3, m->reserved);
    {
        const size_t count = m->bytes_count < 508 ? m->bytes_count : 508;
        put_u8_array(out + n, m->bytes, count);
        n += count * 1;
    }
    return n;
}

int nnmpc_segment_req_unpack(nnmpc_segment_req_t *m, const uint8_t *in, size_t len)
{
    size_t n = 4;
    if (len < n) {
        return -1;
    }
    m->carried = get_u8(in + 0);
    m->index = get_u8(in + 1);
    m->count = get_u8(in + 2);
    m->reserved = get_u8(in + 3);
    if ((len - n) % 1 != 0 || (len - n) / 1 > 508) {
        return -1;
    }
    m->bytes_count = (uint16_t)((len - n) / 1);
    get_u8_array(m->bytes, in + n, m->bytes_count);
    return 0;
}

size_t nnmpc_error_evt_pack(const nnmpc_error_evt_t *m, uint8_t *out)
{
    size_t n = 2;
    put_u8(out + 0, m->code);
    put_u8(out + 1, m->type);
    return n;
}

int nnmpc_error_evt_unpack(nnmpc_error_evt_t *m, const uint8_t *in, size_t len)
{
    if (len != 2) {
        return -1;
    }
    m->code = get_u8(in + 0);
    m->type = get_u8(in + 1);
    return 0;
}
