// LoRAs through wanctl and the daemon (Note [Daemon LoRAs], daemon/lora_catalog.h) with the fake
// model: --lora parsing in wanctl (a bad strength is a usage error before any connection), the
// config's "loras" directory and a model's defaults, the effective set a job runs (status
// shows it), an unknown name refused at submit naming the served ones, `models` listing them.
#include <cstring>
#include <fstream>

#include <gtest/gtest.h>

#include "tests/daemon/harness.h"

namespace wand::test {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

// A minimal .safetensors (one F32 tensor [1, 2] of zeros) written without LibTorch.
void write_tiny_safetensors(const fs::path& p, const std::string& key) {
  std::string header = "{\"" + key + "\":{\"dtype\":\"F32\",\"shape\":[1,2],\"data_offsets\":[0,8]}}";
  while (header.size() % 8 != 0) header += ' ';
  std::ofstream out(p, std::ios::binary);
  const std::uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) out.put(static_cast<char>((n >> (8 * i)) & 0xff));
  out << header;
  for (int i = 0; i < 8; ++i) out.put('\0');
}

std::vector<std::string> job(std::vector<std::string> extra) {
  std::vector<std::string> a = {"submit", "--model", "fake", "--prompt", "a lighthouse", "--size", "32x24",
                                "--frames", "9", "--steps", "2", "--seed", "1", "--json"};
  a.insert(a.end(), extra.begin(), extra.end());
  return a;
}

TEST(WanctlLora, ParsingNamesAndDefaults) {
  DaemonFixture d(5);
  fs::create_directories(d.dir() / "loras");
  write_tiny_safetensors(d.dir() / "loras" / "style.safetensors", "diffusion_model.blocks.0.self_attn.q.lora_down.weight");
  write_tiny_safetensors(d.dir() / "loras" / "distill-hi.safetensors", "diffusion_model.blocks.0.ffn.0.lora_down.weight");
  const fs::path cfg = d.dir() / "wand.json";
  {
    std::ofstream c(cfg);
    c << json{{"loras", (d.dir() / "loras").string()},
              {"models", {{"fake", {{"dir", (d.dir() / "models" / "fake").string()}, {"loras", json::array({"distill-hi@high"})}}}}}}
             .dump();
  }
  d.start({"--config", cfg.string()});

  // Client-side checks: exit 2 before anything is sent.
  CmdResult bad = d.wanctl(job({"--lora", "style:fast"}));
  EXPECT_EQ(bad.exit_code, 2) << bad.err;
  EXPECT_NE(bad.err.find("not a number"), std::string::npos) << bad.err;
  CmdResult path = d.wanctl(job({"--lora", "/etc/passwd"}));
  EXPECT_EQ(path.exit_code, 2);
  EXPECT_NE(path.err.find("not a file"), std::string::npos) << path.err;

  // An unknown name: the daemon refuses it at submit, naming what it serves.
  CmdResult unknown = d.wanctl(job({"--lora", "nope"}));
  EXPECT_EQ(unknown.exit_code, 2) << unknown.out << unknown.err;
  const std::string msg = unknown.out + unknown.err;
  EXPECT_NE(msg.find("unknown LoRA 'nope'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("style"), std::string::npos) << msg;

  // The job runs its default plus the requested LoRA; a second job switches the default off.
  CmdResult ok = d.wanctl(job({"--lora", "style:0.5@low"}));
  ASSERT_EQ(ok.exit_code, 0) << ok.err << d.log();
  CmdResult off = d.wanctl(job({"--lora", "distill-hi:0"}));
  ASSERT_EQ(off.exit_code, 0) << off.err << d.log();

  // models lists the served LoRAs and the model's defaults.
  CmdResult models = d.wanctl({"models", "--json"});
  ASSERT_EQ(models.exit_code, 0) << models.err;
  const json mj = models.json();
  ASSERT_EQ(mj["loras"].size(), 2u) << mj.dump();
  EXPECT_EQ(mj["loras"][0]["name"], "distill-hi");
  EXPECT_EQ(mj["loras"][1]["name"], "style");
  EXPECT_EQ(mj["loras"][1]["layout"], "comfyui");
  EXPECT_EQ(mj["loras"][1]["rank"], 1);
  ASSERT_EQ(mj["models"][0]["default_loras"].size(), 1u) << mj.dump();
  EXPECT_EQ(mj["models"][0]["default_loras"][0], "distill-hi:1@high");
  CmdResult table = d.wanctl({"models"});
  ASSERT_EQ(table.exit_code, 0);
  EXPECT_NE(table.out.find("LoRAs (--lora"), std::string::npos) << table.out;
  EXPECT_NE(table.out.find("fake default LoRAs: distill-hi:1@high"), std::string::npos) << table.out;
  d.stop();
}

}  // namespace
}  // namespace wand::test
