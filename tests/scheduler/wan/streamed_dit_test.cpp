// StreamedDit as WanGenerator's cfg_forward hook on a tiny t2v A14B-layout model (two
// experts) with a CpuDeviceTier smaller than all blocks: the generation (every step's
// latent and the decoded video) equals the resident WanGenerator bit for bit (fp32 on the
// CPU); a resumed schedule; budget refusals and the chunk chosen from the budget; two
// StreamedDits on two device tiers sharing one StoreCache (one host copy, issue 7) and
// the host-planning rule of shared stores.
#include "scheduler/wan/streamed_dit.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <thread>
#include <tuple>

#include "common/error.h"
#include "memory/memory_pool.h"
#include "model/generator.h"
#include "scheduler/exec/store_cache.h"
#include "scheduler/exec/weight_store.h"
#include "tests/model/tiny_model.h"
#include "tests/scheduler/exec/tiny_expert.h"
#include "tests/scheduler/test_dir.h"

namespace wand::sched {
namespace {

namespace fs = std::filesystem;
using namespace exec;  // the streamer, stores and budgets under the streamed DiT
using model::GeneratorOptions;
using model::GenRequest;
using model::GenState;
using model::RunDtype;
using model::WanGenerator;

struct TinyModel {
  test::TempDir tmp;
  fs::path dir() const { return tmp.path() / "tiny-t2v"; }
  std::string spool() const { return (tmp.path() / "spool").string(); }
  TinyModel() { model::testing::write_tiny_wan_dir(dir(), "tiny-t2v", 5); }
  std::vector<fs::path> experts() const { return {dir() / "high_noise_model", dir() / "low_noise_model"}; }
};

GeneratorOptions cpu_options() {
  GeneratorOptions o;
  o.device = at::Device(at::kCPU);
  o.run_dtype = RunDtype::kFloat32;
  o.text_encoder = model::testing::fake_text_encoder(model::testing::kTinyTextDim);
  return o;
}

GenRequest request() {
  GenRequest r;
  r.task = "t2v";
  r.prompt = "a paper boat on a river";
  r.width = 48;
  r.height = 32;
  r.frames = 5;
  r.steps = 6;
  r.seed = 42;
  return r;
}

StreamedDitOptions streamed_options(const memory::MemoryPool& pool, const std::string& spool) {
  StreamedDitOptions o;
  o.ranks = {{pool.device_tier(0), -1, {}}};
  o.run = RunDtype::kFloat32;
  o.pack_dir = spool;
  o.name = "tiny";
  return o;
}

// Device copy bytes of one block and of all blocks of both experts (a scratch pool).
std::pair<std::uint64_t, std::uint64_t> block_sizes(const TinyModel& m) {
  memory::MemoryPool scratch(test::tiny_pool_config(32ull << 20, 32ull << 20));
  StreamedDit sd(scratch, m.experts(), streamed_options(scratch, m.spool()));
  std::uint64_t all = 0;
  for (std::size_t e = 0; e < sd.num_experts(); ++e) {
    for (const BlockBlob& b : sd.store(e).blocks()) all += scratch.copy_bytes(b.id, scratch.device_tier(0));
  }
  return {sd.max_block_bytes(), all};
}

std::uint64_t device_bytes_moved_in(memory::MemoryPool& pool) {
  const nlohmann::json status = pool.status_json();  // kept alive across the loop
  for (const auto& t : status["tiers"]) {
    if (t["kind"] == "device") return t["bytes_moved_in"].get<std::uint64_t>();
  }
  return 0;
}

TEST(StreamedDit, GeneratorWithStreamedBlocksEqualsResidentBitwise) {
  TinyModel m;
  const auto [block, all] = block_sizes(m);
  const std::uint64_t slots = 3 * block;
  ASSERT_LT(slots, all) << "the device tier must be smaller than all blocks";
  memory::MemoryPool pool(test::tiny_pool_config(32ull << 20, slots));
  StreamedDit sd(pool, m.experts(), streamed_options(pool, m.spool()));

  WanGenerator resident(m.dir(), cpu_options());
  GeneratorOptions so = cpu_options();
  so.cfg_forward = sd.cfg_forward();
  WanGenerator streamed(m.dir(), so);

  GenState a = resident.prepare(request());
  GenState b = streamed.prepare(request());
  const std::vector<int> schedule = streamed.expert_of_step(b);
  ASSERT_EQ(schedule, resident.expert_of_step(a));
  ASSERT_EQ(schedule.front(), 0);
  ASSERT_EQ(schedule.back(), 1) << "the job must cross the expert switch";
  sd.begin_job(schedule, {0, b.seq_len});
  EXPECT_EQ(sd.chunk_tokens(), 0);  // no budget: no chunking
  int checks = 0;
  while (a.completed_steps() < a.total_steps()) {
    resident.step(a);
    streamed.step(b, [&] { ++checks; });
    ASSERT_TRUE(at::equal(a.latent, b.latent)) << "step " << a.completed_steps();
  }
  EXPECT_EQ(a.experts_run, b.experts_run);
  EXPECT_EQ(streamed.block_calls(), 0);  // the generator never ran a resident block
  EXPECT_GE(checks, 6 * 2);              // the check ran between blocks
  const nlohmann::json job = sd.stats_json()["job"];
  EXPECT_EQ(job["steps"].get<int>(), 6);
  EXPECT_EQ(job["blocks_run"].get<int>(), 6 * 2);
  sd.end_job();
  const nlohmann::json s = sd.stats_json();
  EXPECT_GT(s["total"]["device_bytes_in"].get<std::uint64_t>(), 0u);
  EXPECT_GT(device_bytes_moved_in(pool), 0u) << pool.status_json().dump();
  EXPECT_FALSE(s["in_job"].get<bool>());
  for (const auto& r : pool.resident(pool.device_tier(0))) EXPECT_EQ(r.pins, 0u);
  EXPECT_TRUE(at::equal(resident.decode(a), streamed.decode(b)));

  // The same StreamedDit serves a second job (stores reused, no repack).
  GenState c = streamed.prepare(request());
  sd.begin_job(streamed.expert_of_step(c), {0, c.seq_len});
  while (c.completed_steps() < c.total_steps()) streamed.step(c);
  sd.end_job();
  EXPECT_TRUE(at::equal(c.latent, a.latent));
  EXPECT_EQ(sd.stats_json()["jobs"].get<int>(), 2);
}

TEST(StreamedDit, ResumedScheduleStartsAtTheResumedStep) {
  TinyModel m;
  const auto [block, all] = block_sizes(m);
  (void)all;
  memory::MemoryPool pool(test::tiny_pool_config(32ull << 20, 2 * block));  // window of one block
  StreamedDit sd(pool, m.experts(), streamed_options(pool, m.spool()));
  WanGenerator resident(m.dir(), cpu_options());
  GeneratorOptions so = cpu_options();
  so.cfg_forward = sd.cfg_forward();
  WanGenerator streamed(m.dir(), so);

  GenState ref = resident.prepare(request());
  while (ref.completed_steps() < ref.total_steps()) resident.step(ref);

  GenState first = streamed.prepare(request());
  sd.begin_job(streamed.expert_of_step(first), {0, first.seq_len});
  for (int k = 0; k < 3; ++k) streamed.step(first);
  sd.end_job();
  const auto blobs = streamed.save_state(first);

  GenState resumed = streamed.prepare(request());
  streamed.load_state(resumed, blobs);
  ASSERT_EQ(resumed.completed_steps(), 3);
  // Outside a job the hook refuses to run.
  EXPECT_THROW(streamed.step(resumed), Error);
  std::vector<int> rest = streamed.expert_of_step(resumed);
  rest.erase(rest.begin(), rest.begin() + 3);
  sd.begin_job(rest, {3, resumed.seq_len});
  while (resumed.completed_steps() < resumed.total_steps()) streamed.step(resumed);
  EXPECT_EQ(sd.stats_json()["job"]["steps"].get<int>(), 3);
  sd.end_job();
  EXPECT_TRUE(at::equal(ref.latent, resumed.latent));

  // A schedule that does not match the generator's experts is an internal error.
  GenState wrong = streamed.prepare(request());
  sd.begin_job(std::vector<int>(6, 1), {0, wrong.seq_len});
  try {
    streamed.step(wrong);
    FAIL() << "expected a schedule mismatch";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInternal);
    EXPECT_NE(std::string(e.what()).find("schedule planned"), std::string::npos) << e.what();
  }
  EXPECT_EQ(wrong.completed_steps(), 0);
}

TEST(StreamedDit, DeviceTierBelowTwoBlocksIsRefusedNamingTheSizes) {
  TinyModel m;
  const auto [block, all] = block_sizes(m);
  (void)all;
  memory::MemoryPool pool(test::tiny_pool_config(32ull << 20, block + 4096));
  StreamedDit sd(pool, m.experts(), streamed_options(pool, m.spool()));
  try {
    sd.begin_job({0, 1}, {0, 12});
    FAIL() << "expected the device tier to be refused";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kConfig);
    const std::string w = e.what();
    EXPECT_NE(w.find("two blocks"), std::string::npos) << w;
    EXPECT_NE(w.find(std::to_string(block) + " bytes each"), std::string::npos) << w;
    const std::uint64_t cap = pool.tier(pool.device_tier(0)).bytes_capacity();
    EXPECT_NE(w.find("(" + std::to_string(cap) + " bytes)"), std::string::npos) << w;
  }
  EXPECT_FALSE(sd.in_job());
}

