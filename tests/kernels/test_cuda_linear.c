/* CUDA linear (cuBLASLt, bf16 in, fp32 accumulate) vs the CPU fp32 GEMM on
 * the same bf16-rounded inputs: bf16 and fp32 outputs, with/without bias,
 * odd shapes, T = 1 .. 4096, K/N up to 8192, N = 152064 (lm_head); every
 * T <= 2 (skinny weight-streaming kernel) and T = 3..9 (cuBLASLt) incl. odd N
 * and K % 8 != 0. */
#include "kt_util.h"

static cllm_backend *be;

static void t_linear(int T, int N, int K, int bias, int f32) {
    float sc = 1.f / sqrtf((float)K);
    float *x = kt_rand((size_t)T * K, 1.f, 0.f), *W = kt_rand((size_t)N * K, sc * 1.7f, 0.f);
    float *b = bias ? kt_rand(N, 0.5f, 0.f) : NULL;
    float *ref = malloc((size_t)T * N * 4);
    cllm_weight hw = {.data = W, .bias = b, .n = N, .k = K};
    KT_OK(cllm_cpu_linear(x, T, &hw, ref));
    void *dx = kt_dev_bf16(x, (size_t)T * K), *dW = kt_dev_bf16(W, (size_t)N * K), *db = b ? kt_dev_bf16(b, N) : NULL;
    void *dout = kt_dev_poison((size_t)T * N * (f32 ? 4 : 2));
    cllm_weight dw = {.data = dW, .bias = db, .n = N, .k = K};
    KT_OK(be->ops->linear(be, dx, T, &dw, dout, f32 ? CLLM_DTYPE_F32 : CLLM_DTYPE_BF16));
    float *g;
    if (f32) {
        KT_CU(cudaDeviceSynchronize());
        g = malloc((size_t)T * N * 4);
        KT_CU(cudaMemcpy(g, dout, (size_t)T * N * 4, cudaMemcpyDeviceToHost));
    } else {
        g = kt_get_bf16(dout, (size_t)T * N);
    }
    char nm[96];
    snprintf(nm, sizeof nm, "linear T=%d N=%d K=%d bias=%d out=%s", T, N, K, bias, f32 ? "f32" : "bf16");
    kt_check(nm, g, ref, (size_t)T * N, f32 ? 2e-3f : 1.5e-2f, f32 ? 2e-3f : 1.6e-2f);
    free(x), free(W), free(b), free(ref), free(g);
    cudaFree(dx), cudaFree(dW), cudaFree(db), cudaFree(dout);
}

int main(void) {
    be = kt_cuda();
    int s[][5] = {{1, 1, 1, 0, 0},       {1, 7, 3, 1, 0},         {3, 5, 8, 1, 1},          {17, 33, 65, 0, 0},
                  {1, 6144, 4096, 0, 0}, {16, 4096, 4096, 1, 0},  {128, 28672, 4096, 0, 0}, {2048, 4096, 14336, 0, 0},
                  {4096, 1024, 4096, 1, 0}, {64, 8192, 8192, 0, 0}, {4, 152064, 4096, 0, 1},  {5, 128256, 2048, 0, 1},
                  {7, 4608, 3584, 1, 1}, {1, 1000, 1000, 1, 1},
                  /* small T (skinny kernel for T <= 2, cuBLASLt above): every T, odd N, K % 8 == 0 and != 0 (fallback), bias, f32 */
                  {1, 4096, 4096, 0, 0}, {1, 4096, 14336, 1, 0}, {1, 28672, 4096, 0, 1}, {1, 128256, 4096, 0, 0},
                  {2, 131, 264, 1, 0},   {3, 4097, 1024, 1, 1},  {4, 33, 8, 0, 0},         {5, 257, 520, 0, 1},
                  {6, 100, 12, 1, 0},    {7, 1, 16, 1, 1},       {8, 6144, 4096, 1, 0},    {8, 999, 2056, 0, 1},
                  {2, 7, 4100, 0, 0},    {9, 515, 1032, 1, 0}};
    int n = (int)(sizeof s / sizeof s[0]);
    for (int i = 0; i < n; i++) t_linear(s[i][0], s[i][1], s[i][2], s[i][3], s[i][4]);
    /* Bad out dtype is rejected. */
    cllm_weight w = {.data = (void *)16, .bias = NULL, .n = 4, .k = 4};
    int ok = be->ops->linear(be, (void *)16, 1, &w, (void *)16, CLLM_DTYPE_F16) == CLLM_ERR_INVALID_ARG;
    printf("%s linear out=f16 rejected: %s\n", ok ? "PASS" : "FAIL", cllm_last_error());
    kt_cases++, kt_failed_cases += !ok;
    cllm_backend_destroy(be);
    return kt_finish("test_cuda_linear");
}
