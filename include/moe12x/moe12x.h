/*
 * moe12x — fused NVFP4 Mixture-of-Experts layer, plain C ABI.
 *
 * Compiles as C99 and C++. Every entry point returns a moe12x_status_t; on failure
 * moe12x_get_last_error() returns a thread-local message naming the argument or constraint.
 * Device pointers and a cudaStream_t come in; nothing inside moe12x_run allocates or
 * synchronizes with the host, so the call can be captured in a CUDA graph.
 *
 * Usage:
 *   moe12x_config_t cfg; moe12x_config_init(&cfg);  // then fill the shape fields
 *   moe12x_prepared_weights_size(&cfg, &wbytes);     // allocate `prepared` (device)
 *   moe12x_prepare_weights(&cfg, &canonical, prepared, wbytes, stream);
 *   moe12x_workspace_size(&cfg, cfg.max_tokens, &wsbytes);  // allocate `workspace` (device)
 *   moe12x_run(&cfg, prepared, &inputs, workspace, wsbytes, stream);
 *
 * Layouts follow SPEC §1–2: NVFP4 data is uint8, two e2m1 codes per byte (element 2j in the
 * low nibble); block scales are e4m3 bytes, one per 16 elements along K.
 */
#ifndef MOE12X_MOE12X_H_
#define MOE12X_MOE12X_H_

#include <stddef.h>
#include <stdint.h>

#if defined(_WIN32)
#define MOE12X_API __declspec(dllexport)
#else
#define MOE12X_API __attribute__((visibility("default")))
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* ---- version ------------------------------------------------------------------------------ */
#define MOE12X_VERSION_MAJOR 0
#define MOE12X_VERSION_MINOR 1
#define MOE12X_VERSION_PATCH 0
#define MOE12X_VERSION (MOE12X_VERSION_MAJOR * 10000 + MOE12X_VERSION_MINOR * 100 + MOE12X_VERSION_PATCH)

/* The version of the library actually loaded (compare with MOE12X_VERSION of the header). */
MOE12X_API int moe12x_get_version(void);

/* A cudaStream_t without requiring cuda_runtime.h (same ABI: a pointer). NULL = legacy default. */
typedef struct CUstream_st* moe12x_stream_t;

/* ---- status ------------------------------------------------------------------------------- */
typedef enum moe12x_status {
  MOE12X_SUCCESS = 0,
  MOE12X_ERROR_INVALID_ARGUMENT = 1,   /* a NULL pointer, bad enum, misaligned pointer, ... */
  MOE12X_ERROR_UNSUPPORTED_SHAPE = 2,  /* e.g. hidden size not a multiple of 64 */
  MOE12X_ERROR_NO_DEVICE = 3,          /* no CUDA driver or no GPU */
  MOE12X_ERROR_UNSUPPORTED_DEVICE = 4, /* compute capability this build has no code for */
  MOE12X_ERROR_INSUFFICIENT_BUFFER = 5,/* workspace or prepared-weight buffer too small */
  MOE12X_ERROR_CUDA = 6,               /* a CUDA runtime call or launch failed */
  MOE12X_ERROR_NOT_IMPLEMENTED = 7,
  MOE12X_ERROR_INTERNAL = 8
} moe12x_status_t;

MOE12X_API const char* moe12x_status_string(moe12x_status_t status);
/* Detail of the last failure on the calling thread ("" if none). Valid until the next call. */
MOE12X_API const char* moe12x_get_last_error(void);

/* ---- enums -------------------------------------------------------------------------------- */
typedef enum moe12x_act_quant {
  MOE12X_ACT_QUANT_NVFP4 = 0, /* W4A4: activations quantized to NVFP4 in-kernel (seed numerics) */
  MOE12X_ACT_QUANT_NONE = 1   /* W4A16: activations stay bf16 */
} moe12x_act_quant_t;