TEST(StreamedDit, ChunkIsChosenFromTheBudget) {
  TinyModel m;
  const auto [block, all] = block_sizes(m);
  (void)all;
  memory::MemoryPool pool(test::tiny_pool_config(32ull << 20, 3 * block));
  StreamedDitOptions o = streamed_options(pool, m.spool());
  StreamedDit probe(pool, m.experts(), o);
  const std::uint64_t slots = pool.tier(pool.device_tier(0)).bytes_capacity();
  const std::int64_t tokens = 1200;
  const model::WanConfig cfg = model::WanConfig::from_preset("tiny-t2v", model::testing::kTinyTextDim);
  DitGeometry g;
  g.tokens = tokens;
  g.dim = cfg.dim;
  g.ffn_dim = cfg.ffn_dim;
  g.text_len = cfg.text_len;
  g.run_bytes = 4;
  const std::uint64_t whole = dit_activation_bytes(g);
  g.chunk_tokens = 300;
  const std::uint64_t at300 = dit_activation_bytes(g);
  ASSERT_LT(at300, whole);

  // Whole sequence fits: no chunking.
  o.ranks[0].budget.budget_bytes = slots + probe.nonblock_bytes() + whole;
  {
    StreamedDit sd(pool, m.experts(), [&] { auto x = o; x.name = "a"; return x; }());
    sd.begin_job({0, 1}, {0, tokens});
    EXPECT_EQ(sd.chunk_tokens(), 0);
  }
  // Room for a 300-token chunk only: the largest chunk that fits.
  o.ranks[0].budget.budget_bytes = slots + probe.nonblock_bytes() + at300;
  {
    StreamedDit sd(pool, m.experts(), [&] { auto x = o; x.name = "b"; return x; }());
    sd.begin_job({0, 1}, {0, tokens});
    EXPECT_GE(sd.chunk_tokens(), 300);
    EXPECT_LT(sd.chunk_tokens(), tokens);
    DitGeometry n = g;
    n.chunk_tokens = sd.chunk_tokens();
    EXPECT_LE(dit_activation_bytes(n), at300);
    n.chunk_tokens = sd.chunk_tokens() + 1;
    EXPECT_GT(dit_activation_bytes(n), at300);
  }
  // Not even the smallest chunk: refused, naming the room.
  o.ranks[0].budget.budget_bytes = slots + probe.nonblock_bytes() + 1024;
  {
    StreamedDit sd(pool, m.experts(), [&] { auto x = o; x.name = "c"; return x; }());
    try {
      sd.begin_job({0, 1}, {0, tokens});
      FAIL() << "expected the activation room to be refused";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::kConfig);
      EXPECT_NE(std::string(e.what()).find("activation room 1.0 KiB"), std::string::npos) << e.what();
    }
  }
  // Budget below context + slots + non-block weights.
  o.ranks[0].budget.budget_bytes = slots;
  {
    StreamedDit sd(pool, m.experts(), [&] { auto x = o; x.name = "d"; return x; }());
    try {
      sd.begin_job({0, 1}, {0, tokens});
      FAIL() << "expected the budget to be refused";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::kConfig);
      EXPECT_NE(std::string(e.what()).find("no room for activations"), std::string::npos) << e.what();
    }
  }
}

