#include "model/t5_writer.h"

#include <ATen/CPUGeneratorImpl.h>

#include <cctype>
#include <cmath>
#include <fstream>

#include <nlohmann/json.hpp>

#include "common/error.h"
#include "common/log.h"
#include "model/pth.h"
#include "model/text_clean.h"

namespace wand::model {

namespace fs = std::filesystem;

T5Config umt5_xxl_config() {
  T5Config c;
  c.vocab = 256384;
  c.dim = 4096;
  c.dim_attn = 4096;
  c.dim_ffn = 10240;
  c.num_heads = 64;
  c.num_layers = 24;
  c.num_buckets = 32;
  return c;
}

std::vector<std::pair<std::string, std::vector<int64_t>>> t5_checkpoint_layout(const T5Config& c) {
  std::vector<std::pair<std::string, std::vector<int64_t>>> out;
  out.push_back({"token_embedding.weight", {c.vocab, c.dim}});
  for (int64_t l = 0; l < c.num_layers; ++l) {
    const std::string b = "blocks." + std::to_string(l) + ".";
    out.push_back({b + "norm1.weight", {c.dim}});
    out.push_back({b + "attn.q.weight", {c.dim_attn, c.dim}});
    out.push_back({b + "attn.k.weight", {c.dim_attn, c.dim}});
    out.push_back({b + "attn.v.weight", {c.dim_attn, c.dim}});
    out.push_back({b + "attn.o.weight", {c.dim, c.dim_attn}});
    out.push_back({b + "norm2.weight", {c.dim}});
    out.push_back({b + "ffn.gate.0.weight", {c.dim_ffn, c.dim}});
    out.push_back({b + "ffn.fc1.weight", {c.dim_ffn, c.dim}});
    out.push_back({b + "ffn.fc2.weight", {c.dim, c.dim_ffn}});
    out.push_back({b + "pos_embedding.embedding.weight", {c.num_buckets, c.num_heads}});
  }
  out.push_back({"norm.weight", {c.dim}});
  return out;
}

namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// (mean, std) of a tensor's random init.
std::pair<double, double> init_of(const std::string& name, const T5Config& c) {
  if (name == "token_embedding.weight") return {0.0, 1.0};
  if (ends_with(name, "norm1.weight") || ends_with(name, "norm2.weight") || name == "norm.weight") return {1.0, 0.1};
  if (ends_with(name, "attn.q.weight")) return {0.0, std::sqrt(1.0 / static_cast<double>(c.dim * c.head_dim()))};
  if (ends_with(name, "attn.k.weight") || ends_with(name, "attn.v.weight") || ends_with(name, "ffn.gate.0.weight") ||
      ends_with(name, "ffn.fc1.weight")) {
    return {0.0, std::sqrt(1.0 / static_cast<double>(c.dim))};
  }
  if (ends_with(name, "attn.o.weight")) return {0.0, std::sqrt(1.0 / static_cast<double>(c.dim_attn))};
  if (ends_with(name, "ffn.fc2.weight")) return {0.0, std::sqrt(1.0 / static_cast<double>(c.dim_ffn))};
  if (ends_with(name, "pos_embedding.embedding.weight")) return {0.0, 0.5};
  throw Error(ErrorCode::kInternal, "t5 writer: no init for " + name);
}

}  // namespace

void write_t5_checkpoint(const fs::path& path, const T5Config& cfg, std::uint64_t seed) {
  if (cfg.vocab <= 0 || cfg.dim <= 0 || cfg.num_heads <= 0 || cfg.dim_attn % cfg.num_heads != 0 ||
      cfg.num_layers <= 0 || cfg.dim_ffn <= 0 || cfg.num_buckets <= 0) {
    throw Error(ErrorCode::kBadRequest, "t5 writer: inconsistent umT5 dims for " + path.string());
  }
  const auto layout = t5_checkpoint_layout(cfg);
  PthWriter w(path.string());
  for (const auto& t : layout) w.declare(t.first, at::kBFloat16, t.second);
  at::Generator gen = at::detail::createCPUGenerator(seed);
  constexpr int64_t kChunkElems = 8 << 20;
  std::uint64_t bytes = 0;
  for (const auto& t : layout) {
    const auto init = init_of(t.first, cfg);
    const int64_t rows = t.second[0];
    const int64_t cols = t.second.size() > 1 ? t.second[1] : 1;
    const int64_t chunk_rows = std::max<int64_t>(1, kChunkElems / cols);
    for (int64_t r = 0; r < rows; r += chunk_rows) {
      const int64_t n = std::min(chunk_rows, rows - r);
      at::Tensor x = at::randn({n * cols}, gen, at::TensorOptions().dtype(at::kFloat));
      x.mul_(init.second).add_(init.first);
      at::Tensor b = x.to(at::kBFloat16);
      w.write_bytes(t.first, b.data_ptr(), static_cast<std::uint64_t>(b.numel()) * 2);
      bytes += static_cast<std::uint64_t>(b.numel()) * 2;
    }
  }
  w.finish();
  wand::log::get("model")->info("make-model: umt5 written path={} tensors={} bytes={}", path.string(), layout.size(),
                                format_bytes(bytes));
}

