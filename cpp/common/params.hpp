// Plain parameter structs shared by host launchers and kernels, and the byte layouts of the
// prepared weights and the workspace. Host code computes the layouts; kernels only read them.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector_types.h>  // int2

#include "scheduler/cta_spread.hpp"

#ifdef __CUDACC__
#define MOE12X_HD __host__ __device__
#else
#define MOE12X_HD
#endif

namespace moe12x {

constexpr int kWarpRows = 16;     // rows of one m16 MMA tile
constexpr int kKBlock = 64;       // K elements per prepared block (4 k16 steps, 16 B per lane)
constexpr int kFragBytes = 512;   // one (m16, k64) block of codes: 32 lanes x 16 B
constexpr int kScaleBytes = 64;   // its scale codes: 16 rows x 4 blocks
constexpr int kCtaThreads = 128;  // 4 MMA warps
constexpr int kCtaRows = 128;     // prepared rows per CTA (2 m16 tiles per warp)
constexpr int kMaxStaticExperts = 1024;  // the static kernel scans experts in shared memory
// The persistent decode kernel (kernel/moe_decode.cuh): every CTA routes up to this many pairs
// on its own; its tiles hold <= 16 rows of one expert.
constexpr int kDecodeMaxPairs = 256;
constexpr int kDecodeTileRows = 16;

inline size_t align_up(size_t x, size_t a) { return (x + a - 1) / a * a; }

// Prepared weights of one matrix kind for all local experts (fragment-major, see prep/).
struct MatrixLayout {
  int rows, k;                 // logical [rows, k] per expert
  size_t codes_off, scales_off, gscale_off;
  size_t codes_per_expert() const { return size_t(rows) * k / 2; }
  size_t scales_per_expert() const { return size_t(rows) * k / 16; }
};

struct PreparedLayout {
  MatrixLayout w13, w2;
  size_t bytes;
};

inline PreparedLayout prepared_layout(int e_local, int hidden, int inter) {
  PreparedLayout p{};
  size_t off = 0;
  auto place = [&](MatrixLayout& m, int rows, int k) {
    m.rows = rows; m.k = k;
    m.codes_off = off;  off = align_up(off + m.codes_per_expert() * e_local, 256);
    m.scales_off = off; off = align_up(off + m.scales_per_expert() * e_local, 256);
    m.gscale_off = off; off = align_up(off + sizeof(float) * e_local, 256);
  };
  place(p.w13, 2 * inter, hidden);
  place(p.w2, hidden, inter);
  p.bytes = off;
  return p;
}

// Workspace: routing tables, packed activations, the intermediate, and per-slot FC2 outputs (in
// column chunks: fc2_min_chunk_cols). The packed FC1 input is dead before FC2 writes y (stream
// order, PDL waits, the static kernel's grid barrier), so it lives inside y.
struct WorkspaceLayout {
  size_t counts, tile_count, tiles, row_pair, pair_row, decode_sync, xq, xq_sf, act, act_sf, y;
  size_t bytes;
  int64_t pairs, max_tiles;
};

// Tiles of an expert with c routed rows: block_n rows each, the last one up to block_n + extra.
MOE12X_HD inline int expert_tile_count(int c, int block_n, int extra) {
  if (c <= 0) return 0;
  const int t = (c - extra + block_n - 1) / block_n;
  return t > 1 ? t : 1;
}
// Rows of the tile that starts with `left` of its expert's rows to go: all of them if they fit the
// last tile (expert_tile_count leaves a non-last tile more than block_n + extra), else block_n.
MOE12X_HD inline int expert_tile_rows(int left, int block_n, int extra) {
  return left <= block_n + extra ? left : block_n;
}

inline int64_t max_tiles_for(int64_t pairs, int e_local, int block_n) {
  const int64_t by_rows = (pairs + block_n - 1) / block_n + e_local;
  const int64_t by_pairs = pairs;  // never more tiles than non-empty rows
  return by_rows < by_pairs ? by_rows : by_pairs;
}

// FC2's per-slot outputs y in column chunks. The dynamic schedule runs FC2 and the combine once
// per chunk of output columns (the same items, each once: no extra weight traffic, bit-identical
// sums), so y holds P x cols fp32 instead of P x H; it aliases the packed FC1 input, dead by then.
// A workspace's y region holds all H columns with full_y (the static schedule: one launch; and
// until column chunks have run on a GPU, every call but with MOE12X_FC2_CHUNKS=1: c_api.cpp) and
// up to kFc2ChunkPairs pairs; past that cols = H / 2 rounded up to whole items of every FC2
// kernel (fc2_min_chunk_cols), about the decoded FC1 input's 2 P H bytes (two chunks), but never
// less than the full y of kFc2ChunkPairs pairs, so workspace sizes grow with T (a workspace sized
// for T serves every smaller call).
constexpr int64_t kFc2ChunkPairs = 1024;
// The FC2 kernels' item rows: 64 and 128 (mma.sync), 256 and 384 (SM90 wgmma). cols is the
// smallest width that leaves every kernel >= H / 2 whole items of room: two chunks for each.
constexpr int kFc2ItemRows[] = {64, 128, 256, 384};
inline int fc2_min_chunk_cols(int64_t pairs, int hidden, bool full_y) {
  if (full_y || pairs <= kFc2ChunkPairs) return hidden;
  const size_t half = size_t(hidden + 1) / 2;
  size_t cols = half;
  for (const int rows : kFc2ItemRows) cols = align_up(half, rows) > cols ? align_up(half, rows) : cols;
  return cols < size_t(hidden) ? int(cols) : hidden;
}
inline size_t fc2_y_bytes(int64_t pairs, int hidden, bool full_y) {
  const size_t chunked = size_t(pairs) * fc2_min_chunk_cols(pairs, hidden, full_y) * sizeof(float);
  const size_t floor = pairs > kFc2ChunkPairs ? size_t(kFc2ChunkPairs) * hidden * sizeof(float) : 0;
  return chunked > floor ? chunked : floor;
}

// The chunks of one call: y's row stride `cols` (floats) and how many; chunk c covers columns
// [c cols, min((c + 1) cols, H)). avail: bytes the caller's workspace leaves for y; item_rows: the
// FC2 kernel's rows per item (chunk starts must be multiples); forced: MOE12X_FC2_CHUNK_COLS (0:
// as few chunks as avail allows, balanced).
struct Fc2Chunks {
  int cols, count;
};
inline Fc2Chunks plan_fc2_chunks(int64_t pairs, int hidden, size_t avail, int item_rows, int forced) {
  if (pairs <= 0) return Fc2Chunks{hidden, 1};
  const size_t per_pair = avail / (size_t(pairs) * sizeof(float));  // columns that fit
  int cap = per_pair >= size_t(hidden) ? hidden : int(per_pair / item_rows) * item_rows;
  if (forced > 0) {
    const int f = int(align_up(size_t(forced), item_rows));
    if (f < cap) cap = f;
  }
  if (cap >= hidden) return Fc2Chunks{hidden, 1};
  if (cap < item_rows) return Fc2Chunks{0, 0};  // the workspace is too small (checked by the caller)
  const int n = (hidden + cap - 1) / cap;
  const int cols = int(align_up(size_t(hidden + n - 1) / n, item_rows));  // <= cap: cap is a multiple
  return Fc2Chunks{cols, (hidden + cols - 1) / cols};
}

// decoded: the FP4 activations may be stored decoded (bf16) for the SM90 wgmma kernel; the packed
// FC1 input (2 P H bytes then) still fits inside y. full_y: y holds all columns.
inline WorkspaceLayout workspace_layout(int64_t tokens, int top_k, int e_local, int hidden,
                                        int inter, bool act_fp4, bool decoded, bool full_y) {
  WorkspaceLayout w{};
  w.pairs = tokens * top_k;
  w.max_tiles = max_tiles_for(w.pairs, e_local, 8);  // smallest tile: upper bound for all
  size_t off = 0;
  auto take = [&](size_t& field, size_t n) { field = off; off = align_up(off + n, 256); };
  take(w.counts, sizeof(int) * (3 * size_t(e_local) + 1));  // counts, offsets, cursor
  take(w.tile_count, sizeof(int) * 4);
  take(w.tiles, sizeof(int) * 2 * size_t(w.max_tiles));
  take(w.row_pair, sizeof(int) * size_t(w.pairs));
  take(w.pair_row, sizeof(int) * size_t(w.pairs));
  take(w.decode_sync, sizeof(int) * (1 + kDecodeMaxPairs));  // the decode kernel's item counter, FC1 done per tile
  const size_t P = size_t(w.pairs);
  if (act_fp4 && !decoded) {
    take(w.act, P * inter / 2);
    take(w.act_sf, P * inter / 16);
  } else {  // bf16; a decoded layout still holds codes + scales (a call that runs another kernel)
    const size_t codes = align_up(P * inter / 2, 256), bf16 = P * inter * 2;
    take(w.act, act_fp4 && codes + P * inter / 16 > bf16 ? codes + P * inter / 16 : bf16);
    w.act_sf = act_fp4 ? w.act + codes : 0;
  }
  const size_t xq_codes = align_up(P * hidden / 2, 256) + P * hidden / 16;
  const size_t xq_bytes = !act_fp4 ? 0 : decoded && P * hidden * 2 > xq_codes ? P * hidden * 2 : xq_codes;
  const size_t y_bytes = fc2_y_bytes(w.pairs, hidden, full_y);
  take(w.y, xq_bytes > y_bytes ? xq_bytes : y_bytes);  // y is last: a larger workspace widens its chunks
  if (act_fp4) {  // inside y
    w.xq = w.y;
    w.xq_sf = w.y + align_up(P * hidden / 2, 256);  // unused when decoded
  } else {
    w.xq = w.xq_sf = 0;  // FC1 gathers bf16 rows of x directly
  }
  w.bytes = off;
  return w;
}

// Everything a launch needs. Pointers are device pointers.
struct MoeParams {
  // shape
  int64_t tokens;
  int hidden, inter, top_k, num_experts, e_local, local_offset;
  bool act_fp4;
  bool pdl;      // launch the grouped schedule's kernels programmatically dependent (SM90+)
  bool sm90_wgmma;  // grouped FC1/FC2 on the warp-specialized wgmma kernel (c_api.cpp, dispatch.hpp);
                    // its FP4 activations (xq, act) are stored decoded, as bf16 q * sf * 2^-8
                    // (exact), rows of H (I) values: the kernel stages them by TMA
  bool fc1_handoff;  // sm90_wgmma FC1 with 128-token tiles: the work-queue kernel whose producer
                     // warps quantize the consumers' SwiGLU rows (kernel/moe_gemm_sm90_ws.cuh)
  int xq_gather;  // 0: FC1's packed rows by routed row (pack after the route); 1: by pair t k + j,
                  // top_k: by token (one shared FC1 input scale): the pack needs no routing and
                  // runs beside the route kernel, FC1 stages row r from row_pair[r] / xq_gather
                  // (mma.sync kernels only: c_api.cpp)
  int block_n;
  int fc1_warp_tiles = 2, fc2_warp_tiles = 2;  // m16 tiles per warp of the mma.sync decode kernels
                                               // (block_n <= 16): choose_warp_tiles
#ifdef MOE12X_WS_TRACE
  void* decode_trace = nullptr;  // WsTraceRecord[2][kWsTraceRecords]: trace builds only (ws_trace.cuh)
#endif
  int spread_ctas = 0;  // mma.sync grouped launches of few CTAs ask for shared memory that caps their
                        // CTAs per SM (scheduler/cta_spread.hpp): bit 0 FC1, bit 1 FC2
  bool act_prefetch = false;  // two-tile decode kernels stage 16-row tiles' FP4 rows a K chunk
                              // ahead (Fp4ActPrefetch): choose_act_prefetch
  int tile_extra;   // an expert's last tile takes up to block_n + tile_extra rows (0, or 32 for the
                    // wgmma kernel's 128-row tiles: expert_tile_count)
  int64_t max_tiles;
  // inputs
  const uint16_t* x;           // bf16 [T, H]
  const void* ids;             // [T, k]
  bool ids64;
  const void* topk_w;          // [T, k]
  bool w_bf16;
  const float* fc1_scale; int fc1_count;
  const float* fc2_scale; int fc2_count;
  uint16_t* out;               // bf16 [T, H]
  // prepared weights
  const uint8_t* w13_codes; const uint8_t* w13_scales; const float* w13_gs;
  const uint8_t* w2_codes;  const uint8_t* w2_scales;  const float* w2_gs;
  // workspace
  int* counts;      // [E_local]
  int* offsets;     // [E_local + 1]
  int* cursor;      // [E_local] scatter cursors (static schedule)
  int* tile_count;  // [1]
  int2* tiles;      // (expert, first row)
  int* row_pair;    // packed row -> pair index t * k + j
  int* pair_row;    // its inverse (grouped schedule; -1: expert not local)
  int* decode_sync; // [1 + kDecodeMaxPairs]: the persistent decode kernel's item counter, then FC1
                    // m-blocks done per tile (zeroed by the kernel itself)
  uint8_t* xq; uint8_t* xq_sf;   // packed FC1 input (fp4 mode; sm90_wgmma: decoded bf16, no xq_sf)
  uint8_t* act; uint8_t* act_sf; // packed FC2 input: fp4 codes + scales, or bf16 (sm90_wgmma: decoded)
  float* y;                      // [T * k, y_cols] fp32, already multiplied by the routing weight:
  int y_cols, y_col0, y_ncols;   // FC2 output columns [y_col0, y_col0 + y_ncols) of this FC2 launch
                                 // and combine, y's row stride y_cols (all H, 0, H but in the
                                 // dynamic schedule's column chunks: plan_fc2_chunks)
  // device
  int sm_count;  // of the device the call runs on (c_api.cpp caches it): the work-queue grid's size
  DeviceSmem smem;  // its shared-memory limits (cached likewise): spread_smem
};

// An FC2 launch's items cover its column chunk of output rows [y_col0, y_col0 + y_ncols):
// m-blocks [fc2_chunk_mblock0, + fc2_chunk_mblocks) of item_rows rows each (y_col0 is a multiple
// of item_rows: plan_fc2_chunks; the last m-block may end past H, cut by the kernels' row checks).
MOE12X_HD inline int fc2_chunk_mblock0(const MoeParams& p, int item_rows) { return p.y_col0 / item_rows; }
MOE12X_HD inline int fc2_chunk_mblocks(const MoeParams& p, int item_rows) {
  return (p.y_ncols + item_rows - 1) / item_rows;
}

// Index of an input scale for local expert el given how many values the caller passed.
MOE12X_HD inline int input_scale_index(int count, int el, int e_local, int offset) {
  return count == 1 ? 0 : (count == e_local ? el : el + offset);
}

}  // namespace moe12x