// Note [Branch spill]: the uncond stream kept in a host blob between blocks changes
// nothing (exact copies); chosen by the budget only when no chunk fits otherwise.
TEST(StreamedDit, SpilledUncondStreamEqualsResidentBitwise) {
  TinyModel m;
  const auto [block, all] = block_sizes(m);
  (void)all;
  memory::MemoryPool pool(test::tiny_pool_config(32ull << 20, 3 * block));
  StreamedDitOptions o = streamed_options(pool, m.spool());
  o.spill_uncond = 1;
  StreamedDit sd(pool, m.experts(), o);
  WanGenerator resident(m.dir(), cpu_options());
  GeneratorOptions so = cpu_options();
  so.cfg_forward = sd.cfg_forward();
  WanGenerator streamed(m.dir(), so);
  GenState a = resident.prepare(request());
  GenState b = streamed.prepare(request());
  sd.begin_job(streamed.expert_of_step(b), {0, b.seq_len});
  EXPECT_TRUE(sd.spills_uncond());
  while (a.completed_steps() < a.total_steps()) {
    resident.step(a);
    streamed.step(b);
    ASSERT_TRUE(at::equal(a.latent, b.latent)) << "step " << a.completed_steps();
  }
  const nlohmann::json job = sd.stats_json()["job"];
  // Per step: out after each of the 2 blocks, in before block 1 and before the head.
  const std::uint64_t stream = static_cast<std::uint64_t>(b.seq_len) * 64 * 4;
  EXPECT_EQ(job["spill_bytes"].get<std::uint64_t>(), 6 * 4 * stream);
  sd.end_job();

  // Auto: a room that fits the smallest chunk only with one stream on the device.
  const model::WanConfig cfg = model::WanConfig::from_preset("tiny-t2v", model::testing::kTinyTextDim);
  DitGeometry g;
  g.tokens = 1200;
  g.dim = cfg.dim;
  g.ffn_dim = cfg.ffn_dim;
  g.text_len = cfg.text_len;
  g.run_bytes = 4;
  g.chunk_tokens = 256;
  g.spill_uncond = true;
  const std::uint64_t spilled_min = dit_activation_bytes(g);
  StreamedDitOptions ao = streamed_options(pool, m.spool());
  ao.name = "auto";
  StreamedDit probe(pool, m.experts(), ao);
  ao.name = "auto2";
  ao.ranks[0].budget.budget_bytes = pool.tier(pool.device_tier(0)).bytes_capacity() + probe.nonblock_bytes() + spilled_min;
  StreamedDit sa(pool, m.experts(), ao);
  sa.begin_job({0, 1}, {0, 1200});
  EXPECT_TRUE(sa.spills_uncond());
  EXPECT_GE(sa.chunk_tokens(), 256);
  ao.name = "auto3";
  ao.spill_uncond = 0;  // never: refused
  StreamedDit sn(pool, m.experts(), ao);
  EXPECT_THROW(sn.begin_job({0, 1}, {0, 1200}), Error);
}

