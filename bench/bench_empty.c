/* The empty model: the functions bench_main.c calls, with no body. Its image is subtracted
 * from each model's image to give the flash and RAM of the model alone. */
#define CAT_(a, b) a##b
#define CAT(a, b) CAT_(a, b)

void CAT(BENCH_PREFIX, _predict)(const float *input, float *output);
void CAT(BENCH_PREFIX, _jacobian)(const float *input, float *jacobian);

void CAT(BENCH_PREFIX, _predict)(const float *input, float *output)
{
    (void)input;
    (void)output;
}

void CAT(BENCH_PREFIX, _jacobian)(const float *input, float *jacobian)
{
    (void)input;
    (void)jacobian;
}
