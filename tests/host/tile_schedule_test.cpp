// Host checks of the routed-tile arithmetic and the workspace layout (common/params.hpp,
// common/token_maps.hpp), run by tests/test_tile_schedule.py:
// - expert_tile_count / expert_tile_rows (the route kernel's tile list, load_tile): the tiles of
//   an expert cover its rows once, in order; only the last may exceed block_n (by <= extra); the
//   extra never adds a tile;
// - workspace_layout: buffers in bounds and disjoint, the decoded layout (SM90 wgmma kernel)
//   also holding the NVFP4 one, the packed FC1 input inside y, sizes non-decreasing in T;
// - token_map_index: one TMA map per instantiated tile width;
// - spread_smem: the shared memory that caps a small grouped launch's CTAs per SM;
// - choose_warp_tiles (instantiations/dispatch.hpp): which decode GEMMs get one m16 tile per warp
//   on a 132-SM H200 for the compass shapes (the choices measured in bench/NOTES.md v28), never
//   one again once two were chosen as pairs grow, and the item rows the half-block FC1 epilogue
//   relies on (a warp pair holds one 16-feature block);
// - local_route_row (routing/local_route.hpp, the persistent decode kernel's per-CTA routing):
//   rows are the local pairs stably sorted by expert, tiles each expert's rows in runs of <= 16,
//   for random routings with invalid ids, duplicate ids and one hot expert, up to 256 pairs.
#include <algorithm>
#include <cstdio>
#include <random>
#include <vector>

#include "common/params.hpp"
#include "common/token_maps.hpp"
#include "instantiations/dispatch.hpp"
#include "routing/local_route.hpp"
#include "scheduler/cta_spread.hpp"

using namespace moe12x;