TEST(StreamedDit, ChunkedStreamedRunMatchesResident) {
  TinyModel m;
  const auto [block, all] = block_sizes(m);
  (void)all;
  memory::MemoryPool pool(test::tiny_pool_config(32ull << 20, 3 * block));
  StreamedDitOptions o = streamed_options(pool, m.spool());
  o.chunk_tokens = 5;  // 12 tokens in chunks of 5, 5, 2
  StreamedDit sd(pool, m.experts(), o);
  WanGenerator resident(m.dir(), cpu_options());
  GeneratorOptions so = cpu_options();
  so.cfg_forward = sd.cfg_forward();
  WanGenerator streamed(m.dir(), so);
  GenState a = resident.prepare(request());
  GenState b = streamed.prepare(request());
  sd.begin_job(streamed.expert_of_step(b), {0, b.seq_len});
  EXPECT_EQ(sd.chunk_tokens(), 5);
  while (a.completed_steps() < a.total_steps()) {
    resident.step(a);
    streamed.step(b);
  }
  EXPECT_TRUE(at::allclose(a.latent, b.latent, 1e-5, 1e-5)) << (a.latent - b.latent).abs().max().item<float>();
}

// A pool with a host tier and `cards` CPU device tiers of device_bytes each.
memory::PoolConfig cards_pool_config(int cards, std::uint64_t host_bytes, std::uint64_t device_bytes) {
  nlohmann::json devices = nlohmann::json::array();
  for (int g = 0; g < cards; ++g) devices.push_back({{"index", g}, {"bytes", device_bytes}, {"backend", "cpu"}});
  nlohmann::json j = {{"host", {{"bytes", host_bytes}, {"pinned", false}}},
                      {"devices", devices},
                      {"io", {{"engine", "psync"}}}};
  return memory::PoolConfig::from_json(j);
}

