/* Flag-value parsing shared by the cllm subcommands. Each function prints a
 * one-line message naming the flag on failure and returns 0 (the caller
 * exits with 2); 1 on success. */
#ifndef CLLM_CLI_ARGS_H
#define CLLM_CLI_ARGS_H

#include "cllm.h"
#include <stdbool.h>

/* The value following argv[*i] (advances *i); fails if it is missing. */
int cllm_arg_value(int argc, char **argv, int *i, const char **v);
/* Integer / real in [lo, hi]; the whole string must parse. */
int cllm_arg_long(const char *flag, const char *v, long lo, long hi, long *out);
int cllm_arg_double(const char *flag, const char *v, double lo, double hi, double *out);
int cllm_arg_device(const char *flag, const char *v, cllm_device *out);        /* cpu | cuda */
int cllm_arg_dtype(const char *flag, const char *v, cllm_dtype *out);          /* auto | bfloat16 | float32 | float16 */
int cllm_arg_load_format(const char *flag, const char *v, cllm_load_format *out); /* auto | dummy */

#endif
