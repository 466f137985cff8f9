// Test support for the pipeline tests: tiny Wan model directories in the
// release layout (through wand-make-model's make_model(): DiT experts, umT5
// .pth + tokenizer, VAE .pth) and a deterministic stand-in text encoder for
// tests that count or control text encoding.
//
//   auto dir = tmp / "tiny-t2v";
//   write_tiny_wan_dir(dir, "tiny-t2v", /*seed=*/1);
//   GeneratorOptions o; o.device = at::kCPU; o.text_encoder = fake_text_encoder(64);
//   WanGenerator gen(dir, o);
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>

#include "model/generator.h"

namespace wand::model::testing {

constexpr int64_t kTinyTextDim = 64;

// preset: tiny-t2v | tiny-i2v (two experts + Wan2.1_VAE.pth) or tiny-ti2v
// (root config + Wan2.2_VAE.pth); text_dim kTinyTextDim (the tiny umT5 width).
void write_tiny_wan_dir(const std::filesystem::path& dir, const std::string& preset, std::uint64_t seed);
// Text -> [L, text_dim] with L = 1 + bytes / 4 (at most 24), values drawn from
// a generator seeded by a hash of the text. Counts its calls in *calls when given.
TextEncodeFn fake_text_encoder(int64_t text_dim, int* calls = nullptr);
// A fresh directory under the system temp dir (removed by the caller).
std::filesystem::path make_temp_dir(const std::string& tag);

}  // namespace wand::model::testing