// Host tier bytes used, and the host copy bytes of one set of the stores' blocks.
std::pair<std::uint64_t, std::uint64_t> host_bytes(memory::MemoryPool& pool, const StreamedDit& sd) {
  std::uint64_t one = 0;
  for (std::size_t e = 0; e < sd.num_experts(); ++e) {
    for (const BlockBlob& b : sd.store(e).blocks()) one += pool.copy_bytes(b.id, pool.host_tier());
  }
  return {pool.tier(pool.host_tier()).stats().bytes_used, one};
}

// Two jobs of one model at once on two cards of one pool (two threads), each through its
// own StreamedDit, with one StoreCache for both (shared) or none. Checks the latents
// against `want`; returns the host tier's used bytes and one copy of the blocks' bytes.
struct TwoCards {
  std::uint64_t host_used = 0, one_copy = 0;
  std::size_t cached_stores = 0;
};
TwoCards run_two_cards(const TinyModel& m, std::uint64_t block, bool shared, const at::Tensor& want) {
  memory::MemoryPool pool(cards_pool_config(2, 32ull << 20, 3 * block));
  StoreCache cache(pool, "shared");
  std::vector<std::unique_ptr<StreamedDit>> sds;
  for (int g = 0; g < 2; ++g) {
    StreamedDitOptions o = streamed_options(pool, m.spool());
    o.ranks[0].device_tier = pool.device_tier(g);
    o.name = "card" + std::to_string(g);
    o.stores = shared ? &cache : nullptr;
    sds.push_back(std::make_unique<StreamedDit>(pool, m.experts(), o));
  }
  for (std::size_t e = 0; e < 2; ++e) {
    EXPECT_EQ(&sds[0]->store(e) == &sds[1]->store(e), shared) << "expert " << e;
  }
  std::vector<at::Tensor> out(2);
  std::vector<std::string> errors(2);
  std::vector<std::thread> threads;
  for (int g = 0; g < 2; ++g) {
    threads.emplace_back([&, g] {
      StreamedDit& sd = *sds[static_cast<std::size_t>(g)];
      try {
        GeneratorOptions so = cpu_options();
        so.cfg_forward = sd.cfg_forward();
        WanGenerator gen(m.dir(), so);
        GenState st = gen.prepare(request());
        sd.begin_job(gen.expert_of_step(st), {0, st.seq_len});
        while (st.completed_steps() < st.total_steps()) gen.step(st);
        sd.end_job();
        out[static_cast<std::size_t>(g)] = st.latent;
      } catch (const std::exception& e) {
        errors[static_cast<std::size_t>(g)] = e.what();
      }
    });
  }
  for (auto& t : threads) t.join();
  for (int g = 0; g < 2; ++g) {
    EXPECT_EQ(errors[static_cast<std::size_t>(g)], "") << "card " << g;
    if (!out[static_cast<std::size_t>(g)].defined()) continue;
    EXPECT_TRUE(at::equal(out[static_cast<std::size_t>(g)], want)) << "card " << g;
    EXPECT_GT(pool.tier(pool.device_tier(g)).stats().bytes_moved_in, 0u) << "card " << g;
  }
  for (const auto& sd : sds) {
    for (std::size_t e = 0; e < 2; ++e) {
      for (const BlockBlob& b : sd->store(e).blocks()) {
        EXPECT_EQ(pool.state(b.id, pool.host_tier()), memory::CopyState::kReady) << b.blob_name;
      }
    }
  }
  TwoCards r;
  std::tie(r.host_used, r.one_copy) = host_bytes(pool, *sds[0]);
  r.cached_stores = cache.size();
  return r;
}

