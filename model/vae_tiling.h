// Planning of a budgeted VAE decode: how many bytes the chunked causal decode
// of a latent needs, and which overlapping spatial tiles keep it inside a byte
// budget. Pure arithmetic over shapes (no LibTorch); any thread.
//
//   VaeDecodePlan p = plan_vae_decode(cfg, {21, 90, 160}, 16ull << 30, {});
//   if (p.tiled) for (auto [y0, y1] : p.rows) for (auto [x0, x1] : p.cols) ...  // latent spans
//
// See docs/vae-tiling.md and Note [VAE decode memory model] in vae_tiling.cpp.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "model/vae_config.h"

namespace wand::model {

struct VaeLatentShape {
  int64_t frames = 1;  // latent frames t (decoded frames 1 + 4 (t - 1))
  int64_t height = 1;  // latent h
  int64_t width = 1;   // latent w
};

struct VaePlanOptions {
  int64_t elem_bytes = 4;        // compute dtype size (fp32: 4, bf16: 2)
  int64_t output_elem_bytes = 4;  // the decoded video on the same device (0: kept elsewhere)
  int64_t weight_bytes = 0;      // resident decoder weights, counted against the budget
  int64_t overlap = -1;          // latent units between neighbour tiles; -1: 64 pixels
  int64_t min_tile = 0;          // smallest tile side in latents; 0: 2 * overlap + 2
  double safety = 0.10;          // fraction of the budget kept free (allocator, workspaces)
  bool cpu_convs = false;        // decoding on the CPU (see vae_decode_working_bytes)
  double working_factor = 1.0;   // measured/modelled working set on the device (CUDA: cuDNN workspaces)
};

struct VaeDecodePlan {
  bool tiled = false;
  bool fits = true;               // false: even the smallest tile exceeds the budget
  int64_t tile_h = 0, tile_w = 0;  // latent units (the whole latent when untiled)
  int64_t overlap = 0;            // latent units
  std::vector<std::pair<int64_t, int64_t>> rows, cols;  // latent spans [begin, end)
  int64_t est_untiled_bytes = 0;  // predicted peak of the untiled decode (working set only)
  int64_t est_tile_bytes = 0;     // predicted peak of one tile's decode (working set only)
  int64_t est_total_bytes = 0;    // tile + output + weights: what the budget is checked against
  std::string describe() const;   // "tiled 2x3 tiles=48x64 overlap=8 est=12.1 GiB"
};

// Predicted peak working memory (bytes) of the chunked causal decode of a
// `h` x `w` latent (feature caches + the largest transient set), excluding
// weights and the output video. Independent of the number of latent frames.
// cpu_convs: the CPU conv path (Note [CPU conv3d] in vae.cpp) and its extra copies.
int64_t vae_decode_working_bytes(const VaeConfig& cfg, int64_t h, int64_t w, int64_t elem_bytes,
                                 bool cpu_convs = false);
// Bytes of the decoded video [3, 1 + 4 (t - 1), h * s, w * s].
int64_t vae_decode_output_bytes(const VaeConfig& cfg, const VaeLatentShape& z, int64_t elem_bytes);

// Spans [begin, end) covering [0, total) with tiles of at most `tile` and
// neighbour overlaps of at least `overlap` (starts spread evenly; the first
// starts at 0, the last ends at total). One span when tile >= total.
std::vector<std::pair<int64_t, int64_t>> vae_tile_spans(int64_t total, int64_t tile, int64_t overlap);

// Untiled when it fits `budget_bytes` (exact official numerics); otherwise the
// largest square-ish tiles whose predicted peak fits. budget_bytes 0: untiled.
VaeDecodePlan plan_vae_decode(const VaeConfig& cfg, const VaeLatentShape& z, int64_t budget_bytes,
                              const VaePlanOptions& opt = {});
// A plan with a forced tile size (latent units); 0 means the whole extent.
VaeDecodePlan fixed_vae_decode_plan(const VaeConfig& cfg, const VaeLatentShape& z, int64_t tile_h,
                                    int64_t tile_w, int64_t overlap, const VaePlanOptions& opt = {});

}  // namespace wand::model
