# Cython declarations of the C ABI (include/moe12x/moe12x.h).
from libc.stdint cimport int32_t, int64_t


cdef extern from "moe12x/moe12x.h" nogil:
    int MOE12X_VERSION
    int MOE12X_VERSION_MAJOR
    int MOE12X_VERSION_MINOR
    int MOE12X_VERSION_PATCH

    ctypedef struct CUstream_st
    ctypedef CUstream_st* moe12x_stream_t

    ctypedef enum moe12x_status_t:
        MOE12X_SUCCESS
        MOE12X_ERROR_INVALID_ARGUMENT
        MOE12X_ERROR_UNSUPPORTED_SHAPE
        MOE12X_ERROR_NO_DEVICE
        MOE12X_ERROR_UNSUPPORTED_DEVICE
        MOE12X_ERROR_INSUFFICIENT_BUFFER
        MOE12X_ERROR_CUDA
        MOE12X_ERROR_NOT_IMPLEMENTED
        MOE12X_ERROR_INTERNAL

    ctypedef enum moe12x_act_quant_t:
        MOE12X_ACT_QUANT_NVFP4
        MOE12X_ACT_QUANT_NONE

    ctypedef enum moe12x_gate_up_order_t:
        MOE12X_UP_GATE
        MOE12X_GATE_UP

    ctypedef enum moe12x_scale_layout_t:
        MOE12X_SCALE_ROW_MAJOR
        MOE12X_SCALE_SWIZZLED_128x4

    ctypedef enum moe12x_schedule_t:
        MOE12X_SCHEDULE_AUTO
        MOE12X_SCHEDULE_STATIC
        MOE12X_SCHEDULE_DYNAMIC

    ctypedef enum moe12x_dtype_t:
        MOE12X_DTYPE_INT32
        MOE12X_DTYPE_INT64
        MOE12X_DTYPE_FLOAT32
        MOE12X_DTYPE_BFLOAT16

    ctypedef struct moe12x_config_t:
        size_t struct_size
        int32_t num_experts
        int32_t num_local_experts
        int32_t local_expert_offset
        int32_t hidden_size
        int32_t intermediate_size
        int32_t top_k
        int64_t max_tokens
        int32_t act_quant
        int32_t schedule
        int32_t device

    ctypedef struct moe12x_weights_t:
        size_t struct_size
        const void* w13
        const void* w13_scale
        const float* w13_global_scale
        const void* w2
        const void* w2_scale
        const float* w2_global_scale
        int32_t scale_layout
        int32_t gate_up_order

    ctypedef struct moe12x_inputs_t:
        size_t struct_size
        int64_t num_tokens
        const void* x
        const void* topk_ids
        int32_t ids_dtype
        const void* topk_weights
        int32_t weights_dtype
        const float* fc1_input_scale
        int32_t fc1_input_scale_count
        const float* fc2_input_scale
        int32_t fc2_input_scale_count
        void* out

    int moe12x_get_version()
    const char* moe12x_status_string(moe12x_status_t status)
    const char* moe12x_get_last_error()
    void moe12x_config_init(moe12x_config_t* config)
    moe12x_status_t moe12x_config_check(const moe12x_config_t* config)
    moe12x_status_t moe12x_scale_bytes(int64_t rows, int64_t k, int32_t scale_layout, size_t* bytes)
    moe12x_status_t moe12x_prepared_weights_size(const moe12x_config_t* config, size_t* bytes)
    moe12x_status_t moe12x_prepare_weights(const moe12x_config_t* config, const moe12x_weights_t* weights,
                                           void* prepared, size_t prepared_bytes, moe12x_stream_t stream)
    moe12x_status_t moe12x_workspace_size(const moe12x_config_t* config, int64_t num_tokens, size_t* bytes)
    moe12x_status_t moe12x_run(const moe12x_config_t* config, const void* prepared,
                               const moe12x_inputs_t* inputs, void* workspace, size_t workspace_bytes,
                               moe12x_stream_t stream)
    moe12x_status_t moe12x_quantize_nvfp4(const void* x, int64_t rows, int64_t cols, int64_t ld,
                                          const float* global_scale, void* q, void* scales,
                                          int32_t scale_layout, moe12x_stream_t stream)
    moe12x_status_t moe12x_select_schedule(const moe12x_config_t* config, int64_t num_tokens, int32_t* schedule)
    moe12x_status_t moe12x_device_count(int* count)
    moe12x_status_t moe12x_device_malloc(int device, size_t bytes, void** ptr)
    moe12x_status_t moe12x_device_free(int device, void* ptr)
    moe12x_status_t moe12x_memcpy(void* dst, const void* src, size_t bytes, moe12x_stream_t stream)
    moe12x_status_t moe12x_stream_synchronize(moe12x_stream_t stream)
