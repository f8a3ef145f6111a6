/*
 * moe12x_example.c - a plain C99 user of the moe12x C ABI.
 *
 * Build against an installed moe12x (see examples/CMakeLists.txt), e.g. the pymoe package folder:
 *   cmake -S examples -B build-example -DMOE12X_ROOT="$(python -c 'import pymoe,os;print(os.path.dirname(pymoe.get_library()))')"
 *   cmake --build build-example && ./build-example/moe12x_example
 *
 * Without a GPU it shows the shape queries, the clean "no device" statuses and the error paths.
 * With a GPU it prepares random NVFP4 weights, runs one layer call and checks the output.
 * Exit code 0 when every status is the expected one.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <moe12x/moe12x.h>

#define E 8
#define TOP_K 2
#define H 256
#define I 128
#define MAX_TOKENS 16

static int g_failures = 0;

/* Prints "<label>: <STATUS NAME> (<last error>)" and checks it against the expected status. */
static moe12x_status_t report(const char* label, moe12x_status_t got, moe12x_status_t want) {
  const char* detail = moe12x_get_last_error();
  printf("%-34s %s", label, moe12x_status_string(got));
  if (detail && detail[0]) printf(" (%s)", detail);
  if (got != want) {
    printf("  <-- UNEXPECTED, wanted %s", moe12x_status_string(want));
    g_failures++;
  } else if (got != MOE12X_SUCCESS && !(detail && detail[0])) {
    printf("  <-- UNEXPECTED: empty moe12x_get_last_error()");
    g_failures++;
  }
  printf("\n");
  return got;
}

/* An error path that must fail with one of two statuses, with a message. */
static void report_error2(const char* label, moe12x_status_t got, moe12x_status_t a,
                          moe12x_status_t b) {
  report(label, got, got == b ? b : a);
}

static uint64_t g_rng = 0x9E3779B97F4A7C15ull;
static uint32_t rnd(void) { /* xorshift64* */
  g_rng ^= g_rng >> 12;
  g_rng ^= g_rng << 25;
  g_rng ^= g_rng >> 27;
  return (uint32_t)((g_rng * 0x2545F4914F6CDD1Dull) >> 32);
}
static float rnd_unit(void) { return (float)rnd() / 4294967296.0f * 2.0f - 1.0f; } /* [-1, 1) */

static uint16_t f32_to_bf16(float f) {
  uint32_t u;
  memcpy(&u, &f, sizeof u);
  u += 0x7FFFu + ((u >> 16) & 1u); /* round to nearest even (inputs are finite) */
  return (uint16_t)(u >> 16);
}
static float bf16_to_f32(uint16_t h) {
  uint32_t u = (uint32_t)h << 16;
  float f;
  memcpy(&f, &u, sizeof f);
  return f;
}

static void init_config(moe12x_config_t* cfg) {
  moe12x_config_init(cfg);
  cfg->num_experts = E;
  cfg->num_local_experts = E;
  cfg->local_expert_offset = 0;
  cfg->hidden_size = H;
  cfg->intermediate_size = I;
  cfg->top_k = TOP_K;
  cfg->max_tokens = MAX_TOKENS;
}

/* The deliberate error paths: every one must fail cleanly and say why. */
static void error_paths(void) {
  moe12x_config_t cfg;
  size_t bytes = 0;
  printf("-- error paths (deliberate) --\n");
  report("error: config_check(NULL)", moe12x_config_check(NULL), MOE12X_ERROR_INVALID_ARGUMENT);
  report("error: workspace_size(NULL)", moe12x_workspace_size(NULL, 1, &bytes),
         MOE12X_ERROR_INVALID_ARGUMENT);
  init_config(&cfg);
  cfg.top_k = 0;
  report_error2("error: top_k = 0", moe12x_config_check(&cfg), MOE12X_ERROR_UNSUPPORTED_SHAPE,
                MOE12X_ERROR_INVALID_ARGUMENT);
  init_config(&cfg);
  cfg.hidden_size = 200;
  report("error: hidden_size = 200", moe12x_config_check(&cfg), MOE12X_ERROR_UNSUPPORTED_SHAPE);
  init_config(&cfg);
  cfg.hidden_size = 200;
  report("error: prepared_size(H = 200)", moe12x_prepared_weights_size(&cfg, &bytes),
         MOE12X_ERROR_UNSUPPORTED_SHAPE);
  init_config(&cfg);
  report("error: scale_bytes(k = 17)", moe12x_scale_bytes(4, 17, MOE12X_SCALE_ROW_MAJOR, &bytes),
         MOE12X_ERROR_INVALID_ARGUMENT);
}

