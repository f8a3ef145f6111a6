// The C ABI: argument validation (every failure names the argument), device checks, and the
// launch sequence route -> pack -> FC1 -> FC2 -> combine. No allocation, no host sync in run.
#include <algorithm>
#include <atomic>
#include <cinttypes>
#include <cstdlib>
#include <cstring>

#include "api/status.hpp"
#include "common/launchers.hpp"
#include "common/params.hpp"
#include "instantiations/dispatch.hpp"
#include "kernel/ws_trace_record.hpp"

using namespace moe12x;

namespace {

bool aligned(const void* p, size_t a) { return (reinterpret_cast<uintptr_t>(p) % a) == 0; }

// Makes config.device current for the scope of a call, restoring the caller's device after.
// Device count, compute capabilities, SM counts and shared-memory limits are queried once per
// process (they cannot change), keeping the per-call host path to one cudaGetDevice.
std::atomic<int> g_device_count{-1};
std::atomic<int> g_cc_major[64];
std::atomic<int> g_sm_count[64];
std::atomic<int> g_smem_per_sm[64], g_smem_optin[64], g_smem_reserved[64];  // per_sm stored last

// Whether an opt-in switch is set to exactly "1" (the modes below read it once).
bool env_is_one(const char* name) {
  const char* v = std::getenv(name);
  return v && v[0] == '1' && !v[1];
}

// MOE12X_NO_PDL=1 turns programmatic dependent launches off (A/B measurements), read once.
bool pdl_disabled() {
  static const bool off = [] {
    const char* v = std::getenv("MOE12X_NO_PDL");
    return v && v[0] && v[0] != '0';
  }();
  return off;
}

// MOE12X_WARP_TILES: "1" or "2" = the mma.sync decode kernels with that many m16 tiles per warp
// for every call that runs them (A/B runs, tests); unset or anything else = choose_warp_tiles.
// Read once.
int warp_tiles_mode() {
  static const int mode = [] {
    const char* v = std::getenv("MOE12X_WARP_TILES");
    return v && (v[0] == '1' || v[0] == '2') && !v[1] ? v[0] - '0' : 0;
  }();
  return mode;
}

// MOE12X_ACT_PREFETCH: "0" or "1" = the two-tile mma.sync decode kernels without / with FP4 token
// rows staged a K chunk ahead, for every call that runs them (A/B runs, tests); unset or anything
// else = choose_act_prefetch. Read once.
int act_prefetch_mode() {
  static const int mode = [] {
    const char* v = std::getenv("MOE12X_ACT_PREFETCH");
    return v && (v[0] == '0' || v[0] == '1') && !v[1] ? v[0] - '0' : -1;
  }();
  return mode;
}

// MOE12X_SPREAD: "0" / "1" / "2" / "3" = spread_smem (scheduler/cta_spread.hpp) for no / FC1's /
// FC2's / both mma.sync grouped launches (A/B runs); unset or anything else = FC2's only (FC1
// launches beside the small route and pack kernels, SMs free: spreading it measured 1-2 % slower
// on qwen3-30b T = 1 / 4, bench/NOTES.md session 13). Read once.
int spread_mode() {
  static const int mode = [] {
    const char* v = std::getenv("MOE12X_SPREAD");
    return v && v[0] >= '0' && v[0] <= '3' && !v[1] ? v[0] - '0' : 2;
  }();
  return mode;
}

// MOE12X_SM90_WGMMA: unset = the warp-specialized wgmma kernel where choose_sm90_wgmma says it is
// faster; "0" = never (the mma.sync kernels), anything else = every grouped call (A/B runs, tests).
// Only on sm_90 devices and in builds with 90a in MOE12X_CUDA_ARCHITECTURES. Read once.
int sm90_wgmma_mode() {
  static const int mode = [] {
    const char* v = std::getenv("MOE12X_SM90_WGMMA");
    return !v || !v[0] ? -1 : v[0] != '0' ? 1 : 0;
  }();
  return mode;
}

// MOE12X_FC1_HANDOFF: "0" = FC1's 128-token wgmma tiles on the grouped grid with the whole
// epilogue in the consumer warpgroups; "1" = the work-queue kernel whose producer warps take the
// epilogue's quantization (p.fc1_handoff); unset or anything else = kFc1HandoffDefault. Read once.
constexpr bool kFc1HandoffDefault = true;
bool fc1_handoff_mode() {
  static const bool on = [] {
    const char* v = std::getenv("MOE12X_FC1_HANDOFF");
    return v && (v[0] == '0' || v[0] == '1') && !v[1] ? v[0] == '1' : kFc1HandoffDefault;
  }();
  return on;
}

// MOE12X_DECODE_KERNEL: "1" = the static schedule's calls of <= kDecodeMaxPairs routed pairs run the
// persistent decode kernel (kernel/moe_decode.cuh); unset or anything else = the phase-barrier
// static kernel (kernel/moe_static.cuh) for every static call. Opt-in until the decode kernel has
// run on a GPU (bench/NOTES.md session 14: built and host-checked, no device lent). Read once.
bool decode_kernel_mode() {
  static const bool on = env_is_one("MOE12X_DECODE_KERNEL");
  return on;
}

// MOE12X_FC2_CHUNK_COLS: a positive number = the dynamic schedule's FC2 + combine in column chunks
// of at most that many (rounded up to the FC2 kernel's item rows) whatever the workspace allows
// (tests, A/B runs); unset or anything else = as few chunks as the workspace allows
// (plan_fc2_chunks). Read once.
int fc2_chunk_cols_mode() {
  static const int cols = [] {
    const char* v = std::getenv("MOE12X_FC2_CHUNK_COLS");
    const long n = v ? std::strtol(v, nullptr, 10) : 0;
    return n > 0 && n < (1 << 20) ? int(n) : 0;
  }();
  return cols;
}

// MOE12X_FC2_CHUNKS: "1" = moe12x_workspace_size leaves the dynamic schedule's FC2 outputs room
// for about half their columns from kFc2ChunkPairs pairs (params.hpp: fc2_y_bytes; FC2 and the
// combine then run in two column chunks); unset or anything else = room for all of them (one
// pass). Opt-in until chunked calls have run on a GPU (bench/NOTES.md session 15). A call plans
// its chunks from the workspace it is given either way. Read once.
bool fc2_chunks_mode() {
  static const bool on = env_is_one("MOE12X_FC2_CHUNKS");
  return on;
}

struct DeviceGuard {
  int prev = -1;
  int cc_major = 0;  // of the device entered
  int sm_count = 0;
  DeviceSmem smem{};  // shared-memory limits (scheduler/cta_spread.hpp)
  bool switched = false;
  moe12x_status_t enter(int device) {
    int count = g_device_count.load(std::memory_order_relaxed);
    if (count < 0) {
      cudaError_t e = cudaGetDeviceCount(&count);
      if (e != cudaSuccess) return fail_cuda(e, "device query");
      g_device_count.store(count, std::memory_order_relaxed);
    }
    if (count == 0) return fail(MOE12X_ERROR_NO_DEVICE, "no CUDA device present");
    MOE12X_CUDA_TRY(cudaGetDevice(&prev), "cudaGetDevice");
    const int dev = device < 0 ? prev : device;
    if (dev >= count)
      return fail(MOE12X_ERROR_INVALID_ARGUMENT, "config.device = %d but only %d CUDA device(s) exist",
                  device, count);
    DeviceSmem sm{};
    sm.per_sm = dev < 64 ? g_smem_per_sm[dev].load(std::memory_order_acquire) : 0;
    int major = dev < 64 ? g_cc_major[dev].load(std::memory_order_relaxed) : 0;
    int sms = dev < 64 ? g_sm_count[dev].load(std::memory_order_relaxed) : 0;
    if (sm.per_sm != 0) {
      sm.optin = g_smem_optin[dev].load(std::memory_order_relaxed);
      sm.reserved = g_smem_reserved[dev].load(std::memory_order_relaxed);
    } else {
      MOE12X_CUDA_TRY(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev),
                      "cudaDeviceGetAttribute");
      MOE12X_CUDA_TRY(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev),
                      "cudaDeviceGetAttribute");
      MOE12X_CUDA_TRY(cudaDeviceGetAttribute(&sm.optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev),
                      "cudaDeviceGetAttribute");
      MOE12X_CUDA_TRY(cudaDeviceGetAttribute(&sm.reserved, cudaDevAttrReservedSharedMemoryPerBlock, dev),
                      "cudaDeviceGetAttribute");
      MOE12X_CUDA_TRY(cudaDeviceGetAttribute(&sm.per_sm, cudaDevAttrMaxSharedMemoryPerMultiprocessor, dev),
                      "cudaDeviceGetAttribute");
      if (dev < 64) {
        g_cc_major[dev].store(major, std::memory_order_relaxed);
        g_sm_count[dev].store(sms, std::memory_order_relaxed);
        g_smem_optin[dev].store(sm.optin, std::memory_order_relaxed);
        g_smem_reserved[dev].store(sm.reserved, std::memory_order_relaxed);
        g_smem_per_sm[dev].store(sm.per_sm, std::memory_order_release);  // publishes the others
      }
    }
    cc_major = major;
    sm_count = sms;
    smem = sm;
    if (major < 8)
      return fail(MOE12X_ERROR_UNSUPPORTED_DEVICE,
                  "device %d has compute capability %d.x; moe12x needs 8.0 or newer", dev, major);
    if (dev != prev) {
      MOE12X_CUDA_TRY(cudaSetDevice(dev), "cudaSetDevice");
      switched = true;
    }
    return MOE12X_SUCCESS;
  }
  ~DeviceGuard() {
    if (switched) cudaSetDevice(prev);
  }
};