std::vector<std::string> tiny_tokenizer_corpus() {
  static const char* kSubjects[] = {"a cat", "a dog", "an old man", "a young woman", "two children", "a red car",
                                    "a small bird", "the astronaut", "a golden retriever", "a robot",
                                    "a panda", "the chef", "a horse", "a dancer", "a fisherman", "a train",
                                    "a white cat", "the musician", "a little girl", "a boat"};
  static const char* kActions[] = {"walks slowly through", "runs across", "is sitting in", "jumps over",
                                   "dances in", "looks around", "plays in", "drives through", "flies above",
                                   "rests beside"};
  static const char* kPlaces[] = {"a sunny park", "the snowy mountains", "a busy city street at night",
                                  "a quiet forest", "the beach at sunset", "a cozy kitchen", "an empty stadium",
                                  "a rainy market", "the garden", "a futuristic city"};
  static const char* kStyles[] = {"cinematic lighting", "close-up shot", "wide angle", "slow motion",
                                  "4K, high quality", "soft colors", "realistic style", "anime style"};
  static const char* kZhSubjects[] = {"一只猫", "一只狗", "一位老人", "一个年轻女子", "两个孩子", "一辆红色汽车",
                                      "一只小鸟", "宇航员", "一只熊猫", "一个机器人"};
  static const char* kZhActions[] = {"慢慢走过", "跑过", "坐在", "跳过", "在跳舞于", "看着", "在玩耍于", "飞过"};
  static const char* kZhPlaces[] = {"阳光明媚的公园", "雪山", "夜晚繁忙的城市街道", "安静的森林", "日落时的海滩",
                                    "温暖的厨房", "下雨的市场", "花园"};
  static const char* kZhStyles[] = {"电影感灯光", "特写镜头", "广角", "慢动作", "高质量", "柔和的色彩"};
  std::vector<std::string> lines;
  for (int i = 0; i < 200; ++i) {
    std::string s = std::string(kSubjects[i % 20]) + " " + kActions[(i / 20 + i) % 10] + " " +
                    kPlaces[(i * 7 + i / 10) % 10] + ", " + kStyles[(i * 3) % 8] + ".";
    if (i % 2 == 0) s[0] = static_cast<char>(std::toupper(static_cast<unsigned char>(s[0])));
    lines.push_back(s);
  }
  for (int i = 0; i < 200; ++i) {
    lines.push_back(std::string(kZhSubjects[i % 10]) + kZhActions[(i / 10 + i) % 8] + kZhPlaces[(i * 5 + i / 8) % 8] +
                    "，" + kZhStyles[(i * 7) % 6] + "。");
  }
  lines.push_back(kDefaultNegativePrompt);
  lines.push_back(clean_text(kDefaultNegativePrompt));
  return lines;
}

SpmModel tiny_umt5_tokenizer(int vocab_size) {
  return SpmModel::build_unigram(tiny_tokenizer_corpus(), vocab_size);
}

void write_umt5_tokenizer_dir(const fs::path& dir, const SpmModel& model) {
  fs::create_directories(dir);
  model.write((dir / "spiece.model").string());
  const nlohmann::json special = {{"eos_token", "</s>"}, {"pad_token", "<pad>"}, {"unk_token", "<unk>"}};
  nlohmann::json config = {{"tokenizer_class", "T5Tokenizer"},
                           {"eos_token", "</s>"},
                           {"pad_token", "<pad>"},
                           {"unk_token", "<unk>"},
                           {"extra_ids", 0},
                           {"additional_special_tokens", nlohmann::json::array()},
                           {"sp_model_kwargs", nlohmann::json::object()},
                           {"model_max_length", 1000000000000000019884624838656.0},
                           {"clean_up_tokenization_spaces", true}};
  for (const auto& f : {std::make_pair(std::string("special_tokens_map.json"), special),
                        std::make_pair(std::string("tokenizer_config.json"), config)}) {
    std::ofstream out(dir / f.first);
    out << f.second.dump(2) << "\n";
    if (!out) throw Error(ErrorCode::kIo, "write " + (dir / f.first).string() + " failed");
  }
}

}  // namespace wand::model
