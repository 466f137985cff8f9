// Test support: Wan model directories in the release layout written without LibTorch, with
// tensors of the exact shapes of model/wan_config.cpp (an independent copy of its lists) and
// sparse data (the files have their full size, the disk holds only the headers), so the real
// A14B geometry costs nothing. The umT5 / VAE .pth files are sparse files of a given size.
//
//   auto g = Geometry::t2v_a14b();
//   write_model_dir(dir, g, "BF16", /*t5_bytes=*/11'361'845'248, /*vae_bytes=*/507'600'000);
#pragma once

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

namespace wand::sched::plan::test {

struct Geometry {
  std::string model_type = "t2v";
  std::int64_t dim = 0, ffn_dim = 0, num_heads = 0, num_layers = 0, in_dim = 16, out_dim = 16;
  std::int64_t text_dim = 4096, freq_dim = 256, text_len = 512;

  static Geometry t2v_a14b() { return {"t2v", 5120, 13824, 40, 40, 16, 16}; }
  static Geometry i2v_a14b() { return {"i2v", 5120, 13824, 40, 40, 36, 16}; }
  // An expert's config.json as the release writes it (real_configs.json's "config_json").
  static Geometry from_config_json(const nlohmann::json& c) {
    Geometry g;
    g.model_type = c.at("model_type").get<std::string>();
    g.dim = c.at("dim").get<std::int64_t>();
    g.ffn_dim = c.at("ffn_dim").get<std::int64_t>();
    g.num_heads = c.at("num_heads").get<std::int64_t>();
    g.num_layers = c.at("num_layers").get<std::int64_t>();
    g.in_dim = c.at("in_dim").get<std::int64_t>();
    g.out_dim = c.at("out_dim").get<std::int64_t>();
    g.freq_dim = c.value("freq_dim", std::int64_t{256});
    g.text_len = c.value("text_len", std::int64_t{512});
    return g;
  }
  // Parameters of one expert (every tensor of tensors()).
  std::uint64_t params() const {
    std::uint64_t n = 0;
    for (const auto& [name, shape] : tensors()) {
      std::uint64_t k = 1;
      for (auto d : shape) k *= static_cast<std::uint64_t>(d);
      n += k;
    }
    return n;
  }
  static Geometry ti2v_5b() { return {"ti2v", 3072, 14336, 24, 30, 48, 48}; }
  static Geometry tiny_t2v() { return {"t2v", 64, 160, 2, 2, 16, 16, 64}; }

  // Per-block and non-block tensors (model/wan_config.cpp's block_tensors / non_block_tensors).
  std::vector<std::pair<std::string, std::vector<std::int64_t>>> tensors() const {
    const std::int64_t D = dim, F = ffn_dim;
    std::vector<std::pair<std::string, std::vector<std::int64_t>>> v = {
        {"patch_embedding.weight", {D, in_dim, 1, 2, 2}}, {"patch_embedding.bias", {D}},
        {"text_embedding.0.weight", {D, text_dim}},      {"text_embedding.0.bias", {D}},
        {"text_embedding.2.weight", {D, D}},             {"text_embedding.2.bias", {D}},
        {"time_embedding.0.weight", {D, freq_dim}},      {"time_embedding.0.bias", {D}},
        {"time_embedding.2.weight", {D, D}},             {"time_embedding.2.bias", {D}},
        {"time_projection.1.weight", {6 * D, D}},        {"time_projection.1.bias", {6 * D}},
        {"head.head.weight", {4 * out_dim, D}},          {"head.head.bias", {4 * out_dim}},
        {"head.modulation", {1, 2, D}}};
    for (std::int64_t i = 0; i < num_layers; ++i) {
      const std::string p = "blocks." + std::to_string(i) + ".";
      for (const char* attn : {"self_attn", "cross_attn"}) {
        for (const char* l : {"q", "k", "v", "o"}) {
          v.push_back({p + attn + "." + l + ".weight", {D, D}});
          v.push_back({p + attn + "." + l + ".bias", {D}});
        }
        v.push_back({p + attn + ".norm_q.weight", {D}});
        v.push_back({p + attn + ".norm_k.weight", {D}});
      }
      v.push_back({p + "norm3.weight", {D}});
      v.push_back({p + "norm3.bias", {D}});
      v.push_back({p + "ffn.0.weight", {F, D}});
      v.push_back({p + "ffn.0.bias", {F}});
      v.push_back({p + "ffn.2.weight", {D, F}});
      v.push_back({p + "ffn.2.bias", {D}});
      v.push_back({p + "modulation", {1, 6, D}});
    }
    return v;
  }

