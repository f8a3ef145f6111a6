// The arithmetic of the persistent decode kernel's per-CTA routing (routing/route_local.cuh), host
// and device: host-checked against a sort in tests/host/tile_schedule_test.cpp.
#pragma once
#include "common/params.hpp"

namespace moe12x {

// A tile packed in one word: expert (bits 12..31), first row (4..11), rows - 1 (0..3).
static_assert(kDecodeMaxPairs <= 256 && kDecodeTileRows == 16, "rows and tile sizes fit their bit fields");
MOE12X_HD inline int pack_local_tile(int expert, int row0, int nrows) { return (expert << 12) | (row0 << 4) | (nrows - 1); }
MOE12X_HD inline int local_tile_expert(int v) { return v >> 12; }
MOE12X_HD inline int local_tile_row0(int v) { return (v >> 4) & 255; }
MOE12X_HD inline int local_tile_rows(int v) { return (v & 15) + 1; }

// The routed row of pair i (el[i] >= 0) and, if it opens a tile, the tile's packed word (else -1),
// given every pair's local expert (-1: not local): the count of local pairs with a smaller expert
// plus the count of earlier pairs with its own, so rows run by (expert, pair index).
MOE12X_HD inline int local_route_row(const int* el, int pairs, int i, int* head) {
  const int e = el[i];
  int less = 0, before = 0, same = 0;
  for (int j = 0; j < pairs; ++j) {
    const int f = el[j];
    less += unsigned(f) < unsigned(e);  // -1 (not local) compares above every expert
    same += f == e;
    before += (f == e) & (j < i);
  }
  const int row = less + before;
  const int left = same - before;
  *head = before % kDecodeTileRows == 0 ? pack_local_tile(e, row, left < kDecodeTileRows ? left : kDecodeTileRows) : -1;
  return row;
}

}  // namespace moe12x