moe12x_status_t check_config(const moe12x_config_t* c) {
  if (!c) return fail(MOE12X_ERROR_INVALID_ARGUMENT, "config: NULL pointer");
  if (c->struct_size < sizeof(moe12x_config_t))
    return fail(MOE12X_ERROR_INVALID_ARGUMENT,
                "config.struct_size = %zu, expected >= %zu (call moe12x_config_init)",
                c->struct_size, sizeof(moe12x_config_t));
  if (c->num_experts < 1)
    return fail(MOE12X_ERROR_INVALID_ARGUMENT, "config.num_experts = %d, expected >= 1", c->num_experts);
  if (c->num_local_experts < 1 || c->num_local_experts > c->num_experts)
    return fail(MOE12X_ERROR_INVALID_ARGUMENT, "config.num_local_experts = %d, expected 1..num_experts (%d)",
                c->num_local_experts, c->num_experts);
  if (c->local_expert_offset < 0 || c->local_expert_offset + c->num_local_experts > c->num_experts)
    return fail(MOE12X_ERROR_INVALID_ARGUMENT,
                "config.local_expert_offset = %d: local experts [%d, %d) must lie in [0, %d)",
                c->local_expert_offset, c->local_expert_offset,
                c->local_expert_offset + c->num_local_experts, c->num_experts);
  if (c->hidden_size < 64 || c->hidden_size % 64 != 0 || c->hidden_size > (1 << 20))
    return fail(MOE12X_ERROR_UNSUPPORTED_SHAPE,
                "config.hidden_size = %d: must be a positive multiple of 64 (at most 2^20)", c->hidden_size);
  if (c->intermediate_size < 64 || c->intermediate_size % 64 != 0 || c->intermediate_size > (1 << 20))
    return fail(MOE12X_ERROR_UNSUPPORTED_SHAPE,
                "config.intermediate_size = %d: must be a positive multiple of 64 (at most 2^20)",
                c->intermediate_size);
  if (c->top_k < 1 || c->top_k > 16)
    return fail(MOE12X_ERROR_UNSUPPORTED_SHAPE, "config.top_k = %d: must be in 1..16", c->top_k);
  if (c->max_tokens < 0 || c->max_tokens * c->top_k > INT32_MAX / 2)
    return fail(MOE12X_ERROR_UNSUPPORTED_SHAPE,
                "config.max_tokens = %" PRId64 ": must be >= 0 with max_tokens * top_k < 2^30",
                c->max_tokens);
  if (c->act_quant != MOE12X_ACT_QUANT_NVFP4 && c->act_quant != MOE12X_ACT_QUANT_NONE)
    return fail(MOE12X_ERROR_INVALID_ARGUMENT, "config.act_quant = %d: expected 0 (nvfp4) or 1 (none)",
                c->act_quant);
  if (c->schedule < MOE12X_SCHEDULE_AUTO || c->schedule > MOE12X_SCHEDULE_DYNAMIC)
    return fail(MOE12X_ERROR_INVALID_ARGUMENT, "config.schedule = %d: expected 0 (auto), 1 (static) or 2 (dynamic)",
                c->schedule);
  if (c->device < -1) return fail(MOE12X_ERROR_INVALID_ARGUMENT, "config.device = %d: expected -1 or an ordinal", c->device);
  return MOE12X_SUCCESS;
}