  nlohmann::json config() const {
    nlohmann::json j = {{"_class_name", "WanModel"}, {"dim", dim},       {"eps", 1e-6},
                        {"ffn_dim", ffn_dim},        {"freq_dim", freq_dim}, {"in_dim", in_dim},
                        {"model_type", model_type},  {"num_heads", num_heads}, {"num_layers", num_layers},
                        {"out_dim", out_dim},        {"text_len", text_len}};
    if (text_dim != 4096) j["text_dim"] = text_dim;
    return j;
  }
};

inline void write_sparse(const std::filesystem::path& p, std::uint64_t bytes, const std::string& head = {}) {
  std::ofstream f(p, std::ios::binary | std::ios::trunc);
  f << head;
  if (bytes > head.size()) {
    f.seekp(static_cast<std::streamoff>(bytes - 1));
    f.put('\0');
  }
}

// One safetensors shard: header for `tensors` (in order) + sparse data.
inline void write_shard(const std::filesystem::path& p,
                        const std::vector<std::pair<std::string, std::vector<std::int64_t>>>& tensors,
                        const std::string& dtype, int elem_bytes) {
  nlohmann::json h = {{"__metadata__", {{"format", "pt"}}}};
  std::uint64_t off = 0;
  for (const auto& [name, shape] : tensors) {
    std::uint64_t n = static_cast<std::uint64_t>(elem_bytes);
    for (auto d : shape) n *= static_cast<std::uint64_t>(d);
    h[name] = {{"dtype", dtype}, {"shape", shape}, {"data_offsets", {off, off + n}}};
    off += n;
  }
  const std::string text = h.dump();
  std::string head(8, '\0');
  std::uint64_t len = text.size();
  for (int i = 0; i < 8; ++i) head[i] = static_cast<char>((len >> (8 * i)) & 0xff);
  write_sparse(p, 8 + len + off, head + text);
}

// An expert dir: config.json, two shards (split in the middle of the tensor list), index.
inline void write_expert(const std::filesystem::path& dir, const Geometry& g, const std::string& dtype) {
  std::filesystem::create_directories(dir);
  std::ofstream(dir / "config.json") << g.config().dump(2);
  const int e = dtype == "F32" ? 4 : 2;
  auto all = g.tensors();
  const std::size_t half = all.size() / 2;
  std::vector<std::pair<std::string, std::vector<std::int64_t>>> a(all.begin(), all.begin() + half),
      b(all.begin() + half, all.end());
  const std::string n1 = "diffusion_pytorch_model-00001-of-00002.safetensors";
  const std::string n2 = "diffusion_pytorch_model-00002-of-00002.safetensors";
  write_shard(dir / n1, a, dtype, e);
  write_shard(dir / n2, b, dtype, e);
  nlohmann::json idx = {{"metadata", {{"total_size", 0}}}, {"weight_map", nlohmann::json::object()}};
  for (const auto& t : a) idx["weight_map"][t.first] = n1;
  for (const auto& t : b) idx["weight_map"][t.first] = n2;
  std::ofstream(dir / "diffusion_pytorch_model.safetensors.index.json") << idx.dump(2);
}

inline void write_model_dir(const std::filesystem::path& root, const Geometry& g, const std::string& dtype,
                            std::uint64_t t5_bytes, std::uint64_t vae_bytes) {
  std::filesystem::create_directories(root);
  if (g.model_type == "ti2v") {
    write_expert(root, g, dtype);
    write_sparse(root / "Wan2.2_VAE.pth", vae_bytes);
  } else {
    write_expert(root / "high_noise_model", g, dtype);
    write_expert(root / "low_noise_model", g, dtype);
    write_sparse(root / "Wan2.1_VAE.pth", vae_bytes);
  }
  write_sparse(root / "models_t5_umt5-xxl-enc-bf16.pth", t5_bytes);
}

// Sizes of the release's umT5 and VAE files (wan22-reference.md §1.3; the .pth overhead aside).
constexpr std::uint64_t kT5Bytes = 11361820672ull;  // 5,680,910,336 bf16 params
constexpr std::uint64_t kVae21Bytes = 507570124ull; // 126,892,531 fp32 params
constexpr std::uint64_t kVae22Bytes = 2818754672ull;

}  // namespace wand::sched::plan::test
