// ModelShape: the byte and geometry facts of a Wan2.2 model directory that the planner
// needs, read without LibTorch: each expert's config.json and the headers of its
// safetensors shards (the data is never read), plus the umT5 .pth and VAE .pth sizes.
//
//   ModelShape m = model_shape_from_dir("/srv/models/Wan2.2-T2V-A14B");  // throws Error
//   m.variant;                       // "t2v-A14B"
//   m.experts.size();                // 2 (high_noise_model, low_noise_model); ti2v: 1
//   m.max_block_run_bytes();         // bytes of the largest block in the run dtype (bf16)
//
// Layouts (as model/generator.cpp's probe): A14B = high_noise_model/ + low_noise_model/
// (each config.json + shards + optional index) and Wan2.1_VAE.pth at the root; ti2v =
// config.json + shards + Wan2.2_VAE.pth at the root. Tiny presets use the same layouts.
// The diffusers layout (model_index.json, transformer/ + transformer_2/ in
// WanTransformer3DModel naming) is read too, through the model's own detector
// (model/formats/model_layout.h: the release umT5 / VAE files at the root stand in for
// text_encoder/ and vae/, Note [Diffusers parts]); boundary comes from model_index.json.
// Shards come from diffusion_pytorch_model.safetensors.index.json's weight_map when it
// exists (paths relative to the expert dir, "../high_noise_model/x" included), else every
// *.safetensors file of the expert dir.
//
// Note [Planner model facts]: the geometry (dim, ffn, heads, layers, text_len) comes from
// config.json; the bytes come from the safetensors headers (shape x dtype of every tensor
// named blocks.<i>.*), never from formulas, so a checkpoint in another dtype or a custom
// geometry is planned from what is on disk. Run-dtype bytes (what the weight store streams,
// bf16) are params x 2, except for the tensors the store holds in fp8 (Note [fp8 stored
// dtype], model/weight_storage.h: the one decision, on the same header entries and the
// model's weights_dtype): 1 byte a weight plus 4 bytes a scale (the file's, or one a row
// when wand quantizes). The scales and the "scaled_fp8" marker of fp8_scaled files are not
// model weights. An fp8 block is dequantized on the card beside its slot:
// max_block_dequant_bytes() is that scratch. config.json is parsed by model::WanConfig and the shard headers by
// model::read_safetensors_header (library wand_model_facts, LibTorch-free): the planner and
// the model accept and refuse the same files, with the same variant and family constants.
//
// Errors: Error(kModelFormat) or Error(kIo) naming the file. Plain value types; any thread.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace wand::sched::plan {

struct ExpertShape {
  std::string name;                        // "high_noise_model", "low_noise_model", "" (root)
  std::filesystem::path dir;
  std::vector<std::uint64_t> block_params; // per block index 0..num_layers-1
  std::vector<std::uint64_t> block_stored_bytes;
  std::vector<std::uint64_t> block_fp8_params;   // of block_params, held in fp8 by the store
  std::vector<std::uint64_t> block_scale_bytes;  // their fp32 scales
  std::uint64_t non_block_params = 0;
  std::uint64_t non_block_stored_bytes = 0;
  std::string stored_dtype;                // "F32", "BF16" or "mixed"
  std::uint64_t stored_bytes() const;      // all tensors as stored
};

struct ModelShape {
  std::filesystem::path dir;
  std::string variant;      // t2v-A14B | i2v-A14B | ti2v-5B | tiny-<type> | custom-<type>
  std::string model_type;   // t2v | i2v | ti2v
  std::int64_t dim = 0, ffn_dim = 0, num_heads = 0, num_layers = 0;
  std::int64_t text_len = 512, text_dim = 4096, in_dim = 0, out_dim = 0;
  int vae_stride_t = 4, vae_stride_h = 8, vae_stride_w = 8;
  int patch_h = 2, patch_w = 2;
  // Pipeline constants of the family (model/wan_config.cpp apply_family).
  double boundary = 0.0;
  double sample_shift = 5.0;
  int sample_steps = 50;
  double guide_scale_low = 5.0, guide_scale_high = 5.0;  // sample_guide_scale (low noise, high noise)
  int default_frames = 81;
  int default_width = 1280, default_height = 720;
  std::vector<ExpertShape> experts;
  bool experts_share_shards = false;  // low_noise_model's index points at high_noise_model's shards
  std::filesystem::path t5_file, vae_file;  // the release .pth, or a diffusers text_encoder/ / vae/ folder
  std::uint64_t t5_bytes = 0;         // size of the umT5 file(s) (bf16 in the release)
  std::uint64_t vae_bytes = 0;        // size of the VAE file(s) (fp32)
  int run_bytes = 2;                  // element size of the run dtype (bf16)
  std::string weights_dtype = "auto"; // the model's weights_dtype (model/weight_storage.h)

  // "run" bytes: what the weight store holds (run dtype; fp8 tensors 1 byte a weight + scales).
  std::uint64_t block_run_bytes(std::size_t e, std::size_t b) const;
  std::uint64_t max_block_run_bytes() const;      // largest block over the experts, run dtype
  std::uint64_t max_block_dequant_bytes() const;  // largest block's fp8 weights in the run dtype
  std::uint64_t expert_run_bytes(std::size_t e) const;  // blocks + non-block, run dtype
  std::uint64_t blocks_run_bytes(std::size_t e) const;  // blocks only, run dtype
  std::uint64_t non_block_run_bytes(std::size_t e) const;
  nlohmann::json to_json() const;
};

// Reads a model directory; throws Error naming the file that is missing or malformed.
// weights_dtype: the model's (daemon config models.<name>.weights_dtype; "auto" by default).
ModelShape model_shape_from_dir(const std::filesystem::path& dir, const std::string& weights_dtype = "auto");

}  // namespace wand::sched::plan