TEST(StreamedDit, TwoCardsShareOneHostCopyThroughTheStoreCache) {
  TinyModel m;
  const auto [block, all] = block_sizes(m);
  (void)all;
  WanGenerator resident(m.dir(), cpu_options());
  GenState ref = resident.prepare(request());
  while (ref.completed_steps() < ref.total_steps()) resident.step(ref);

  // Without a cache: two stores per expert, two host copies of every block.
  const TwoCards own = run_two_cards(m, block, false, ref.latent);
  ASSERT_GT(own.one_copy, 0u);
  EXPECT_EQ(own.host_used, 2 * own.one_copy);
  EXPECT_EQ(own.cached_stores, 0u);
  // With one: one store per expert (not per card), one host copy, the same latents.
  const TwoCards shared = run_two_cards(m, block, true, ref.latent);
  EXPECT_EQ(shared.cached_stores, 2u);
  EXPECT_EQ(shared.one_copy, own.one_copy);
  EXPECT_EQ(shared.host_used, shared.one_copy) << "the host tier holds more than one copy of the model's blocks";

  // A cache over another pool is refused.
  memory::MemoryPool other(cards_pool_config(1, 32ull << 20, 3 * block));
  memory::MemoryPool pool(cards_pool_config(1, 32ull << 20, 3 * block));
  StoreCache wrong(other, "x");
  StreamedDitOptions o = streamed_options(pool, m.spool());
  o.stores = &wrong;
  try {
    StreamedDit sd(pool, m.experts(), o);
    FAIL() << "accepted a cache over another pool";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kConfig);
    EXPECT_NE(std::string(e.what()).find("another memory pool"), std::string::npos) << e.what();
  }
}

TEST(StreamedDit, SharedStoresPlanTheHostTierOnlyForAJobAlone) {
  TinyModel m;
  const auto [block, all] = block_sizes(m);
  (void)all;
  memory::MemoryPool pool(cards_pool_config(3, 32ull << 20, 3 * block));
  StoreCache cache(pool, "shared");
  auto make = [&](int g, std::uint64_t host_window) {
    StreamedDitOptions o = streamed_options(pool, m.spool());
    o.ranks[0].device_tier = pool.device_tier(g);
    o.name = "card" + std::to_string(g);
    o.host_window_bytes = host_window;
    o.stores = &cache;
    return std::make_unique<StreamedDit>(pool, m.experts(), o);
  };
  auto a = make(0, 2 * block), b = make(1, 2 * block), c = make(2, 0);
  EXPECT_EQ(cache.size(), 2u);
  const std::vector<int> schedule = {0, 0, 1, 1};
  a->begin_job(schedule, {0, 0});
  EXPECT_TRUE(a->host_planning()) << "alone on its stores";
  EXPECT_EQ(cache.jobs_on(&a->store(0)), 1);
  try {  // a second job while `a` plans the host tier
    b->begin_job(schedule, {0, 0});
    FAIL() << "a second job started on stores whose host tier another job plans";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kConfig);
    EXPECT_NE(std::string(e.what()).find("job 'card0' plans the host tier"), std::string::npos) << e.what();
  }
  EXPECT_THROW(c->begin_job(schedule, {0, 0}), Error);  // also without host planning
  EXPECT_EQ(cache.jobs_on(&a->store(0)), 1);  // the refused jobs left nothing behind
  a->end_job();
  EXPECT_EQ(cache.jobs_on(&a->store(0)), 0);

  c->begin_job(schedule, {0, 0});  // no host planning: any number of jobs
  b->begin_job(schedule, {0, 0});
  EXPECT_FALSE(b->host_planning()) << "started beside another job: runs without host planning";
  EXPECT_EQ(cache.jobs_on(&a->store(1)), 2);
  EXPECT_EQ(b->stats_json()["host_planning"].get<bool>(), false);
  b->end_job();
  c->end_job();
  b->begin_job(schedule, {0, 0});
  EXPECT_TRUE(b->host_planning());
  b->end_job();
}

}  // namespace
}  // namespace wand::sched

