/* F32/BF16/F16 -> bf16 conversion (weight upload), round-to-nearest-even. */
#include "backend/cuda/cuda_common.cuh"

template <typename T> __device__ __forceinline__ float to_f32(T v);
template <> __device__ __forceinline__ float to_f32<float>(float v) { return v; }
template <> __device__ __forceinline__ float to_f32<__half>(__half v) { return __half2float(v); }

template <typename T>
static __global__ void convert_kernel(__nv_bfloat16 *dst, const T *src, size_t n) {
    size_t stride = (size_t)gridDim.x * blockDim.x;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride)
        dst[i] = __float2bfloat16_rn(to_f32<T>(src[i]));
}

extern "C" cllm_status cllm_cuda_convert_to_bf16(void *dst, const void *src, cllm_dtype src_t, size_t n,
                                                 cudaStream_t stream) {
    CLLM_ARG(dst && src, "convert_to_bf16: NULL pointer");
    if (n == 0) return CLLM_OK;
    if (src_t == CLLM_DTYPE_BF16) {
        CLLM_CU(cudaMemcpyAsync(dst, src, n * 2, cudaMemcpyDeviceToDevice, stream));
        return CLLM_OK;
    }
    size_t blocks = (n + 255) / 256;
    if (blocks > 65536) blocks = 65536;
    if (src_t == CLLM_DTYPE_F32)
        convert_kernel<float><<<(unsigned)blocks, 256, 0, stream>>>((__nv_bfloat16 *)dst, (const float *)src, n);
    else if (src_t == CLLM_DTYPE_F16)
        convert_kernel<__half><<<(unsigned)blocks, 256, 0, stream>>>((__nv_bfloat16 *)dst, (const __half *)src, n);
    else
        return cllm_error(CLLM_ERR_UNSUPPORTED, "upload: source dtype %d not supported (F32, BF16, F16 only)", (int)src_t);
    CLLM_CU_LAUNCH("convert");
    return CLLM_OK;
}