/* No GPU: prepare/run must refuse cleanly - NULL pointers are argument errors, well-formed
 * (dummy, never dereferenced) pointers give MOE12X_ERROR_NO_DEVICE. */
static void no_device_paths(const moe12x_config_t* cfg, size_t prepared_bytes, size_t ws_bytes) {
  moe12x_weights_t w;
  moe12x_inputs_t in;
  /* Dummy "device" addresses: 256-byte aligned, never dereferenced without a device. */
  void* dummy = (void*)(uintptr_t)0x10000;
  printf("-- no GPU: calls that need a device --\n");
  memset(&w, 0, sizeof w);
  w.struct_size = sizeof w;
  report("prepare_weights(NULL pointers)", moe12x_prepare_weights(cfg, &w, NULL, prepared_bytes, NULL),
         MOE12X_ERROR_INVALID_ARGUMENT);
  w.w13 = dummy;
  w.w13_scale = dummy;
  w.w13_global_scale = (const float*)dummy;
  w.w2 = dummy;
  w.w2_scale = dummy;
  w.w2_global_scale = (const float*)dummy;
  w.scale_layout = MOE12X_SCALE_ROW_MAJOR;
  w.gate_up_order = MOE12X_UP_GATE;
  report("prepare_weights(dummy pointers)", moe12x_prepare_weights(cfg, &w, dummy, prepared_bytes, NULL),
         MOE12X_ERROR_NO_DEVICE);

  report("run(NULL inputs)", moe12x_run(cfg, dummy, NULL, dummy, ws_bytes, NULL),
         MOE12X_ERROR_INVALID_ARGUMENT);
  memset(&in, 0, sizeof in);
  in.struct_size = sizeof in;
  in.num_tokens = MAX_TOKENS;
  in.x = dummy;
  in.topk_ids = dummy;
  in.ids_dtype = MOE12X_DTYPE_INT32;
  in.topk_weights = dummy;
  in.weights_dtype = MOE12X_DTYPE_FLOAT32;
  in.fc1_input_scale = (const float*)dummy;
  in.fc1_input_scale_count = 1;
  in.fc2_input_scale = (const float*)dummy;
  in.fc2_input_scale_count = 1;
  in.out = dummy;
  report("run(dummy pointers)", moe12x_run(cfg, dummy, &in, dummy, ws_bytes, NULL),
         MOE12X_ERROR_NO_DEVICE);
}

/* ---- GPU path ------------------------------------------------------------------------------ */
typedef struct {
  void* ptr;
  size_t bytes;
} dbuf_t;

static int dalloc(dbuf_t* b, size_t bytes) {
  b->bytes = bytes;
  b->ptr = NULL;
  return report("device_malloc", moe12x_device_malloc(-1, bytes, &b->ptr), MOE12X_SUCCESS) ==
         MOE12X_SUCCESS;
}

static int upload(dbuf_t* b, const void* host, size_t bytes) {
  if (!dalloc(b, bytes)) return 0;
  return report("memcpy host->device", moe12x_memcpy(b->ptr, host, bytes, NULL), MOE12X_SUCCESS) ==
         MOE12X_SUCCESS;
}

static void fill_bytes(uint8_t* p, size_t n, int lo, int hi) {
  size_t i;
  for (i = 0; i < n; ++i) p[i] = (uint8_t)(lo + (int)(rnd() % (uint32_t)(hi - lo + 1)));
}