// The schedule a validated config runs for T tokens (moe12x_select_schedule's answer).
int32_t schedule_for(const moe12x_config_t* c, int64_t num_tokens) {
  if (c->num_local_experts > kMaxStaticExperts) return MOE12X_SCHEDULE_DYNAMIC;  // smem scan limit
  if (c->schedule != MOE12X_SCHEDULE_AUTO) return c->schedule;
  // With the persistent decode kernel (opt-in, MOE12X_DECODE_KERNEL=1: not yet run on a GPU),
  // AUTO takes it where the dynamic schedule would run the same 16-row tiles (a mean of <= 8
  // routed rows per active expert: choose_grouped_block_n) on <= kDecodeMaxPairs pairs, its one
  // launch against five (bench/NOTES.md session 15: to be measured per shape). Otherwise, as
  // measured on H200 (v2), the grouped launches beat the phase-barrier static kernel at every T.
  const int64_t pairs = num_tokens * c->top_k;
  if (decode_kernel_mode() && pairs >= 1 && pairs <= kDecodeMaxPairs &&
      choose_grouped_block_n(pairs, c->num_local_experts) == kDecodeTileRows)
    return MOE12X_SCHEDULE_STATIC;
  return MOE12X_SCHEDULE_DYNAMIC;
}

// Whether a grouped call may run the SM90 wgmma kernel (then its FP4 activations are stored
// decoded): the device is not consulted, so the size query and the call agree on any machine.
bool may_use_sm90_wgmma(const moe12x_config_t* c, int64_t tokens) {
  const bool fp4 = c->act_quant == MOE12X_ACT_QUANT_NVFP4;
  const int mode = sm90_wgmma_mode();
  return mode < 0 ? choose_sm90_wgmma(tokens * c->top_k, c->num_local_experts, fp4) : mode == 1;
}

WorkspaceLayout ws_layout(const moe12x_config_t* c, int64_t tokens) {
  const bool fp4 = c->act_quant == MOE12X_ACT_QUANT_NVFP4;
  const bool static_schedule = schedule_for(c, tokens) == MOE12X_SCHEDULE_STATIC;
  const bool decoded = fp4 && !static_schedule && may_use_sm90_wgmma(c, tokens);
  return workspace_layout(tokens, c->top_k, c->num_local_experts, c->hidden_size, c->intermediate_size, fp4, decoded,
                          static_schedule || !fc2_chunks_mode());
}

