// Image preprocessing of the i2v-A14B and ti2v-5B pipelines, as the official
// WanI2V.generate and WanTI2V.i2v compute it (reference §8.3, §8.4).
//
//   at::Tensor rgb = image_from_bytes(bytes);                 // [H, W, 3] uint8 (PNG, JPEG, PPM, ...)
//   // i2v-A14B: output size from the area and the image aspect, bicubic resize, mask
//   auto [lat_h, lat_w] = i2v_latent_size(832 * 480, rgb.size(0), rgb.size(1));
//   at::Tensor img = bicubic_resize(unit_image(rgb), 8 * lat_h, 8 * lat_w);   // [3, h, w] fp32
//   at::Tensor msk = i2v_mask(81, lat_h, lat_w);                              // [4, 21, lat_h, lat_w]
//   // ti2v-5B: best_output_size, Pillow Lanczos resize + centre crop, per-token timesteps
//   auto [ow, oh] = best_output_size(w, h, 32, 32, 1280 * 704);
//   at::Tensor x = ti2v_image(rgb, ow, oh);                                   // [3, 1, oh, ow] fp32
//   at::Tensor t = ti2v_token_timesteps(f, gh, gw, seq_len, 999, true);        // [1, seq_len] fp32
//
// Everything runs on the CPU in fp32 (the official code resizes on the CPU too).
// Free functions; any thread.
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

#include <ATen/ATen.h>

namespace wand::model {

// Decodes image bytes to RGB [H, W, 3] uint8: binary PPM (P6, maxval 255) is
// read here; every other format through model/video.h's libav decoder.
// Throws Error(kBadRequest) on undecodable bytes.
at::Tensor image_from_bytes(const std::vector<std::uint8_t>& bytes);
// [H, W, 3] uint8 -> [3, H, W] fp32 in [-1, 1]: TF.to_tensor then sub_(0.5).div_(0.5).
at::Tensor unit_image(const at::Tensor& rgb);

// i2v-A14B output latent size (lat_h, lat_w) from max_area = W*H of the size
// and the image aspect h/w: lat = 2 * floor(floor(sqrt(A * a) / 8) / 2)
// (float64, Python floor divisions). The video is (8 lat_h) x (8 lat_w).
std::pair<int64_t, int64_t> i2v_latent_size(int64_t max_area, int64_t img_h, int64_t img_w, int64_t vae_stride = 8,
                                            int64_t patch = 2);
// F.interpolate(img[None], size=(h, w), mode='bicubic', align_corners=False)[0]:
// [C, H, W] fp32 -> [C, h, w] fp32, no antialias, no clamp.
at::Tensor bicubic_resize(const at::Tensor& chw, int64_t h, int64_t w);
// The i2v mask [4, Fl, lat_h, lat_w], Fl = (frames - 1) / 4 + 1: 1 at latent
// frame 0 (all four channels), 0 elsewhere. frames must be 4n + 1.
at::Tensor i2v_mask(int64_t frames, int64_t lat_h, int64_t lat_w);

// wan.utils.utils.best_output_size: (ow, oh), multiples of (dw, dh), area <= expected_area.
std::pair<int64_t, int64_t> best_output_size(int64_t w, int64_t h, int64_t dw, int64_t dh, int64_t expected_area);
// Pillow's Image.resize((w, h), Image.LANCZOS) on an RGB uint8 image [H, W, 3]
// (separable Lanczos-3, support scaled when downscaling, 22-bit fixed-point
// coefficients, horizontal pass then vertical, each rounding and clipping).
at::Tensor lanczos_resize(const at::Tensor& rgb, int64_t w, int64_t h);
// WanTI2V.i2v: scale = max(ow / w, oh / h), Lanczos to (round(w s), round(h s))
// (half-to-even), centre crop to (ow, oh), to [-1, 1]: [3, 1, oh, ow] fp32.
at::Tensor ti2v_image(const at::Tensor& rgb, int64_t ow, int64_t oh);
// Per-token timesteps [1, seq_len] fp32 over the token grid (f, gh, gw): t for
// every token, except 0 for the tokens of latent frame 0 when frame0_zero
// (image given); padding tokens (num tokens .. seq_len) get t.
at::Tensor ti2v_token_timesteps(int64_t grid_f, int64_t grid_h, int64_t grid_w, int64_t seq_len, int64_t t,
                                bool frame0_zero);

}  // namespace wand::model
