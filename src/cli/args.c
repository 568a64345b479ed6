/* Flag-value parsing for the cllm subcommands (see args.h). */
#include "cli/args.h"
#include "core/dtype.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cllm_arg_value(int argc, char **argv, int *i, const char **v) {
    const char *flag = argv[*i];
    if (strncmp(flag, "--", 2) != 0) {
        fprintf(stderr, "cllm: unexpected argument '%s' (flags start with --)\n", flag);
        return 0;
    }
    if (*i + 1 >= argc) {
        fprintf(stderr, "cllm: flag %s needs a value\n", flag);
        return 0;
    }
    *v = argv[++*i];
    return 1;
}

int cllm_arg_long(const char *flag, const char *v, long lo, long hi, long *out) {
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (!*v || *end || errno || x < lo || x > hi) {
        fprintf(stderr, "cllm: %s expects an integer in [%ld, %ld], got '%s'\n", flag, lo, hi, v);
        return 0;
    }
    *out = x;
    return 1;
}

int cllm_arg_double(const char *flag, const char *v, double lo, double hi, double *out) {
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    if (!*v || *end || errno || !isfinite(x) || x < lo || x > hi) {
        fprintf(stderr, "cllm: %s expects a number in [%g, %g], got '%s'\n", flag, lo, hi, v);
        return 0;
    }
    *out = x;
    return 1;
}

int cllm_arg_device(const char *flag, const char *v, cllm_device *out) {
    if (!strcmp(v, "cpu")) *out = CLLM_DEVICE_CPU;
    else if (!strcmp(v, "cuda")) *out = CLLM_DEVICE_CUDA;
    else {
        fprintf(stderr, "cllm: %s expects cpu or cuda, got '%s'\n", flag, v);
        return 0;
    }
    return 1;
}

int cllm_arg_dtype(const char *flag, const char *v, cllm_dtype *out) {
    if (cllm_dtype_parse(v, out) != 0) {
        fprintf(stderr, "cllm: %s expects auto, bfloat16, float16 or float32, got '%s'\n", flag, v);
        return 0;
    }
    return 1;
}

int cllm_arg_load_format(const char *flag, const char *v, cllm_load_format *out) {
    if (!strcmp(v, "auto") || !strcmp(v, "safetensors")) *out = CLLM_LOAD_AUTO;
    else if (!strcmp(v, "dummy")) *out = CLLM_LOAD_DUMMY;
    else {
        fprintf(stderr, "cllm: %s expects auto or dummy, got '%s'\n", flag, v);
        return 0;
    }
    return 1;
}