typedef enum moe12x_gate_up_order {
  MOE12X_UP_GATE = 0, /* W13 rows [0, I) are up, [I, 2I) gate (default, seed order) */
  MOE12X_GATE_UP = 1  /* W13 rows [0, I) are gate, [I, 2I) up (common checkpoint order) */
} moe12x_gate_up_order_t;

typedef enum moe12x_scale_layout {
  MOE12X_SCALE_ROW_MAJOR = 0,   /* [rows, K/16] */
  MOE12X_SCALE_SWIZZLED_128x4 = 1 /* SPEC §2 swizzle, rows padded to 128, K/16 padded to 4 */
} moe12x_scale_layout_t;

typedef enum moe12x_schedule {
  MOE12X_SCHEDULE_AUTO = 0,
  MOE12X_SCHEDULE_STATIC = 1, /* decode: few rows per expert */
  MOE12X_SCHEDULE_DYNAMIC = 2 /* prefill: many rows per expert */
} moe12x_schedule_t;

typedef enum moe12x_dtype {
  MOE12X_DTYPE_INT32 = 0,
  MOE12X_DTYPE_INT64 = 1,
  MOE12X_DTYPE_FLOAT32 = 2,
  MOE12X_DTYPE_BFLOAT16 = 3
} moe12x_dtype_t;

/* ---- configuration (append-only: new fields go at the end; struct_size tells them apart) ---- */
typedef struct moe12x_config {
  size_t struct_size;          /* set by moe12x_config_init: sizeof(moe12x_config_t) */
  int32_t num_experts;         /* E: experts of the whole model */
  int32_t num_local_experts;   /* experts this call owns: [local_expert_offset, +num_local) */
  int32_t local_expert_offset;
  int32_t hidden_size;         /* H, multiple of 64 */
  int32_t intermediate_size;   /* I, multiple of 64 */
  int32_t top_k;               /* 1..16 */
  int64_t max_tokens;          /* workspace sizing bound for moe12x_run's num_tokens */
  int32_t act_quant;           /* moe12x_act_quant_t */
  int32_t schedule;            /* moe12x_schedule_t */
  int32_t device;              /* CUDA ordinal the buffers live on; -1 = current device */
} moe12x_config_t;

/* Fills defaults: act_quant NVFP4, schedule AUTO, device -1, offsets 0, sizes 0. */
MOE12X_API void moe12x_config_init(moe12x_config_t* config);

/* Checks a config without touching a GPU (shape constraints, ranges). */
MOE12X_API moe12x_status_t moe12x_config_check(const moe12x_config_t* config);

/* ---- weights ------------------------------------------------------------------------------ */
/* Canonical NVFP4 weights of the local experts (device pointers), SPEC §1–2. */
typedef struct moe12x_weights {
  size_t struct_size;            /* sizeof(moe12x_weights_t) */
  const void* w13;               /* uint8 [E_local, 2I, H/2] */
  const void* w13_scale;         /* e4m3  [E_local, 2I, H/16] row-major, or per expert swizzled */
  const float* w13_global_scale; /* fp32  [E_local] */
  const void* w2;                /* uint8 [E_local, H, I/2] */
  const void* w2_scale;          /* e4m3  [E_local, H, I/16] row-major, or per expert swizzled */
  const float* w2_global_scale;  /* fp32  [E_local] */
  int32_t scale_layout;          /* moe12x_scale_layout_t, for both scale tensors */
  int32_t gate_up_order;         /* moe12x_gate_up_order_t */
} moe12x_weights_t;

/* Bytes of one expert's block-scale tensor in a given layout (rows x K/16, padded if swizzled). */
MOE12X_API moe12x_status_t moe12x_scale_bytes(int64_t rows, int64_t k, int32_t scale_layout,
                                              size_t* bytes);

MOE12X_API moe12x_status_t moe12x_prepared_weights_size(const moe12x_config_t* config,
                                                        size_t* bytes);

/* Converts canonical weights into the library's layout in `prepared` (device, 256-B aligned).
 * Asynchronous on `stream`; the canonical buffers may be freed once the stream has passed it. */