moe12x_status_t check_scale_count(const char* name, int32_t count, const moe12x_config_t* c) {
  if (count == 1 || count == c->num_local_experts || count == c->num_experts) return MOE12X_SUCCESS;
  return fail(MOE12X_ERROR_INVALID_ARGUMENT,
              "inputs.%s_count = %d: expected 1, num_local_experts (%d) or num_experts (%d)", name,
              count, c->num_local_experts, c->num_experts);
}


}  // namespace

#ifdef MOE12X_WS_TRACE
// Trace builds: the mma.sync grouped kernels' item records (kernel/ws_trace.cuh), device memory
// allocated on the first moe12x_debug_decode_trace(reset = 1); calls made before it record nothing.
namespace {
void* g_decode_trace = nullptr;
constexpr size_t kDecodeTraceBytes = 2 * moe12x::kWsTraceRecords * sizeof(moe12x::WsTraceRecord);
}  // namespace
extern "C" __attribute__((visibility("default"))) int moe12x_debug_decode_trace(void* host, size_t bytes, int reset) {
  if (reset) {
    if (!g_decode_trace)
      if (const cudaError_t e = cudaMalloc(&g_decode_trace, kDecodeTraceBytes); e != cudaSuccess) return int(e);
    if (const cudaError_t e = cudaMemset(g_decode_trace, 0, kDecodeTraceBytes); e != cudaSuccess) return int(e);
    return int(cudaDeviceSynchronize());
  }
  if (!g_decode_trace) return -1;
  return int(cudaMemcpy(host, g_decode_trace, bytes < kDecodeTraceBytes ? bytes : kDecodeTraceBytes, cudaMemcpyDeviceToHost));
}
#endif