namespace wand::sched {
namespace {

// Note [Guidance 1] (model/sampler_schedule.h) on the streamed single-card executor: a job with
// guide scale 1 runs one forward per step (the executor's counter), equals the resident
// generator bitwise, never spills, and plans one residual stream (a smaller activation need).
TEST(StreamedDit, GuidanceOneRunsOneStreamedForwardPerStep) {
  TinyModel m;
  const auto [block, all] = block_sizes(m);
  (void)all;
  memory::MemoryPool pool(test::tiny_pool_config(32ull << 20, 3 * block));
  StreamedDitOptions o = streamed_options(pool, m.spool());
  o.spill_uncond = 1;  // asked for, and moot: there is no uncond stream
  StreamedDit sd(pool, m.experts(), o);
  WanGenerator resident(m.dir(), cpu_options());
  GeneratorOptions so = cpu_options();
  so.cfg_forward = sd.cfg_forward();
  WanGenerator streamed(m.dir(), so);
  GenRequest req = request();
  req.guide_scale = {1.0};
  GenState a = resident.prepare(req);
  GenState b = streamed.prepare(req);
  ASSERT_FALSE(b.context_null.defined());
  sd.begin_job(streamed.expert_of_step(b), {0, b.seq_len, /*uncond=*/false});
  EXPECT_FALSE(sd.spills_uncond());
  while (a.completed_steps() < a.total_steps()) {
    resident.step(a);
    streamed.step(b);
    ASSERT_TRUE(at::equal(a.latent, b.latent)) << "step " << a.completed_steps();
  }
  const nlohmann::json job = sd.stats_json()["job"];
  EXPECT_EQ(job["steps"].get<int>(), 6);
  EXPECT_EQ(job["forwards"].get<int>(), 6) << job.dump();
  EXPECT_EQ(job["spill_bytes"].get<std::uint64_t>(), 0u);
  sd.end_job();

  // The same job guided: two forwards a step.
  GenState c = streamed.prepare(request());
  sd.begin_job(streamed.expert_of_step(c), {0, c.seq_len});
  while (c.completed_steps() < c.total_steps()) streamed.step(c);
  EXPECT_EQ(sd.stats_json()["job"]["forwards"].get<int>(), 12);
  sd.end_job();
  EXPECT_FALSE(at::equal(c.latent, b.latent));

  // One stream fewer in the plan: a budget that fits the cond stream alone.
  StreamedDitOptions bo = streamed_options(pool, m.spool());
  bo.name = "budget";
  bo.ranks[0].budget.budget_bytes = pool.tier(pool.device_tier(0)).bytes_capacity() + sd.nonblock_bytes() + (8ull << 20);
  StreamedDit sb(pool, m.experts(), bo);
  const std::vector<CardJobBudget> two = sb.plan_job(1200, true), one = sb.plan_job(1200, false);
  ASSERT_EQ(two.size(), 1u);
  ASSERT_GT(two[0].need, 0u);
  EXPECT_LT(one[0].need, two[0].need);
  EXPECT_EQ(two[0].need - one[0].need, 1200ull * 64 * 4) << "one fp32 [S, D] stream fewer";
}

}  // namespace
}  // namespace wand::sched
