// The daemon's LoRA configuration and catalog (Note [Daemon LoRAs], daemon/lora_catalog.h),
// LibTorch-free: "loras" as a directory or a map, model entries with default LoRAs, the checks
// at load (each naming the field), the effective set at submit and its key check against a
// tiny model's config (a LoRA for another model is refused naming the LoRA, file and key).
#include <fstream>

#include <gtest/gtest.h>

#include "common/error.h"
#include "daemon/config.h"
#include "daemon/lora_catalog.h"
#include "model/wan_config.h"
#include "tests/scheduler/test_dir.h"

namespace wand::daemon {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// Zero-filled F32 tensors in a .safetensors file, written without LibTorch.
void write_safetensors(const fs::path& p, const std::vector<std::pair<std::string, std::vector<int64_t>>>& t) {
  json h = json::object();
  std::uint64_t off = 0;
  for (const auto& [name, shape] : t) {
    std::uint64_t n = 4;
    for (int64_t d : shape) n *= static_cast<std::uint64_t>(d);
    h[name] = {{"dtype", "F32"}, {"shape", shape}, {"data_offsets", {off, off + n}}};
    off += n;
  }
  std::string s = h.dump();
  while (s.size() % 8 != 0) s += ' ';
  std::ofstream out(p, std::ios::binary);
  const std::uint64_t len = s.size();
  for (int i = 0; i < 8; ++i) out.put(static_cast<char>((len >> (8 * i)) & 0xff));
  out << s << std::string(off, '\0');
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

// A tiny t2v A14B directory with configs only (enough for the catalog's key check).
fs::path tiny_model_dir(const fs::path& root) {
  const fs::path d = root / "tiny";
  const json cfg = model::WanConfig::from_preset("tiny-t2v", 64).to_config_json();
  for (const char* e : {"high_noise_model", "low_noise_model"}) {
    fs::create_directories(d / e);
    std::ofstream(d / e / "config.json") << cfg.dump();
  }
  std::ofstream(d / "Wan2.1_VAE.pth") << "";
  return d;
}

TEST(LoraConfig, DirectoryMapAndModelDefaults) {
  test::TempDir t;
  fs::create_directories(t.path() / "loras");
  write_safetensors(t.path() / "loras" / "style.safetensors", {{"diffusion_model.blocks.0.ffn.0.diff_b", {160}}});
  write_safetensors(t.path() / "loras" / "notes.txt", {});  // not a .safetensors: ignored
  const std::string one = (t.path() / "loras" / "style.safetensors").string();

  DaemonConfig a = parse_config(json{{"loras", (t.path() / "loras").string()},
                                     {"models", {{"m", {{"dir", "/srv/m"}, {"loras", json::array({"style:0.5@low"})}}}}}},
                                "<test>");
  ASSERT_EQ(a.loras.size(), 1u);
  EXPECT_EQ(a.loras.at("style"), one);
  EXPECT_EQ(a.models.at("m"), "/srv/m");
  ASSERT_EQ(a.model_loras.at("m").size(), 1u);
  EXPECT_EQ(a.model_loras.at("m")[0], (LoraRef{"style", 0.5, "low"}));
  const json back = config_to_json(a);
  EXPECT_EQ(back["models"]["m"]["loras"][0], "style:0.5@low");
  EXPECT_EQ(back["loras"], (t.path() / "loras").string());
  EXPECT_NO_THROW(parse_config(back, "<round trip>"));

  DaemonConfig b = parse_config(json{{"loras", {{"x", one}}}, {"models", {{"m", "/srv/m"}}}}, "<test>");
  EXPECT_EQ(b.loras.at("x"), one);

  auto refused = [&](const json& j, const std::string& what) {
    const std::string e = error_of([&] { parse_config(j, "<test>"); });
    EXPECT_NE(e.find(what), std::string::npos) << e;
  };
  refused(json{{"loras", {{"x", "/nonexistent/x.safetensors"}}}}, "loras.x");
  refused(json{{"loras", {{"a/b", one}}}}, "not a name");
  refused(json{{"loras", "/nonexistent-dir"}}, "no directory");
  refused(json{{"loras", {{"x", one}}}, {"models", {{"m", {{"dir", "/srv/m"}, {"loras", json::array({"y"})}}}}}},
          "models.m.loras[0]");
  refused(json{{"loras", {{"x", one}}}, {"models", {{"m", {{"dir", "/srv/m"}, {"loras", json::array({"x:abc"})}}}}}},
          "not a number");
  refused(json{{"models", {{"m", {{"dir", "/srv/m"}, {"lora", {}}}}}}}, "models.m.lora");
}

TEST(LoraCatalog, ResolvesTheEffectiveSetAndChecksKeysAgainstTheModel) {
  test::TempDir t;
  const fs::path model = tiny_model_dir(t.path());
  const fs::path good = t.path() / "good.safetensors", deep = t.path() / "deep.safetensors",
                 wide = t.path() / "wide.safetensors";
  write_safetensors(good, {{"diffusion_model.blocks.1.self_attn.q.lora_down.weight", {4, 64}},
                           {"diffusion_model.blocks.1.self_attn.q.lora_up.weight", {64, 4}}});
  write_safetensors(deep, {{"diffusion_model.blocks.39.self_attn.q.lora_down.weight", {4, 64}},
                           {"diffusion_model.blocks.39.self_attn.q.lora_up.weight", {64, 4}}});
  write_safetensors(wide, {{"lora_unet_blocks_0_ffn_2.lora_down.weight", {4, 5120}},
                           {"lora_unet_blocks_0_ffn_2.lora_up.weight", {64, 4}}});
  DaemonConfig c;
  c.loras = {{"good", good.string()}, {"deep", deep.string()}, {"wide", wide.string()}};
  c.models = {{"tiny", model.string()}};
  c.model_loras = {{"tiny", {LoraRef{"good", 1.0, "high"}}}};
  const LoraCatalog cat(c);

  sched::JobSpec s;
  s.model = "tiny";
  cat.resolve(s, model);  // the default alone
  ASSERT_EQ(s.loras.size(), 1u);
  EXPECT_EQ(s.loras[0].expert, "high");
  ASSERT_EQ(s.lora_files.size(), 1u);
  EXPECT_EQ(s.lora_files[0], good.string());

  sched::JobSpec off;
  off.model = "tiny";
  off.loras = {LoraRef{"good", 0.0, "both"}};
  cat.resolve(off, model);
  EXPECT_TRUE(off.loras.empty());
  EXPECT_TRUE(off.lora_files.empty());

  sched::JobSpec unknown;
  unknown.model = "tiny";
  unknown.loras = {LoraRef{"nope"}};
  std::string e = error_of([&] { cat.resolve(unknown, model); });
  EXPECT_NE(e.find("unknown LoRA 'nope'"), std::string::npos) << e;
  EXPECT_NE(e.find("good"), std::string::npos) << e;

  sched::JobSpec d;
  d.model = "tiny";
  d.loras = {LoraRef{"deep"}};
  e = error_of([&] { cat.resolve(d, model); });
  EXPECT_NE(e.find("LoRA 'deep' does not fit model 'tiny'"), std::string::npos) << e;
  EXPECT_NE(e.find(deep.string()), std::string::npos) << e;
  EXPECT_NE(e.find("diffusion_model.blocks.39.self_attn.q.lora_"), std::string::npos) << e;

  sched::JobSpec w;
  w.model = "tiny";
  w.loras = {LoraRef{"wide"}};
  e = error_of([&] { cat.resolve(w, model); });
  EXPECT_NE(e.find("lora_unet_blocks_0_ffn_2.lora_down.weight"), std::string::npos) << e;
  EXPECT_NE(e.find("do not fit"), std::string::npos) << e;

  // --check-config warns when a model's default does not fit it.
  c.model_loras = {{"tiny", {LoraRef{"deep"}}}};
  const std::vector<std::string> warn = config_warnings(c);
  bool found = false;
  for (const auto& x : warn) found = found || x.find("models.tiny.loras[0]") != std::string::npos;
  EXPECT_TRUE(found);

  // models: the served LoRAs from their headers.
  proto::ModelList list;
  list.models.push_back(proto::ModelInfo{});
  list.models[0].name = "tiny";
  cat.describe(list, /*admin=*/false);
  ASSERT_EQ(list.loras.size(), 3u);
  EXPECT_EQ(list.loras[1].name, "good");
  EXPECT_EQ(list.loras[1].rank, 4);
  EXPECT_EQ(list.loras[1].file, "");  // users see no server paths
  EXPECT_EQ(list.loras[2].layout, "kohya");
}

}  // namespace
}  // namespace wand::daemon