extern "C" {

int moe12x_get_version(void) { return MOE12X_VERSION; }

void moe12x_config_init(moe12x_config_t* config) {
  if (!config) return;
  std::memset(config, 0, sizeof(*config));
  config->struct_size = sizeof(moe12x_config_t);
  config->act_quant = MOE12X_ACT_QUANT_NVFP4;
  config->schedule = MOE12X_SCHEDULE_AUTO;
  config->device = -1;
}

moe12x_status_t moe12x_config_check(const moe12x_config_t* config) {
  clear_error();
  return check_config(config);
}

moe12x_status_t moe12x_scale_bytes(int64_t rows, int64_t k, int32_t scale_layout, size_t* bytes) {
  clear_error();
  if (!bytes) return fail(MOE12X_ERROR_INVALID_ARGUMENT, "bytes: NULL pointer");
  if (rows < 0 || k < 0 || k % 16 != 0)
    return fail(MOE12X_ERROR_INVALID_ARGUMENT, "rows = %" PRId64 ", k = %" PRId64 ": need rows >= 0 and k a multiple of 16", rows, k);
  if (scale_layout == MOE12X_SCALE_ROW_MAJOR) {
    *bytes = size_t(rows) * size_t(k / 16);
  } else if (scale_layout == MOE12X_SCALE_SWIZZLED_128x4) {
    *bytes = size_t((rows + 127) / 128 * 128) * size_t((k / 16 + 3) / 4 * 4);
  } else {
    return fail(MOE12X_ERROR_INVALID_ARGUMENT, "scale_layout = %d: expected 0 (row-major) or 1 (swizzled 128x4)", scale_layout);
  }
  return MOE12X_SUCCESS;
}

moe12x_status_t moe12x_prepared_weights_size(const moe12x_config_t* config, size_t* bytes) {
  clear_error();
  MOE12X_TRY(check_config(config));
  if (!bytes) return fail(MOE12X_ERROR_INVALID_ARGUMENT, "bytes: NULL pointer");
  *bytes = prepared_layout(config->num_local_experts, config->hidden_size, config->intermediate_size).bytes;
  return MOE12X_SUCCESS;
}

moe12x_status_t moe12x_workspace_size(const moe12x_config_t* config, int64_t num_tokens, size_t* bytes) {
  clear_error();
  MOE12X_TRY(check_config(config));
  if (!bytes) return fail(MOE12X_ERROR_INVALID_ARGUMENT, "bytes: NULL pointer");
  if (num_tokens < 0 || num_tokens * config->top_k > INT32_MAX / 2)
    return fail(MOE12X_ERROR_UNSUPPORTED_SHAPE, "num_tokens = %" PRId64 ": must be >= 0 with num_tokens * top_k < 2^30", num_tokens);
  *bytes = ws_layout(config, num_tokens).bytes;
  return MOE12X_SUCCESS;
}

moe12x_status_t moe12x_prepare_weights(const moe12x_config_t* config, const moe12x_weights_t* w,
                                       void* prepared, size_t prepared_bytes, moe12x_stream_t stream) {
  clear_error();
  MOE12X_TRY(check_config(config));
  if (!w) return fail(MOE12X_ERROR_INVALID_ARGUMENT, "weights: NULL pointer");
  if (w->struct_size < sizeof(moe12x_weights_t))
    return fail(MOE12X_ERROR_INVALID_ARGUMENT, "weights.struct_size = %zu, expected >= %zu", w->struct_size,
                sizeof(moe12x_weights_t));
  const struct { const void* p; const char* name; } ptrs[] = {
      {w->w13, "weights.w13"}, {w->w13_scale, "weights.w13_scale"}, {w->w13_global_scale, "weights.w13_global_scale"},
      {w->w2, "weights.w2"}, {w->w2_scale, "weights.w2_scale"}, {w->w2_global_scale, "weights.w2_global_scale"},
      {prepared, "prepared"}};
  for (const auto& q : ptrs)
    if (!q.p) return fail(MOE12X_ERROR_INVALID_ARGUMENT, "%s: NULL pointer", q.name);
  if (!aligned(w->w13_global_scale, 4) || !aligned(w->w2_global_scale, 4))
    return fail(MOE12X_ERROR_INVALID_ARGUMENT, "weights.*_global_scale: must be 4-byte aligned fp32");
  if (!aligned(prepared, 256)) return fail(MOE12X_ERROR_INVALID_ARGUMENT, "prepared: must be 256-byte aligned");
  if (w->scale_layout != MOE12X_SCALE_ROW_MAJOR && w->scale_layout != MOE12X_SCALE_SWIZZLED_128x4)
    return fail(MOE12X_ERROR_INVALID_ARGUMENT, "weights.scale_layout = %d: expected 0 or 1", w->scale_layout);
  if (w->gate_up_order != MOE12X_UP_GATE && w->gate_up_order != MOE12X_GATE_UP)
    return fail(MOE12X_ERROR_INVALID_ARGUMENT, "weights.gate_up_order = %d: expected 0 (up,gate) or 1 (gate,up)",
                w->gate_up_order);
  const PreparedLayout L = prepared_layout(config->num_local_experts, config->hidden_size, config->intermediate_size);
  if (prepared_bytes < L.bytes)
    return fail(MOE12X_ERROR_INSUFFICIENT_BUFFER, "prepared_bytes = %zu, need %zu (moe12x_prepared_weights_size)",
                prepared_bytes, L.bytes);
  DeviceGuard guard;
  MOE12X_TRY(guard.enter(config->device));
  uint8_t* base = static_cast<uint8_t*>(prepared);
  const cudaStream_t s = reinterpret_cast<cudaStream_t>(stream);
  auto prep = [&](const MatrixLayout& m, const void* codes, const void* scales, const float* gs,
                  bool fc1) {
    PrepareArgs a{};
    a.codes = static_cast<const uint8_t*>(codes);
    a.scales = static_cast<const uint8_t*>(scales);
    a.gscale = gs;
    a.swizzled = w->scale_layout == MOE12X_SCALE_SWIZZLED_128x4;
    a.fc1_interleave = fc1;
    a.gate_first = w->gate_up_order == MOE12X_GATE_UP;
    a.e_local = config->num_local_experts;
    a.rows = m.rows;
    a.k = m.k;
    a.out_codes = base + m.codes_off;
    a.out_scales = base + m.scales_off;
    a.out_gscale = reinterpret_cast<float*>(base + m.gscale_off);
    return launch_prepare(a, s);
  };
  MOE12X_CUDA_TRY(prep(L.w13, w->w13, w->w13_scale, w->w13_global_scale, true), "prepare W13 launch");
  MOE12X_CUDA_TRY(prep(L.w2, w->w2, w->w2_scale, w->w2_global_scale, false), "prepare W2 launch");
  return MOE12X_SUCCESS;
}

moe12x_status_t moe12x_select_schedule(const moe12x_config_t* config, int64_t num_tokens, int32_t* schedule) {
  clear_error();
  MOE12X_TRY(check_config(config));
  if (!schedule) return fail(MOE12X_ERROR_INVALID_ARGUMENT, "schedule: NULL pointer");
  *schedule = schedule_for(config, num_tokens);
  return MOE12X_SUCCESS;
}

moe12x_status_t moe12x_run(const moe12x_config_t* config, const void* prepared, const moe12x_inputs_t* in,
                           void* workspace, size_t workspace_bytes, moe12x_stream_t stream) {
  clear_error();
  MOE12X_TRY(check_config(config));
  if (!in) return fail(MOE12X_ERROR_INVALID_ARGUMENT, "inputs: NULL pointer");
  if (in->struct_size < sizeof(moe12x_inputs_t))
    return fail(MOE12X_ERROR_INVALID_ARGUMENT, "inputs.struct_size = %zu, expected >= %zu", in->struct_size,
                sizeof(moe12x_inputs_t));
  const int64_t T = in->num_tokens;
  if (T < 0 || T > config->max_tokens)
    return fail(MOE12X_ERROR_INVALID_ARGUMENT, "inputs.num_tokens = %" PRId64 ": must be in 0..config.max_tokens (%" PRId64 ")",
                T, config->max_tokens);
  if (!prepared) return fail(MOE12X_ERROR_INVALID_ARGUMENT, "prepared: NULL pointer");
  if (!aligned(prepared, 256)) return fail(MOE12X_ERROR_INVALID_ARGUMENT, "prepared: must be 256-byte aligned");
  const bool fp4 = config->act_quant == MOE12X_ACT_QUANT_NVFP4;
  if (!in->x || !in->out || !in->topk_ids || !in->topk_weights)
    return fail(MOE12X_ERROR_INVALID_ARGUMENT, "inputs.%s: NULL pointer",
                !in->x ? "x" : !in->out ? "out" : !in->topk_ids ? "topk_ids" : "topk_weights");
  if (!aligned(in->x, 16)) return fail(MOE12X_ERROR_INVALID_ARGUMENT, "inputs.x: must be 16-byte aligned");
  if (!aligned(in->out, 16)) return fail(MOE12X_ERROR_INVALID_ARGUMENT, "inputs.out: must be 16-byte aligned");
  if (in->ids_dtype != MOE12X_DTYPE_INT32 && in->ids_dtype != MOE12X_DTYPE_INT64)
    return fail(MOE12X_ERROR_INVALID_ARGUMENT, "inputs.ids_dtype = %d: expected INT32 or INT64", in->ids_dtype);
  if (in->weights_dtype != MOE12X_DTYPE_FLOAT32 && in->weights_dtype != MOE12X_DTYPE_BFLOAT16)
    return fail(MOE12X_ERROR_INVALID_ARGUMENT, "inputs.weights_dtype = %d: expected FLOAT32 or BFLOAT16",
                in->weights_dtype);
  if (!aligned(in->topk_ids, in->ids_dtype == MOE12X_DTYPE_INT64 ? 8 : 4))
    return fail(MOE12X_ERROR_INVALID_ARGUMENT, "inputs.topk_ids: misaligned for its dtype");
  if (!aligned(in->topk_weights, in->weights_dtype == MOE12X_DTYPE_FLOAT32 ? 4 : 2))
    return fail(MOE12X_ERROR_INVALID_ARGUMENT, "inputs.topk_weights: misaligned for its dtype");
  if (!in->fc2_input_scale || (fp4 && !in->fc1_input_scale))
    return fail(MOE12X_ERROR_INVALID_ARGUMENT, "inputs.%s: NULL pointer",
                !in->fc2_input_scale ? "fc2_input_scale" : "fc1_input_scale");
  if (fp4) MOE12X_TRY(check_scale_count("fc1_input_scale", in->fc1_input_scale_count, config));
  MOE12X_TRY(check_scale_count("fc2_input_scale", in->fc2_input_scale_count, config));
  if (!aligned(in->fc2_input_scale, 4) || (fp4 && !aligned(in->fc1_input_scale, 4)))
    return fail(MOE12X_ERROR_INVALID_ARGUMENT, "inputs.fc*_input_scale: must be 4-byte aligned fp32");
  if (T == 0) return MOE12X_SUCCESS;  // nothing to do; out untouched
  const WorkspaceLayout W = ws_layout(config, T);
  if (workspace_bytes < W.bytes)
    return fail(MOE12X_ERROR_INSUFFICIENT_BUFFER, "workspace_bytes = %zu, need %zu for %" PRId64 " tokens",
                workspace_bytes, W.bytes, T);
  if (!workspace) return fail(MOE12X_ERROR_INVALID_ARGUMENT, "workspace: NULL pointer");
  if (!aligned(workspace, 256)) return fail(MOE12X_ERROR_INVALID_ARGUMENT, "workspace: must be 256-byte aligned");
  DeviceGuard guard;
  MOE12X_TRY(guard.enter(config->device));

  const PreparedLayout L = prepared_layout(config->num_local_experts, config->hidden_size, config->intermediate_size);
  const uint8_t* pw = static_cast<const uint8_t*>(prepared);
  uint8_t* ws = static_cast<uint8_t*>(workspace);
  MoeParams p{};
  p.tokens = T;
  p.hidden = config->hidden_size;
  p.inter = config->intermediate_size;
  p.top_k = config->top_k;
  p.num_experts = config->num_experts;
  p.e_local = config->num_local_experts;
  p.local_offset = config->local_expert_offset;
  p.act_fp4 = fp4;
  p.pdl = guard.cc_major >= 9 && !pdl_disabled();
  p.sm_count = guard.sm_count;
  p.smem = guard.smem;
  const bool static_schedule = schedule_for(config, T) == MOE12X_SCHEDULE_STATIC;  // config validated above
  // The static schedule's persistent decode kernel routes <= kDecodeMaxPairs pairs in every CTA
  // (kernel/moe_decode.cuh; opt-in: decode_kernel_mode); past that, and by default, the
  // phase-barrier kernel (kernel/moe_static.cuh).
  const bool decode_kernel = static_schedule && decode_kernel_mode() && T * config->top_k <= kDecodeMaxPairs;
  p.block_n = decode_kernel     ? kDecodeTileRows
              : static_schedule ? choose_block_n(T * config->top_k, config->num_local_experts)
                                : choose_grouped_block_n(T * config->top_k, config->num_local_experts);
#ifdef MOE12X_HAS_SM90_WGMMA
  p.sm90_wgmma = !static_schedule && guard.cc_major == 9 && may_use_sm90_wgmma(config, T);
  if (p.sm90_wgmma && p.block_n == 64)  // its 64- or 128-token tiles (workspace sized for 8)
    p.block_n = sm90_wgmma_block_n(T * config->top_k, config->num_local_experts);
  // 128-row tiles: an expert's last tile takes up to 32 more rows (one wgmma of N <= 160 instead
  // of a second, narrow tile: bench/NOTES.md v21)
  if (p.sm90_wgmma && p.block_n == 128) p.tile_extra = 32;
  p.fc1_handoff = p.sm90_wgmma && p.block_n == 128 && fp4 && fc1_handoff_mode();
#endif
  p.max_tiles = max_tiles_for(W.pairs, p.e_local, p.block_n);
  p.spread_ctas = spread_mode();
  if (decode_kernel || (!static_schedule && !p.sm90_wgmma && p.block_n <= 16)) {  // the decode kernels (gemm_dispatch.cu)
    const int forced = warp_tiles_mode();
    const int64_t pairs = T * config->top_k;
    p.fc1_warp_tiles = forced ? forced : choose_warp_tiles(pairs, p.e_local, 2 * p.inter, guard.sm_count);
    p.fc2_warp_tiles = forced ? forced : choose_warp_tiles(pairs, p.e_local, p.hidden, guard.sm_count);
    const int prefetch = act_prefetch_mode();
    p.act_prefetch = fp4 && (prefetch >= 0 ? prefetch == 1 : choose_act_prefetch(pairs, p.e_local));
  }
#ifdef MOE12X_WS_TRACE
  p.decode_trace = g_decode_trace;
#endif
  p.x = static_cast<const uint16_t*>(in->x);
  p.ids = in->topk_ids;
  p.ids64 = in->ids_dtype == MOE12X_DTYPE_INT64;
  p.topk_w = in->topk_weights;
  p.w_bf16 = in->weights_dtype == MOE12X_DTYPE_BFLOAT16;
  p.fc1_scale = fp4 ? in->fc1_input_scale : in->fc2_input_scale;  // unread in "none" mode
  p.fc1_count = fp4 ? in->fc1_input_scale_count : in->fc2_input_scale_count;
  // The mma.sync kernels stage FC1's rows through row_pair, so the pack may index them by pair (by
  // token with one shared scale: top_k times fewer rows) and run beside the route kernel.
  p.xq_gather = fp4 && !static_schedule && !p.sm90_wgmma ? (p.fc1_count == 1 ? p.top_k : 1) : 0;
  p.fc2_scale = in->fc2_input_scale;
  p.fc2_count = in->fc2_input_scale_count;
  p.out = static_cast<uint16_t*>(in->out);
  p.w13_codes = pw + L.w13.codes_off;
  p.w13_scales = pw + L.w13.scales_off;
  p.w13_gs = reinterpret_cast<const float*>(pw + L.w13.gscale_off);
  p.w2_codes = pw + L.w2.codes_off;
  p.w2_scales = pw + L.w2.scales_off;
  p.w2_gs = reinterpret_cast<const float*>(pw + L.w2.gscale_off);
  p.counts = reinterpret_cast<int*>(ws + W.counts);
  p.offsets = p.counts + p.e_local;
  p.cursor = p.offsets + p.e_local + 1;
  p.tile_count = reinterpret_cast<int*>(ws + W.tile_count);
  p.tiles = reinterpret_cast<int2*>(ws + W.tiles);
  p.row_pair = reinterpret_cast<int*>(ws + W.row_pair);
  p.pair_row = reinterpret_cast<int*>(ws + W.pair_row);
  p.decode_sync = reinterpret_cast<int*>(ws + W.decode_sync);
  p.xq = fp4 ? ws + W.xq : nullptr;
  p.xq_sf = fp4 && !p.sm90_wgmma ? ws + W.xq_sf : nullptr;  // sm90_wgmma: decoded rows, no scales
  p.act = ws + W.act;
  p.act_sf = fp4 && !p.sm90_wgmma ? ws + W.act_sf : nullptr;
  p.y = reinterpret_cast<float*>(ws + W.y);
  p.y_cols = p.y_ncols = p.hidden;  // the static schedule's y holds every column
  p.y_col0 = 0;

  const cudaStream_t s = reinterpret_cast<cudaStream_t>(stream);
  if (decode_kernel) {  // one kernel for both GEMMs: FC1's choice of tiles per warp
    MOE12X_CUDA_TRY(p.fc1_warp_tiles == 1 ? launch_decode<1>(p, s) : launch_decode<2>(p, s),
                    "static-schedule (decode kernel) cooperative launch");
    return MOE12X_SUCCESS;
  }
  if (static_schedule) {
    MOE12X_CUDA_TRY(launch_static(p, s), "static-schedule cooperative launch");
    return MOE12X_SUCCESS;
  }
  // FC2 and the combine run per chunk of output columns, as wide as the workspace's y region allows
  // (params.hpp: plan_fc2_chunks). Each FC2 launch waits (PDL) for the combine before it, which
  // has read the chunk it overwrites.
  const Fc2Chunks chunks = plan_fc2_chunks(W.pairs, p.hidden, workspace_bytes - W.y, fc2_item_rows(p),
                                           fc2_chunk_cols_mode());
  if (chunks.count < 1)  // not reached: W.bytes holds the smallest chunk of every FC2 kernel
    return fail(MOE12X_ERROR_INSUFFICIENT_BUFFER, "workspace_bytes = %zu: too small for FC2's output chunks",
                workspace_bytes);
  p.y_cols = chunks.cols;
  MOE12X_CUDA_TRY(launch_route(p, s), "route launch");
  if (fp4) MOE12X_CUDA_TRY(launch_pack_fp4(p, s), "pack launch");
  MOE12X_CUDA_TRY(launch_fc1(p, s), "FC1 launch");
  // FC2 and the combine per chunk of output columns (planned before the first launch above)
  for (int c = 0; c < chunks.count; ++c) {
    p.y_col0 = c * chunks.cols;
    p.y_ncols = std::min(chunks.cols, p.hidden - p.y_col0);
    MOE12X_CUDA_TRY(launch_fc2(p, s), "FC2 launch");
    MOE12X_CUDA_TRY(launch_combine(p, s), "combine launch");
  }
  return MOE12X_SUCCESS;
}

moe12x_status_t moe12x_quantize_nvfp4(const void* x, int64_t rows, int64_t cols, int64_t ld,
                                      const float* global_scale, void* q, void* scales,
                                      int32_t scale_layout, moe12x_stream_t stream) {
  clear_error();
  if (rows < 0) return fail(MOE12X_ERROR_INVALID_ARGUMENT, "rows = %" PRId64 ": must be >= 0", rows);
  if (cols <= 0 || cols % 16 != 0)
    return fail(MOE12X_ERROR_UNSUPPORTED_SHAPE, "cols = %" PRId64 ": must be a positive multiple of 16", cols);
  if (ld < cols) return fail(MOE12X_ERROR_INVALID_ARGUMENT, "ld = %" PRId64 ": must be >= cols (%" PRId64 ")", ld, cols);
  if (scale_layout != MOE12X_SCALE_ROW_MAJOR && scale_layout != MOE12X_SCALE_SWIZZLED_128x4)
    return fail(MOE12X_ERROR_INVALID_ARGUMENT, "scale_layout = %d: expected 0 or 1", scale_layout);
  if (!x || !global_scale || !q || !scales)
    return fail(MOE12X_ERROR_INVALID_ARGUMENT, "%s: NULL pointer",
                !x ? "x" : !global_scale ? "global_scale" : !q ? "q" : "scales");
  if (!aligned(x, 2)) return fail(MOE12X_ERROR_INVALID_ARGUMENT, "x: must be 2-byte aligned bf16");
  if (!aligned(q, 8)) return fail(MOE12X_ERROR_INVALID_ARGUMENT, "q: must be 8-byte aligned");
  if (!aligned(global_scale, 4)) return fail(MOE12X_ERROR_INVALID_ARGUMENT, "global_scale: must be 4-byte aligned");
  DeviceGuard guard;
  MOE12X_TRY(guard.enter(-1));
  if (rows == 0) return MOE12X_SUCCESS;
  MOE12X_CUDA_TRY(launch_quantize(static_cast<const uint16_t*>(x), rows, cols, ld, global_scale,
                                  static_cast<uint8_t*>(q), static_cast<uint8_t*>(scales),
                                  scale_layout == MOE12X_SCALE_SWIZZLED_128x4,
                                  reinterpret_cast<cudaStream_t>(stream)),
                  "quantize launch");
  return MOE12X_SUCCESS;
}

moe12x_status_t moe12x_device_count(int* count) {
  clear_error();
  if (!count) return fail(MOE12X_ERROR_INVALID_ARGUMENT, "count: NULL pointer");
  *count = 0;
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();
    return MOE12X_SUCCESS;  // no driver / no device: zero devices, not an error
  }
  *count = n;
  return MOE12X_SUCCESS;
}