static int gpu_path(const moe12x_config_t* cfg, size_t prepared_bytes, size_t ws_bytes) {
  const size_t n_w13 = (size_t)E * 2 * I * (H / 2), n_w13_sf = (size_t)E * 2 * I * (H / 16);
  const size_t n_w2 = (size_t)E * H * (I / 2), n_w2_sf = (size_t)E * H * (I / 16);
  const size_t n_x = (size_t)MAX_TOKENS * H, n_r = (size_t)MAX_TOKENS * TOP_K;
  uint8_t *w13 = malloc(n_w13), *w13_sf = malloc(n_w13_sf), *w2 = malloc(n_w2), *w2_sf = malloc(n_w2_sf);
  uint16_t *x = malloc(n_x * 2), *out = malloc(n_x * 2);
  int32_t* ids = malloc(n_r * 4);
  float *wts = malloc(n_r * 4), gs[E], in_scale[2] = {1.0f, 1.0f};
  dbuf_t d_w13, d_w13_sf, d_w13_gs, d_w2, d_w2_sf, d_w2_gs, d_x, d_ids, d_wts, d_s1, d_s2, d_out,
      d_prep, d_ws;
  dbuf_t* all[] = {&d_w13, &d_w13_sf, &d_w13_gs, &d_w2, &d_w2_sf, &d_w2_gs, &d_x, &d_ids,
                   &d_wts, &d_s1, &d_s2, &d_out, &d_prep, &d_ws};
  moe12x_weights_t w;
  moe12x_inputs_t in;
  size_t i;
  int t, j, ok = 0, nan_count = 0, nonzero = 0;
  double checksum = 0.0, abssum = 0.0;
  for (i = 0; i < sizeof all / sizeof all[0]; ++i) memset(all[i], 0, sizeof(dbuf_t));
  if (!w13 || !w13_sf || !w2 || !w2_sf || !x || !out || !ids || !wts) {
    printf("host allocation failed\n");
    goto done;
  }

  /* Canonical weights: any fp4 codes; e4m3 block scales 0x30..0x40 (0.5 .. 2.0); gs 1.0. */
  fill_bytes(w13, n_w13, 0, 255);
  fill_bytes(w2, n_w2, 0, 255);
  fill_bytes(w13_sf, n_w13_sf, 0x30, 0x40);
  fill_bytes(w2_sf, n_w2_sf, 0x30, 0x40);
  for (i = 0; i < E; ++i) gs[i] = 1.0f;
  for (i = 0; i < n_x; ++i) x[i] = f32_to_bf16(rnd_unit());
  for (t = 0; t < MAX_TOKENS; ++t) {
    for (j = 0; j < TOP_K; ++j) {
      int e, dup, k;
      do { /* distinct experts per token */
        e = (int)(rnd() % E);
        dup = 0;
        for (k = 0; k < j; ++k) dup |= ids[t * TOP_K + k] == e;
      } while (dup);
      ids[t * TOP_K + j] = e;
      wts[t * TOP_K + j] = 1.0f / TOP_K;
    }
  }
  for (i = 0; i < n_x; ++i) out[i] = 0x7FC0; /* poison: bf16 NaN */

  printf("-- GPU: prepare + run --\n");
  if (!upload(&d_w13, w13, n_w13) || !upload(&d_w13_sf, w13_sf, n_w13_sf) ||
      !upload(&d_w13_gs, gs, sizeof gs) || !upload(&d_w2, w2, n_w2) ||
      !upload(&d_w2_sf, w2_sf, n_w2_sf) || !upload(&d_w2_gs, gs, sizeof gs) ||
      !upload(&d_x, x, n_x * 2) || !upload(&d_ids, ids, n_r * 4) || !upload(&d_wts, wts, n_r * 4) ||
      !upload(&d_s1, &in_scale[0], 4) || !upload(&d_s2, &in_scale[1], 4) ||
      !upload(&d_out, out, n_x * 2) || !dalloc(&d_prep, prepared_bytes) || !dalloc(&d_ws, ws_bytes))
    goto done;

  memset(&w, 0, sizeof w);
  w.struct_size = sizeof w;
  w.w13 = d_w13.ptr;
  w.w13_scale = d_w13_sf.ptr;
  w.w13_global_scale = (const float*)d_w13_gs.ptr;
  w.w2 = d_w2.ptr;
  w.w2_scale = d_w2_sf.ptr;
  w.w2_global_scale = (const float*)d_w2_gs.ptr;
  w.scale_layout = MOE12X_SCALE_ROW_MAJOR;
  w.gate_up_order = MOE12X_UP_GATE;
  if (report("prepare_weights", moe12x_prepare_weights(cfg, &w, d_prep.ptr, d_prep.bytes, NULL),
             MOE12X_SUCCESS) != MOE12X_SUCCESS)
    goto done;

  memset(&in, 0, sizeof in);
  in.struct_size = sizeof in;
  in.num_tokens = MAX_TOKENS;
  in.x = d_x.ptr;
  in.topk_ids = d_ids.ptr;
  in.ids_dtype = MOE12X_DTYPE_INT32;
  in.topk_weights = d_wts.ptr;
  in.weights_dtype = MOE12X_DTYPE_FLOAT32;
  in.fc1_input_scale = (const float*)d_s1.ptr;
  in.fc1_input_scale_count = 1;
  in.fc2_input_scale = (const float*)d_s2.ptr;
  in.fc2_input_scale_count = 1;
  in.out = d_out.ptr;
  if (report("run", moe12x_run(cfg, d_prep.ptr, &in, d_ws.ptr, d_ws.bytes, NULL), MOE12X_SUCCESS) !=
          MOE12X_SUCCESS ||
      report("memcpy device->host", moe12x_memcpy(out, d_out.ptr, n_x * 2, NULL), MOE12X_SUCCESS) !=
          MOE12X_SUCCESS ||
      report("stream_synchronize", moe12x_stream_synchronize(NULL), MOE12X_SUCCESS) != MOE12X_SUCCESS)
    goto done;

  for (i = 0; i < n_x; ++i) {
    const float v = bf16_to_f32(out[i]);
    if (isnan(v) || isinf(v)) {
      nan_count++;
      continue;
    }
    checksum += v;
    abssum += fabs(v);
    nonzero += v != 0.0f;
  }
  printf("output: %d x %d bf16, checksum %.6e, sum|out| %.6e, %d non-zero, %d NaN/Inf\n",
         MAX_TOKENS, H, checksum, abssum, nonzero, nan_count);
  if (nan_count) {
    printf("FAILED: output has NaN/Inf (or unwritten poisoned) elements\n");
    goto done;
  }
  if (!nonzero) {
    printf("FAILED: output is all zeros\n");
    goto done;
  }
  ok = 1;
  {
    /* MOE12X_EXAMPLE_DUMP=<dir>: write inputs and output as raw files so a test can run the same
     * call from Python and compare bitwise. */
    const char* dir = getenv("MOE12X_EXAMPLE_DUMP");
    if (dir) {
      const struct { const char* name; const void* p; size_t n; } f[] = {
          {"w13", w13, n_w13}, {"w13_sf", w13_sf, n_w13_sf}, {"w2", w2, n_w2}, {"w2_sf", w2_sf, n_w2_sf},
          {"x", x, n_x * 2}, {"ids", ids, n_r * 4}, {"wts", wts, n_r * 4}, {"out", out, n_x * 2}};
      char path[4096];
      for (i = 0; i < sizeof f / sizeof f[0]; ++i) {
        FILE* fp;
        snprintf(path, sizeof path, "%s/%s.bin", dir, f[i].name);
        fp = fopen(path, "wb");
        if (!fp || fwrite(f[i].p, 1, f[i].n, fp) != f[i].n) {
          printf("FAILED: cannot write %s\n", path);
          ok = 0;
        }
        if (fp) fclose(fp);
      }
    }
  }

done:
  for (i = 0; i < sizeof all / sizeof all[0]; ++i)
    if (all[i]->ptr) moe12x_device_free(-1, all[i]->ptr);
  free(w13);
  free(w13_sf);
  free(w2);
  free(w2_sf);
  free(x);
  free(out);
  free(ids);
  free(wts);
  return ok;
}

