// fp8 storage in the weight store (Note [fp8 stored dtype], model/weight_storage.h): a bf16
// expert repacked once to fp8 (weights_dtype "fp8"), an fp8_scaled file (wand-make-model
// --dtype fp8) read straight, the pack's identity, and streamed fp8 blocks == the resident
// fp8 DiT bit for bit through the DitExecutor on a CPU device tier of 3 slots.
#include "scheduler/exec/weight_store.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "memory/memory_pool.h"
#include "model/checkpoint.h"
#include "model/dit.h"
#include "model/fp8.h"
#include "scheduler/exec/dit_executor.h"
#include "scheduler/exec/store_cache.h"
#include "tests/scheduler/exec/tiny_expert.h"
#include "tests/scheduler/test_dir.h"

namespace wand::sched::exec {
namespace {

namespace fs = std::filesystem;
using model::CheckpointDir;
using model::RunDtype;
using model::WeightsDtype;
using test::TempDir;

// A tiny expert in bf16 and the same weights (same seed) as an fp8_scaled file.
fs::path write_fp8_expert(const fs::path& dir, std::uint64_t seed, const std::string& fp8 = "scaled") {
  model::make::write_dit_expert(dir, test::tiny_config(), at::kBFloat16, seed, 1ull << 30, false, fp8);
  return dir;
}

memory::MemoryPool small_pool() { return memory::MemoryPool(test::tiny_pool_config(32ull << 20, 8ull << 20)); }

// The blob's views of every block, dequantized on the CPU "device".
std::vector<model::DitBlockWeights> views(const WeightStore& ws, memory::MemoryPool& pool,
                                          std::vector<memory::PinnedCopy>& pins) {
  std::vector<model::DitBlockWeights> out;
  for (const BlockBlob& b : ws.blocks()) {
    pins.push_back(pool.acquire(b.id, pool.host_tier()));
    out.push_back(view_block_weights(b, pins.back().data(), at::kCPU));
  }
  return out;
}

TEST(WeightStoreFp8, Bf16ExpertIsRepackedToFp8Once) {
  TempDir tmp;
  const fs::path d = test::write_expert(tmp.path() / "m", at::kBFloat16, 4);
  CheckpointDir ck(d);
  memory::MemoryPool pool = small_pool();
  WeightStoreOptions o;
  o.run = RunDtype::kBFloat16;
  o.pack_dir = (tmp.path() / "spool").string();
  const WeightStore bf16 = WeightStore::open(ck, pool, o);
  ASSERT_TRUE(bf16.direct());
  o.name = "fp8";
  o.weights = WeightsDtype::kFp8;
  std::string packed;
  {
    const WeightStore ws = WeightStore::open(ck, pool, o);
    EXPECT_FALSE(ws.direct());
    EXPECT_TRUE(ws.repacked_now());
    EXPECT_EQ(ws.fp8_tensors(), 10 * ws.num_blocks());
    packed = ws.packed_path();
    // 1 byte a weight for the linear weights: a little over half the bf16 block.
    EXPECT_LT(ws.max_block_bytes(), bf16.max_block_bytes() * 6 / 10);
    EXPECT_GT(ws.max_block_dequant_bytes(), 0u);
    std::vector<memory::PinnedCopy> pins;
    const auto w = views(ws, pool, pins);
    for (std::int64_t i = 0; i < ws.num_blocks(); ++i) {
      const auto names = model::DitBlockWeights::tensor_names(i);
      const auto f = w[static_cast<std::size_t>(i)].fields();
      for (std::size_t k = 0; k < names.size(); ++k) {
        ASSERT_EQ(f[k]->scalar_type(), at::kBFloat16) << names[k];
        const BlockTensor& t = ws.block(i).tensors[k];
        if (t.fp8) {  // the per-row quantization of the bf16 values, dequantized
          EXPECT_EQ(t.scale_shape, (std::vector<int64_t>{t.shape[0], 1})) << names[k];
          const model::Fp8Tensor q = model::quantize_fp8_e4m3fn(ck.load(names[k]), model::Fp8Scaling::kRow);
          EXPECT_TRUE(at::equal(*f[k], model::fp8_dequantize(q.codes, q.scale, at::kBFloat16))) << names[k];
        } else {
          EXPECT_TRUE(at::equal(*f[k], ck.load(names[k], at::kBFloat16))) << names[k];
        }
      }
    }
    const nlohmann::json s = ws.status_json();
    EXPECT_EQ(s.at("fp8_tensors").get<std::int64_t>(), 10 * ws.num_blocks());
  }
  {
    const WeightStore again = WeightStore::open(ck, pool, o);  // reused across restarts
    EXPECT_FALSE(again.repacked_now());
    EXPECT_EQ(again.packed_path(), packed);
  }
  std::ifstream in(packed + ".json");
  const nlohmann::json m = nlohmann::json::parse(in);
  EXPECT_EQ(m.at("weights").get<std::string>(), "fp8-row");
  EXPECT_EQ(m.at("blocks")[0].at("tensors")[1].at("dtype").get<std::string>(), "F8_E4M3");
}

// The stored dtype is part of the pack's identity: bf16, fp8 per row and fp8 per tensor of
// one checkpoint are three pack files, each reused by its own options only.
TEST(WeightStoreFp8, PackIdentityDiffersForFp8AndBf16) {
  TempDir tmp;
  const fs::path d = test::write_expert(tmp.path() / "m", at::kFloat, 6);  // fp32: bf16 packs too
  CheckpointDir ck(d);
  memory::MemoryPool pool = small_pool();
  WeightStoreOptions o;
  o.run = RunDtype::kBFloat16;
  o.pack_dir = (tmp.path() / "spool").string();
  std::vector<std::string> paths;
  std::vector<std::uint64_t> bytes;
  for (int k = 0; k < 3; ++k) {
    o.name = "s" + std::to_string(k);
    o.weights = k == 0 ? WeightsDtype::kAuto : WeightsDtype::kFp8;
    o.fp8_scaling = k == 2 ? model::Fp8Scaling::kTensor : model::Fp8Scaling::kRow;
    const WeightStore ws = WeightStore::open(ck, pool, o);
    EXPECT_TRUE(ws.repacked_now()) << k;  // none reuses another's pack
    paths.push_back(ws.packed_path());
    bytes.push_back(ws.total_bytes());
    EXPECT_EQ(ws.packed_path(), WeightStore::pack_path(o.pack_dir, ck, o.run, WeightStore::storage_tag(o)));
  }
  EXPECT_NE(paths[0], paths[1]);
  EXPECT_NE(paths[1], paths[2]);
  EXPECT_NE(paths[0], paths[2]);
  EXPECT_LT(bytes[1], bytes[0]);
  // The bf16 pack keeps the name it had before fp8 (existing packs are reused).
  EXPECT_EQ(paths[0], WeightStore::pack_path(o.pack_dir, ck, o.run));
  // Each reopens its own pack.
  for (int k = 0; k < 3; ++k) {
    o.name = "r" + std::to_string(k);
    o.weights = k == 0 ? WeightsDtype::kAuto : WeightsDtype::kFp8;
    o.fp8_scaling = k == 2 ? model::Fp8Scaling::kTensor : model::Fp8Scaling::kRow;
    const WeightStore ws = WeightStore::open(ck, pool, o);
    EXPECT_FALSE(ws.repacked_now()) << k;
    EXPECT_EQ(ws.packed_path(), paths[static_cast<std::size_t>(k)]);
  }
  // The shared store cache keeps them apart as well.
  StoreCache cache(pool, "c");
  o.weights = WeightsDtype::kAuto;
  auto a = cache.get(ck, o);
  o.weights = WeightsDtype::kFp8;
  auto b = cache.get(ck, o);
  EXPECT_NE(a.get(), b.get());
  EXPECT_EQ(b->fp8_tensors(), 10 * b->num_blocks());
}

// An fp8_scaled file is packed with its own codes and scales (never requantized): each
// block view equals CheckpointDir::load (the resident path) bit for bit, and equals a bf16
// checkpoint of the same weights repacked with per-tensor scales. weights "run" dequantizes.
TEST(WeightStoreFp8, Fp8FileIsReadStraightAndMatchesTheRepack) {
  TempDir tmp;
  const fs::path f8 = write_fp8_expert(tmp.path() / "fp8", 8);
  const fs::path b16 = test::write_expert(tmp.path() / "bf16", at::kBFloat16, 8);
  CheckpointDir ck8(f8), ck16(b16);
  memory::MemoryPool pool = small_pool();
  WeightStoreOptions o;
  o.run = RunDtype::kBFloat16;
  o.pack_dir = (tmp.path() / "spool").string();
  o.name = "file";
  const WeightStore file = WeightStore::open(ck8, pool, o);  // weights auto: fp8 stays fp8
  EXPECT_EQ(file.fp8_tensors(), 10 * file.num_blocks());
  o.name = "repack";
  o.weights = WeightsDtype::kFp8;
  o.fp8_scaling = model::Fp8Scaling::kTensor;
  const WeightStore repack = WeightStore::open(ck16, pool, o);
  o.name = "run";
  o.weights = WeightsDtype::kRun;
  const WeightStore run = WeightStore::open(ck8, pool, o);
  EXPECT_EQ(run.fp8_tensors(), 0);
  EXPECT_GT(run.total_bytes(), file.total_bytes());
  std::vector<memory::PinnedCopy> pins;
  const auto wf = views(file, pool, pins), wr = views(repack, pool, pins), wu = views(run, pool, pins);
  for (std::int64_t i = 0; i < file.num_blocks(); ++i) {
    const auto names = model::DitBlockWeights::tensor_names(i);
    const auto a = wf[static_cast<std::size_t>(i)].fields(), b = wr[static_cast<std::size_t>(i)].fields(),
               c = wu[static_cast<std::size_t>(i)].fields();
    for (std::size_t k = 0; k < names.size(); ++k) {
      const at::Tensor resident = ck8.load(names[k], at::kBFloat16);
      EXPECT_TRUE(at::equal(*a[k], resident)) << names[k];
      EXPECT_TRUE(at::equal(*b[k], resident)) << names[k];
      EXPECT_TRUE(at::equal(*c[k], resident)) << names[k];
    }
  }
}

// Streamed fp8 == resident fp8, bit for bit: the executor's CFG steps over a 3-slot CPU tier
// (blocks cross to the "device" as fp8 and are dequantized there) against WanDit with the
// fp8 file's weights loaded (CheckpointDir::load dequantizes with the same function).
TEST(WeightStoreFp8, StreamedFp8EqualsResidentFp8) {
  TempDir tmp;
  std::unique_ptr<CheckpointDir> ck[2];
  std::unique_ptr<model::WanDit> owned[2], streamed[2];
  for (int e = 0; e < 2; ++e) {
    ck[e] = std::make_unique<CheckpointDir>(write_fp8_expert(tmp.path() / (e ? "lo" : "hi"), 31 + e));
    owned[e] = std::make_unique<model::WanDit>(model::WanDit::load(*ck[e], RunDtype::kBFloat16, at::kCPU, true));
    streamed[e] = std::make_unique<model::WanDit>(model::WanDit::load(*ck[e], RunDtype::kBFloat16, at::kCPU, false));
  }
  std::uint64_t block = 0;
  {
    memory::MemoryPool scratch = small_pool();
    WeightStoreOptions p;
    p.pack_dir = (tmp.path() / "spool").string();
    p.name = "probe";
    block = WeightStore::open(*ck[0], scratch, p).max_block_bytes();
  }
  const std::uint64_t slot = (block + 4095) / 4096 * 4096 + 4096;
  memory::MemoryPool pool(test::tiny_pool_config(64 * slot, 3 * slot));
  WeightStoreOptions o;
  o.run = RunDtype::kBFloat16;
  o.pack_dir = (tmp.path() / "spool").string();
  o.name = "hi";
  WeightStore hi = WeightStore::open(*ck[0], pool, o);
  o.name = "lo";
  WeightStore lo = WeightStore::open(*ck[1], pool, o);
  ASSERT_GT(hi.fp8_tensors(), 0);
  ExecutorOptions eo;
  eo.device_tier = pool.device_tier(0);
  eo.window_bytes = 2 * pool.copy_bytes(hi.block(0).id, eo.device_tier);
  const std::vector<int> expert_of_step = {0, 0, 1, 1};
  DitExecutor exec(pool, {{streamed[0].get(), &hi}, {streamed[1].get(), &lo}}, expert_of_step, eo);
  const model::WanConfig& cfg = ck[0]->config();
  for (std::int64_t k = 0; k < exec.num_steps(); ++k) {
    at::manual_seed(static_cast<std::uint64_t>(k) + 1);
    StepInputs in;
    in.x = at::randn({cfg.out_dim, 3, 8, 10});
    in.t = at::full({1}, 900 - 37 * k, at::kLong);
    in.context = at::randn({7, cfg.text_dim}) * 0.5;
    in.context_null = at::randn({5, cfg.text_dim}) * 0.5;
    in.seq_len = 3 * 4 * 5;
    const int e = expert_of_step[static_cast<std::size_t>(k)];
    auto [c, u] = exec.step(k, in);
    auto [rc, ru] = owned[e]->forward_cfg(in.x, in.t, in.context, in.context_null, in.seq_len);
    EXPECT_TRUE(at::equal(c, rc)) << "step " << k;
    EXPECT_TRUE(at::equal(u, ru)) << "step " << k;
  }
  // The device tier carried fp8 bytes: every block copy is the fp8 blob.
  EXPECT_GE(exec.stats().device_bytes_in, static_cast<std::uint64_t>(4 * (cfg.num_layers - 3)) * hi.block(0).bytes);
}

}  // namespace
}  // namespace wand::sched::exec