moe12x_status_t moe12x_device_malloc(int device, size_t bytes, void** ptr) {
  clear_error();
  if (!ptr) return fail(MOE12X_ERROR_INVALID_ARGUMENT, "ptr: NULL pointer");
  *ptr = nullptr;
  DeviceGuard guard;
  MOE12X_TRY(guard.enter(device));
  if (bytes == 0) return MOE12X_SUCCESS;
  MOE12X_CUDA_TRY(cudaMalloc(ptr, bytes), "cudaMalloc");
  return MOE12X_SUCCESS;
}

moe12x_status_t moe12x_device_free(int device, void* ptr) {
  clear_error();
  if (!ptr) return MOE12X_SUCCESS;
  DeviceGuard guard;
  MOE12X_TRY(guard.enter(device));
  MOE12X_CUDA_TRY(cudaFree(ptr), "cudaFree");
  return MOE12X_SUCCESS;
}

moe12x_status_t moe12x_memcpy(void* dst, const void* src, size_t bytes, moe12x_stream_t stream) {
  clear_error();
  if (bytes == 0) return MOE12X_SUCCESS;
  if (!dst || !src) return fail(MOE12X_ERROR_INVALID_ARGUMENT, "%s: NULL pointer", !dst ? "dst" : "src");
  MOE12X_CUDA_TRY(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDefault, reinterpret_cast<cudaStream_t>(stream)),
                  "cudaMemcpyAsync");
  return MOE12X_SUCCESS;
}

moe12x_status_t moe12x_stream_synchronize(moe12x_stream_t stream) {
  clear_error();
  MOE12X_CUDA_TRY(cudaStreamSynchronize(reinterpret_cast<cudaStream_t>(stream)), "cudaStreamSynchronize");
  return MOE12X_SUCCESS;
}

}  // extern "C"
