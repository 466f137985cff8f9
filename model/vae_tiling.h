// Planning of a budgeted VAE decode: how many bytes the chunked causal decode
// of a latent needs, and which overlapping spatial tiles keep it inside a byte
// budget. Pure arithmetic over shapes (no LibTorch); any thread.
//
//   VaeDecodePlan p = plan_vae_decode(cfg, {21, 90, 160}, 16ull << 30, {});
//   if (p.tiled) for (auto [y0, y1] : p.rows) for (auto [x0, x1] : p.cols) ...  // latent spans
//
//   VaeEncodePlan e = plan_vae_encode(cfg, {81, 720, 1280}, 8ull << 30, {});  // chunked or frame-streamed
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
  int64_t elem_bytes = 4;        // 4: fp32; 2: the bf16 mode (Note [VAE bf16 mode] in vae.cpp, fp32 between convs)
  int64_t output_elem_bytes = 4;  // the decoded video on the same device (0: kept elsewhere)
  int64_t weight_bytes = 0;      // resident decoder weights, counted against the budget
  int64_t overlap = -1;          // latent units between neighbour tiles; -1: 64 pixels
  int64_t min_tile = 0;          // smallest tile side in latents; 0: 2 * overlap + 2
  double safety = 0.10;          // fraction of the budget kept free (allocator, workspaces)
  bool cpu_convs = false;        // decoding on the CPU (see vae_decode_working_bytes)
  double working_factor = 1.0;   // measured/modelled working set on the device (CUDA: cuDNN workspaces)
  int64_t input_elem_bytes = 0;  // encode: the whole video on the same device (4: fp32); 0: on the host
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

// --- Encode (Note [VAE encode memory model] in vae_tiling.cpp) ---

struct VaeVideoShape {
  int64_t frames = 1;  // pixel frames, 1 + 4k
  int64_t height = 8;  // pixels, multiples of the spatial stride (8 / 16)
  int64_t width = 8;
};

struct VaeEncodePlan {
  bool streamed = false;           // frame-streamed (Note [VAE frame-streamed encode] in vae.cpp)
  bool fits = true;                // false: est_total_bytes exceeds the usable budget
  // Spatial tiles (approximate, Note [VAE encode tiles] in vae.cpp; only when
  // the whole frame does not fit even frame-streamed). Latent units.
  bool tiled = false;
  int64_t tile_h = 0, tile_w = 0;  // the whole latent when untiled
  int64_t overlap = 0;
  std::vector<std::pair<int64_t, int64_t>> rows, cols;  // latent spans [begin, end)
  int64_t est_chunked_bytes = 0;   // predicted working peak of the official chunked encode
  int64_t est_streamed_bytes = 0;  // the same, frame-streamed (both incl. chunk inputs and the latent)
  int64_t est_tile_bytes = 0;      // working peak of one tile's encode (= est_streamed_bytes untiled)
  int64_t est_total_bytes = 0;     // the chosen schedule (or tile) + weights + the video when on the device
  int64_t usable_bytes = 0;        // budget less the safety fraction (0: no budget)
  std::string describe() const;    // "frame-streamed est_total=6.10 GiB est_chunked=... est_streamed=..."
};

// Predicted peak working memory (bytes) of the encode of a video of this shape:
// caches, the largest transient set, the chunk inputs on the device and the
// latent; not the weights, not the whole video. elem_bytes 4 (fp32) or 2 (bf16 mode).
int64_t vae_encode_working_bytes(const VaeConfig& cfg, const VaeVideoShape& v, int64_t elem_bytes, bool streamed,
                                 bool cpu_convs = false);
// Bytes of the video [3, frames, height, width] at elem_bytes (0: 0).
int64_t vae_encode_input_bytes(const VaeVideoShape& v, int64_t elem_bytes);
// The chunked (official) encode when it fits the budget, else frame-streamed
// (exact), else frame-streamed spatial tiles (approximate; the fewest whose
// predicted peak fits; opt.overlap latents between them, -1: 16 for 2.1, 8 for
// 2.2 = 128 pixels), else fits = false. budget_bytes 0: chunked.
VaeEncodePlan plan_vae_encode(const VaeConfig& cfg, const VaeVideoShape& v, int64_t budget_bytes,
                              const VaePlanOptions& opt = {});
// One schedule, checked against the budget; tile_h / tile_w in latents (0: the
// whole extent; tiles are always frame-streamed).
VaeEncodePlan fixed_vae_encode_plan(const VaeConfig& cfg, const VaeVideoShape& v, bool streamed,
                                    int64_t budget_bytes, const VaePlanOptions& opt = {}, int64_t tile_h = 0,
                                    int64_t tile_w = 0);
// The default encode overlap in latents (128 pixels).
int64_t vae_encode_default_overlap(const VaeConfig& cfg);
// --- Precision (Note [VAE precision rule] in vae_tiling.cpp, docs/vae-precision.md) ---

struct VaePrecisionChoice {
  bool bf16 = false;     // build the Vae with VaeOptions::dtype = kBFloat16
  bool exact = true;     // both phases run their exact schedules (no spatial tiles)
  VaeEncodePlan encode;  // the plans at the chosen precision (encode: default when there is none)
  VaeDecodePlan decode;
  std::string describe() const;  // "bf16: fp32 would tile the decode (...); encode ... decode ..."
};

// fp32 when the encode (if any) and the decode both fit their budgets with an
// exact schedule (encode chunked or frame-streamed, decode untiled); else the
// bf16 mode (measured 3e-3 to 8e-3 relative L2 off float64, below what spatial
// tiles cost). `encode` null: no conditioning encode (t2v). opt: the device's
// working_factor / safety / cpu_convs; elem_bytes and weight_bytes are set per
// candidate (weights counted at fp32, 4 bytes per parameter).
VaePrecisionChoice choose_vae_precision(const VaeConfig& cfg, const VaeVideoShape* encode, int64_t encode_budget,
                                        const VaeLatentShape& decode, int64_t decode_budget,
                                        const VaePlanOptions& opt = {});

// budget_bytes less opt.safety (0 for no budget): what plans are checked against.
int64_t vae_usable_bytes(int64_t budget_bytes, const VaePlanOptions& opt);

}  // namespace wand::model