int main(void) {
  moe12x_config_t cfg;
  size_t prepared_bytes = 0, ws_bytes = 0, sf_bytes = 0;
  int count = -1;

  printf("moe12x header version %d.%d.%d (%d), library version %d\n", MOE12X_VERSION_MAJOR,
         MOE12X_VERSION_MINOR, MOE12X_VERSION_PATCH, MOE12X_VERSION, moe12x_get_version());
  if (moe12x_get_version() / 100 != MOE12X_VERSION / 100) {
    printf("UNEXPECTED: library major.minor differs from the header's\n");
    g_failures++;
  }

  init_config(&cfg);
  printf("config: E=%d top_k=%d H=%d I=%d max_tokens=%lld\n", cfg.num_experts, cfg.top_k,
         cfg.hidden_size, cfg.intermediate_size, (long long)cfg.max_tokens);
  printf("-- queries (no GPU needed) --\n");
  report("config_check", moe12x_config_check(&cfg), MOE12X_SUCCESS);
  report("prepared_weights_size", moe12x_prepared_weights_size(&cfg, &prepared_bytes), MOE12X_SUCCESS);
  report("workspace_size", moe12x_workspace_size(&cfg, cfg.max_tokens, &ws_bytes), MOE12X_SUCCESS);
  report("scale_bytes(swizzled)", moe12x_scale_bytes(2 * I, H, MOE12X_SCALE_SWIZZLED_128x4, &sf_bytes),
         MOE12X_SUCCESS);
  printf("prepared_bytes = %zu, workspace_bytes = %zu, w13 swizzled scale bytes/expert = %zu\n",
         prepared_bytes, ws_bytes, sf_bytes);
  if (prepared_bytes == 0 || ws_bytes == 0) {
    printf("UNEXPECTED: zero buffer size\n");
    g_failures++;
  }

  error_paths();

  printf("-- devices --\n");
  report("device_count", moe12x_device_count(&count), MOE12X_SUCCESS);
  printf("device_count = %d\n", count);

  if (count <= 0) {
    no_device_paths(&cfg, prepared_bytes, ws_bytes);
    printf("no CUDA device: skipped the GPU run\n");
  } else if (!gpu_path(&cfg, prepared_bytes, ws_bytes)) {
    g_failures++;
  }

  if (g_failures) {
    printf("RESULT: FAILED (%d unexpected)\n", g_failures);
    return 1;
  }
  printf("RESULT: OK\n");
  return 0;
}
