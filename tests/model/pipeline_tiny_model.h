// Test support for the pipeline tests: tiny Wan model directories in the
// release layout (DiT experts + VAE .pth; no umT5: tests inject a text encoder)
// and a deterministic stand-in text encoder.
//
//   auto dir = tmp / "tiny-t2v";
//   write_tiny_wan_dir(dir, "tiny-t2v", /*seed=*/1);
//   GeneratorOptions o; o.device = at::kCPU; o.text_encoder = fake_text_encoder(64);
//   WanGenerator gen(dir, o);
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>

#include "model/pipeline.h"

namespace wand::model::testing {

constexpr int64_t kTinyTextDim = 64;

// preset: tiny-t2v | tiny-i2v (two experts + Wan2.1_VAE.pth, VAE dim 8) or
// tiny-ti2v (root config + Wan2.2_VAE.pth, VAE dim 4 / dec_dim 6).
void write_tiny_wan_dir(const std::filesystem::path& dir, const std::string& preset, std::uint64_t seed);
// Text -> [L, text_dim] with L = 1 + bytes / 4 (at most 24), values drawn from
// a generator seeded by a hash of the text. Counts its calls in *calls when given.
TextEncodeFn fake_text_encoder(int64_t text_dim, int* calls = nullptr);
// A fresh directory under the system temp dir (removed by the caller).
std::filesystem::path make_temp_dir(const std::string& tag);

}  // namespace wand::model::testing
