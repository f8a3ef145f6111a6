// The timeline record of kernel/ws_trace.cuh (host-safe: the C API allocates and reads them).
#pragma once

namespace moe12x {

struct WsTraceRecord {
  unsigned long long start, first_full, main_end[2], epi_end[2];
  int smid, nrows, expert, mblock;
};
constexpr int kWsTraceRecords = 1 << 16;  // per GEMM; later items are not recorded

}  // namespace moe12x