static int failures = 0;
#define CHECK(cond, ...)                          \
  do {                                            \
    if (!(cond)) {                                \
      if (++failures <= 20) {                     \
        std::printf("FAIL %s: ", #cond);          \
        std::printf(__VA_ARGS__);                 \
        std::printf("\n");                        \
      }                                           \
    }                                             \
  } while (0)

static void check_tiles() {
  const int cases[][2] = {{64, 0}, {128, 0}, {128, 32}, {16, 0}, {32, 0}};
  for (const auto& bc : cases) {
    const int bn = bc[0], extra = bc[1];
    for (int c = 0; c <= 3000; ++c) {
      const int tiles = expert_tile_count(c, bn, extra);
      CHECK(tiles <= (c + bn - 1) / bn, "c=%d bn=%d extra=%d: %d tiles", c, bn, extra, tiles);
      int covered = 0;
      for (int t = 0; t < tiles; ++t) {
        const int row0 = t * bn;  // publish_tiles
        CHECK(row0 == covered, "c=%d bn=%d extra=%d tile %d starts at %d, covered %d", c, bn, extra, t, row0, covered);
        const int n = expert_tile_rows(c - row0, bn, extra);
        const bool last = t == tiles - 1;
        CHECK(n >= 1 && n <= bn + extra, "c=%d tile %d: %d rows", c, t, n);
        CHECK(last || n == bn, "c=%d bn=%d extra=%d: tile %d of %d has %d rows", c, bn, extra, t, tiles, n);
        covered += n;
      }
      CHECK(covered == c, "c=%d bn=%d extra=%d: tiles cover %d rows", c, bn, extra, covered);
    }
  }
}

static bool disjoint(size_t a, size_t an, size_t b, size_t bn) { return a + an <= b || b + bn <= a; }

static void check_workspace() {
  const int shapes[][4] = {{256, 8, 7168, 2048}, {128, 8, 2048, 768}, {128, 4, 2880, 2880}, {8, 2, 128, 64},
                           {64, 1, 64, 64}, {64, 8, 2304, 768}, {32, 4, 6912, 256}, {16, 8, 768, 128}};
  for (const auto& s : shapes) {
    const int e = s[0], k = s[1], H = s[2], I = s[3];
    for (const bool fp4 : {true, false})
      for (const bool decoded : {false, true})
        for (const bool full_y : {false, true}) {
          size_t prev = 0;
          for (int64_t T = 1; T <= 20000; T = T < 64 ? T + 1 : T * 5 / 4) {
            const WorkspaceLayout w = workspace_layout(T, k, e, H, I, fp4, decoded, full_y);
            const size_t P = size_t(w.pairs);
            CHECK(w.bytes >= prev, "T=%lld: %zu bytes after %zu", (long long)T, w.bytes, prev);
            prev = w.bytes;
            // y: all H columns (full_y, small calls) or the column chunks of every FC2 kernel
            const int cols = fc2_min_chunk_cols(w.pairs, H, full_y);
            CHECK(cols == H || (!full_y && P > size_t(kFc2ChunkPairs) && cols % 128 == 0 && 2 * cols >= H),
                  "T=%lld full_y=%d: %d chunk columns", (long long)T, int(full_y), cols);
            CHECK(w.y + P * cols * 4 <= w.bytes && w.y + fc2_y_bytes(w.pairs, H, full_y) <= w.bytes, "T=%lld: y past the end",
                  (long long)T);
            if (!full_y && P > size_t(2 * kFc2ChunkPairs) && H >= 768)  // the prefill bound's part
              CHECK(fc2_y_bytes(w.pairs, H, full_y) <= P * (H / 2 + 384) * 4, "T=%lld: y of %zu bytes",
                    (long long)T, fc2_y_bytes(w.pairs, H, full_y));
            for (const int item_rows : {64, 128, 256, 384}) {
              const Fc2Chunks c = plan_fc2_chunks(w.pairs, H, w.bytes - w.y, item_rows, 0);
              CHECK(c.count >= 1 && (c.count == 1 || c.cols % item_rows == 0), "T=%lld rows=%d: %d chunks of %d",
                    (long long)T, item_rows, c.count, c.cols);
              CHECK(P * size_t(c.cols) * 4 <= w.bytes - w.y && (c.count - 1) * c.cols < H && c.count * c.cols >= H,
                    "T=%lld rows=%d: chunks of %d x %d", (long long)T, item_rows, c.count, c.cols);
              CHECK(c.count <= (H + item_rows - 1) / item_rows && (fc2_y_bytes(w.pairs, H, full_y) >= P * H * 4 ? c.count == 1 : c.count <= 2),
                    "T=%lld rows=%d: %d chunks", (long long)T, item_rows, c.count);
            }
            const size_t act_bytes = fp4 && !decoded ? P * I / 2 : P * I * 2;
            CHECK(w.act + act_bytes <= w.y, "T=%lld: act overlaps y", (long long)T);
            CHECK(disjoint(w.act, act_bytes, w.pair_row, P * 4) && w.pair_row + P * 4 <= w.act, "T=%lld: act / routing",
                  (long long)T);
            const size_t sync_bytes = sizeof(int) * (1 + kDecodeMaxPairs);  // the decode kernel's counters
            CHECK(w.decode_sync >= w.pair_row + P * 4 && w.decode_sync + sync_bytes <= w.act && w.decode_sync + sync_bytes <= w.y,
                  "T=%lld: decode counters", (long long)T);
            if (fp4) {
              // the NVFP4 codes and scales (any kernel) and, when decoded, the bf16 rows
              CHECK(w.act_sf >= w.act + P * I / 2 && w.act_sf + P * I / 16 <= w.y, "T=%lld decoded=%d: act_sf",
                    (long long)T, int(decoded));
              CHECK(w.xq == w.y && w.xq_sf >= w.xq + P * H / 2 && w.xq_sf + P * H / 16 <= w.bytes,
                    "T=%lld: xq codes / scales inside y", (long long)T);
              if (decoded) CHECK(w.xq + P * H * 2 <= w.bytes, "T=%lld: decoded xq inside y", (long long)T);
            }
          }
        }
  }
}

// Column chunks: balanced, on item boundaries, as wide as the bytes allow, and a forced width.
static void check_fc2_chunks() {
  CHECK(plan_fc2_chunks(1000, 2048, size_t(1000) * 2048 * 4, 256, 0).count == 1, "room for all columns: one chunk");
  const Fc2Chunks a = plan_fc2_chunks(1000, 2048, size_t(1000) * 1152 * 4, 384, 0);  // qwen3-30b, 3 consumers
  CHECK(a.count == 2 && a.cols == 1152, "qwen3-30b 384-row items: %d x %d", a.count, a.cols);
  const Fc2Chunks a2 = plan_fc2_chunks(1000, 2048, size_t(1000) * 1000 * 4, 384, 0);  // 768 fit: three
  CHECK(a2.count == 3 && a2.cols == 768, "qwen3-30b, 1000 columns' bytes: %d x %d", a2.count, a2.cols);
  const Fc2Chunks b = plan_fc2_chunks(1000, 2880, size_t(1000) * 1536 * 4, 256, 0);  // gpt-oss
  CHECK(b.count == 2 && b.cols == 1536, "gpt-oss 256-row items: %d x %d", b.count, b.cols);
  const Fc2Chunks c = plan_fc2_chunks(1000, 7168, size_t(1000) * 7168 * 4, 128, 1000);  // forced
  CHECK(c.count == 7 && c.cols == 1024, "forced 1000 -> %d x %d", c.count, c.cols);
  CHECK(plan_fc2_chunks(1000, 7168, size_t(1000) * 100 * 4, 128, 0).count == 0, "too small: no plan");
  for (int H = 64; H <= 8192; H += 64)
    for (const int rows : {64, 128, 256, 384})
      for (int cap = rows; cap < H; cap += rows) {
        const Fc2Chunks q = plan_fc2_chunks(7, H, size_t(7) * cap * 4, rows, 0);
        CHECK(q.cols <= cap && q.cols % rows == 0 && q.count == (H + cap - 1) / cap && (q.count - 1) * q.cols < H &&
                  q.count * q.cols >= H,
              "H=%d rows=%d cap=%d: %d x %d", H, rows, cap, q.count, q.cols);
        // the launches' m-blocks (as c_api.cpp sets y_col0 / y_ncols) write each output row once,
        // inside their chunk's columns of y
        MoeParams p{};
        p.hidden = H, p.y_cols = q.cols;
        int next = 0;
        for (int c = 0; c < q.count; ++c) {
          p.y_col0 = c * q.cols, p.y_ncols = q.cols < H - p.y_col0 ? q.cols : H - p.y_col0;
          const int mb0 = fc2_chunk_mblock0(p, rows), n = fc2_chunk_mblocks(p, rows);
          CHECK(mb0 * rows == p.y_col0 && n >= 1, "H=%d rows=%d chunk %d: m-blocks from %d", H, rows, c, mb0);
          for (int mb = mb0; mb < mb0 + n; ++mb)
            for (int h = mb * rows; h < (mb + 1) * rows && h < H; ++h) {
              if (h != next || h - p.y_col0 >= p.y_cols || h - p.y_col0 >= p.y_ncols) {
                CHECK(false, "H=%d rows=%d cap=%d: row %d (expected %d) in chunk %d", H, rows, cap, h, next, c);
                goto next_cap;
              }
              ++next;
            }
        }
        CHECK(next == H, "H=%d rows=%d cap=%d: %d rows written", H, rows, cap, next);
      next_cap:;
      }
}

static void check_token_maps() {
  for (int i = 0; i < kTokenMaps; ++i) {
    const int nb = kTokenMapWidths[i];
    CHECK(token_map_index(nb) == i, "width %d -> map %d", nb, token_map_index(nb));
    CHECK(nb <= kTokenMapMaxNB && 8 * nb * (kTokenMapMaxNB / nb) <= 8 * kTokenMapMaxNB, "width %d: box fits a buffer", nb);
    CHECK(8 * nb <= 256 && kTokenMapMaxNB / nb <= 256, "width %d: TMA box dims <= 256", nb);
  }
}

static void check_warp_tiles() {
  struct Shape { const char* name; int e, k, H, I; int fc1_t1, fc2_t1; };
  // measured on the H200 (132 SMs): one tile per warp helps at T = 1 where the grid has < ~6
  // two-tile warps per SM (qwen3-30b, gpt-oss, qwen3-235b FC1), hurts deepseek-v3
  const Shape shapes[] = {{"qwen3-30b-a3b", 128, 8, 2048, 768, 1, 1},
                          {"qwen3-235b-a22b", 128, 8, 4096, 1536, 1, 2},
                          {"gpt-oss-120b", 128, 4, 2880, 2880, 1, 1},
                          {"deepseek-v3", 256, 8, 7168, 2048, 2, 2}};
  for (const Shape& s : shapes) {
    CHECK(choose_warp_tiles(s.k, s.e, 2 * s.I, 132) == s.fc1_t1, "%s T=1 FC1", s.name);
    CHECK(choose_warp_tiles(s.k, s.e, s.H, 132) == s.fc2_t1, "%s T=1 FC2", s.name);
    for (const int rows : {2 * s.I, s.H}) {
      int prev = 1;
      for (int64_t T = 1; T <= 4096; ++T) {
        const int wt = choose_warp_tiles(T * s.k, s.e, rows, 132);
        CHECK(wt == 1 || wt == 2, "%s T=%lld: %d tiles", s.name, (long long)T, wt);
        CHECK(wt >= prev, "%s rows=%d T=%lld: one tile per warp again after two", s.name, rows, (long long)T);
        prev = wt;
      }
      CHECK(choose_warp_tiles(4 * s.k, s.e, rows, 132) == 2, "%s rows=%d: two tiles from T = 4", s.name, rows);
    }
  }
  // One-tile items are 64 rows: FC1's 2I rows (I % 64 == 0, c_api.cpp) fill every item, and warp w
  // of an item starts at feature (64 m + 16 w) / 2: even warps at a 16-feature block, odd ones 8 in.
  for (int I = 64; I <= 4096; I += 64) {
    CHECK((2 * I) % 64 == 0, "I=%d", I);
    for (int m = 0; m < (2 * I) / 64; ++m)
      for (int w = 0; w < 4; ++w) {
        const int f0 = (64 * m + 16 * w) / 2;
        CHECK(f0 % 16 == (w & 1) * 8, "I=%d m=%d w=%d: first feature %d", I, m, w, f0);
      }
  }
}

// choose_act_prefetch: the 16-row decode kernel stages FP4 rows a chunk ahead from a mean of 5
// routed rows per active expert (bench/NOTES.md v36 measured +4-8 % at a mean of 8, none at 4,
// losses at 1): off at T <= 32 on every compass shape, on at the mean-8 points measured, and
// only where the two-tile kernel runs (the one-tile kernel has no prefetching instantiation).
static void check_act_prefetch() {
  struct Shape { const char* name; int e, k, H, I; int first_T; };
  const Shape shapes[] = {{"qwen3-30b-a3b", 128, 8, 2048, 768, 65},
                          {"qwen3-235b-a22b", 128, 8, 4096, 1536, 65},
                          {"gpt-oss-120b", 128, 4, 2880, 2880, 129},
                          {"deepseek-v3", 256, 8, 7168, 2048, 129}};
  for (const Shape& s : shapes) {
    for (int64_t T = 1; T <= 4096; ++T) {
      const int64_t pairs = T * s.k;
      if (choose_grouped_block_n(pairs, s.e) != 16) continue;  // the 16-row decode kernel only
      const bool on = choose_act_prefetch(pairs, s.e);
      CHECK(on == (T >= s.first_T), "%s T=%lld: prefetch %d", s.name, (long long)T, int(on));
      if (on) {
        CHECK(choose_warp_tiles(pairs, s.e, 2 * s.I, 132) == 2 && choose_warp_tiles(pairs, s.e, s.H, 132) == 2,
              "%s T=%lld: prefetch with one-tile warps", s.name, (long long)T);
      }
    }
  }
}

// spread_smem (scheduler/cta_spread.hpp) with an H100 / H200's limits: for every grid of fewer CTAs
// than max_per_sm x SMs, cap = ceil(CTAs / SMs) CTAs fit an SM (even beside 1 KB of static shared
// memory) and cap + 1 do not; never below the kernel's own size nor above the opt-in limit or
// spread_smem_max (the kernel's attribute); unchanged once the CTAs need max_per_sm per SM.
static void check_spread() {
  const DeviceSmem d{233472, 232448, 1024};
  const int sms = 132;
  for (const size_t smem : {size_t(36 * 1024), size_t(55296), size_t(56320)})
    for (const int max_per_sm : {4, 6})
      for (int64_t ctas = 1; ctas <= 8 * sms; ++ctas) {
        const size_t s = spread_smem(smem, ctas, max_per_sm, sms, d);
        const int64_t cap = (ctas + sms - 1) / sms;
        if (cap >= max_per_sm) {
          CHECK(s == smem, "ctas=%lld: %zu bytes where the CTAs cover the SMs", (long long)ctas, s);
          continue;
        }
        CHECK(s >= smem && s <= spread_smem_max(smem, d) && s <= size_t(d.optin), "ctas=%lld: %zu bytes", (long long)ctas, s);
        if (s == smem) continue;  // the kernel already fits no more than cap per SM
        CHECK(cap * (s + 1024 + d.reserved) <= size_t(d.per_sm), "ctas=%lld: %lld CTAs of %zu bytes do not fit",
              (long long)ctas, (long long)cap, s);
        CHECK((cap + 1) * (s + d.reserved) > size_t(d.per_sm), "ctas=%lld: %lld CTAs of %zu bytes fit",
              (long long)ctas, (long long)(cap + 1), s);
      }
}

static void check_local_route() {
  std::mt19937 rng(7);
  for (int iter = 0; iter < 4000; ++iter) {
    const int pairs = 1 + int(rng() % kDecodeMaxPairs);
    const int e_local = 1 + int(rng() % 300);
    const int kind = iter % 4;  // uniform, many invalid, duplicates, one hot expert
    std::vector<int> el(pairs);
    for (int& e : el) {
      const unsigned r = rng();
      e = kind == 1 && r % 3 == 0 ? -1 : kind == 2 ? int(r % 5) % e_local : kind == 3 && r % 4 != 0 ? e_local / 2 : int(r % e_local);
      if (kind != 1 && r % 17 == 0) e = -1;
    }
    std::vector<int> order;  // expected rows: local pairs stably sorted by expert
    for (int i = 0; i < pairs; ++i)
      if (el[i] >= 0) order.push_back(i);
    std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return el[a] < el[b]; });
    std::vector<int> row_pair(pairs, -1), head(pairs, -2);
    for (int i = 0; i < pairs; ++i) {
      if (el[i] < 0) continue;
      int h;
      const int row = local_route_row(el.data(), pairs, i, &h);
      CHECK(row >= 0 && row < int(order.size()), "iter %d pair %d: row %d of %zu", iter, i, row, order.size());
      if (row < 0 || row >= int(order.size())) continue;
      CHECK(row_pair[row] == -1, "iter %d: row %d twice", iter, row);
      row_pair[row] = i;
      head[row] = h;
    }
    int covered = 0;
    for (int r = 0; r < int(order.size()); ++r) {
      CHECK(row_pair[r] == order[r], "iter %d row %d: pair %d, expected %d", iter, r, row_pair[r], order[r]);
      if (head[r] < 0) continue;
      const int e = el[order[r]];
      const int n = local_tile_rows(head[r]);
      CHECK(local_tile_expert(head[r]) == e && local_tile_row0(head[r]) == r, "iter %d row %d: tile word", iter, r);
      CHECK(r == covered, "iter %d: tile at row %d, rows covered %d", iter, r, covered);
      CHECK(n >= 1 && n <= kDecodeTileRows && r + n <= int(order.size()), "iter %d row %d: %d rows", iter, r, n);
      for (int q = r; q < r + n && q < int(order.size()); ++q) CHECK(el[order[q]] == e, "iter %d: tile mixes experts", iter);
      CHECK(r + n == int(order.size()) || n == kDecodeTileRows || el[order[r + n]] != e, "iter %d row %d: short inner tile", iter, r);
      covered = r + n;
    }
    CHECK(covered == int(order.size()), "iter %d: tiles cover %d of %zu rows", iter, covered, order.size());
  }
}

int main() {
  check_tiles();
  check_local_route();
  check_spread();
  check_workspace();
  check_fc2_chunks();
  check_token_maps();
  check_warp_tiles();
  check_act_prefetch();
  if (failures) {
    std::printf("%d check(s) failed\n", failures);
    return 1;
  }
  std::printf("all checks passed\n");
  return 0;
}