MOE12X_API moe12x_status_t moe12x_prepare_weights(const moe12x_config_t* config,
                                                  const moe12x_weights_t* weights, void* prepared,
                                                  size_t prepared_bytes, moe12x_stream_t stream);

/* ---- run ---------------------------------------------------------------------------------- */
typedef struct moe12x_inputs {
  size_t struct_size;           /* sizeof(moe12x_inputs_t) */
  int64_t num_tokens;           /* T, 0 <= T <= config.max_tokens; T = 0 returns at once */
  const void* x;                /* bf16 [T, H], 16-B aligned */
  const void* topk_ids;         /* [T, top_k], ids_dtype */
  int32_t ids_dtype;            /* MOE12X_DTYPE_INT32 or MOE12X_DTYPE_INT64 */
  const void* topk_weights;     /* [T, top_k], weights_dtype */
  int32_t weights_dtype;        /* MOE12X_DTYPE_FLOAT32 or MOE12X_DTYPE_BFLOAT16 */
  const float* fc1_input_scale; /* fp32, fc1_input_scale_count values (ignored for act "none") */
  int32_t fc1_input_scale_count;/* 1 (scalar), num_local_experts, or num_experts (global ids) */
  const float* fc2_input_scale;
  int32_t fc2_input_scale_count;
  void* out;                    /* bf16 [T, H], 16-B aligned; fully overwritten */
} moe12x_inputs_t;

/* The smallest workspace for calls of up to num_tokens tokens (sizes grow with num_tokens). A
 * larger workspace may be used whole (moe12x_run's workspace_bytes must be the buffer's true
 * size): the dynamic schedule runs FC2 and the combine in as few chunks of output columns as the
 * room for its per-slot fp32 outputs allows (one when it holds all of them; two at the smallest
 * size from 1024 routed pairs with MOE12X_FC2_CHUNKS=1). Formula: README, "Workspace". */
MOE12X_API moe12x_status_t moe12x_workspace_size(const moe12x_config_t* config,
                                                 int64_t num_tokens, size_t* bytes);

MOE12X_API moe12x_status_t moe12x_run(const moe12x_config_t* config, const void* prepared,
                                      const moe12x_inputs_t* inputs, void* workspace,
                                      size_t workspace_bytes, moe12x_stream_t stream);

/* ---- standalone quantizer (SPEC §2, bit-exact with the reference) --------------------------- */
/* x bf16 [rows, cols] with row stride ld (elements); cols multiple of 16. Writes q uint8
 * [rows, cols/2] and block scales e4m3 in scale_layout (size from moe12x_scale_bytes; padding
 * bytes of the swizzled layout are written as 0). global_scale: one fp32 on the device. */
MOE12X_API moe12x_status_t moe12x_quantize_nvfp4(const void* x, int64_t rows, int64_t cols,
                                                 int64_t ld, const float* global_scale, void* q,
                                                 void* scales, int32_t scale_layout,
                                                 moe12x_stream_t stream);

/* ---- device helpers (so that bindings need no CUDA runtime of their own) --------------------- */
/* Chooses the schedule that AUTO would take for T tokens (for benchmarks and tests). */
MOE12X_API moe12x_status_t moe12x_select_schedule(const moe12x_config_t* config,
                                                  int64_t num_tokens, int32_t* schedule);
MOE12X_API moe12x_status_t moe12x_device_count(int* count);
MOE12X_API moe12x_status_t moe12x_device_malloc(int device, size_t bytes, void** ptr);
MOE12X_API moe12x_status_t moe12x_device_free(int device, void* ptr);
MOE12X_API moe12x_status_t moe12x_memcpy(void* dst, const void* src, size_t bytes,
                                         moe12x_stream_t stream); /* any direction, async */
MOE12X_API moe12x_status_t moe12x_stream_synchronize(moe12x_stream_t stream);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* MOE12X_MOE12X_H_ */
