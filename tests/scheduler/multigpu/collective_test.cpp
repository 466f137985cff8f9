// FakeCollective: all_to_all, all_gather, send/recv and barrier across rank threads.
#include <gtest/gtest.h>

#include <atomic>
#include <exception>
#include <functional>
#include <thread>

#include "common/error.h"
#include "scheduler/multigpu/fake_collective.h"

namespace {

using wand::sched::Collective;
using wand::sched::FakeCollective;

// Runs fn(rank, collective) on one thread per rank; rethrows the first failure.
void run_ranks(std::vector<std::unique_ptr<Collective>>& g, const std::function<void(int, Collective&)>& fn) {
  std::vector<std::exception_ptr> errs(g.size());
  std::vector<std::thread> threads;
  for (size_t r = 0; r < g.size(); ++r) {
    threads.emplace_back([&, r] {
      try {
        fn(static_cast<int>(r), *g[r]);
      } catch (...) {
        errs[r] = std::current_exception();
      }
    });
  }
  for (auto& t : threads) t.join();
  for (auto& e : errs) {
    if (e) std::rethrow_exception(e);
  }
}

// Rank r's tensor: value = 1000 r + position, shape [2, 6, 3].
at::Tensor rank_tensor(int r) { return at::arange(36, at::kFloat).reshape({2, 6, 3}) + 1000.0 * r; }

TEST(FakeCollective, AllToAllMatchesTheDefinition) {
  for (int W : {1, 2, 3}) {
    auto g = FakeCollective::create_group(W);
    std::vector<at::Tensor> got(W);
    run_ranks(g, [&](int r, Collective& c) {
      EXPECT_EQ(c.rank(), r);
      EXPECT_EQ(c.world_size(), W);
      got[r] = c.all_to_all(rank_tensor(r), /*split_dim=*/1, /*concat_dim=*/2);
    });
    for (int r = 0; r < W; ++r) {
      std::vector<at::Tensor> parts;
      for (int src = 0; src < W; ++src) parts.push_back(rank_tensor(src).split(6 / W, 1)[r]);
      at::Tensor expect = at::cat(parts, 2);
      ASSERT_EQ(got[r].sizes(), expect.sizes()) << "W=" << W;
      EXPECT_TRUE(at::equal(got[r], expect)) << "W=" << W << " rank " << r;
    }
  }
}

TEST(FakeCollective, AllToAllRoundTripRestoresTheInput) {
  // Ulysses pattern: split heads / gather tokens, then split tokens / gather heads.
  auto g = FakeCollective::create_group(3);
  run_ranks(g, [&](int r, Collective& c) {
    at::Tensor x = at::randn({1, 4, 6, 5}, at::TensorOptions().dtype(at::kDouble)) + r;
    at::Tensor y = c.all_to_all(x, 2, 1);
    EXPECT_EQ(y.sizes(), (at::IntArrayRef{1, 12, 2, 5}));
    at::Tensor back = c.all_to_all(y, 1, 2);
    EXPECT_TRUE(at::equal(back, x)) << "rank " << r;
  });
}

TEST(FakeCollective, AllGatherConcatenatesInRankOrder) {
  auto g = FakeCollective::create_group(4);
  std::vector<at::Tensor> got(4);
  run_ranks(g, [&](int r, Collective& c) { got[r] = c.all_gather(rank_tensor(r), 1); });
  std::vector<at::Tensor> parts;
  for (int r = 0; r < 4; ++r) parts.push_back(rank_tensor(r));
  at::Tensor expect = at::cat(parts, 1);
  for (int r = 0; r < 4; ++r) EXPECT_TRUE(at::equal(got[r], expect)) << r;
}

TEST(FakeCollective, SendRecvPairsInOrderAndBarrierWaitsForAll) {
  auto g = FakeCollective::create_group(3);
  std::atomic<int> entered{0};
  run_ranks(g, [&](int r, Collective& c) {
    // Ring: r sends two messages to r+1 and receives two from r-1.
    const int next = (r + 1) % 3, prev = (r + 2) % 3;
    c.send(at::full({2, 2}, 10.0 * r + 1), next);
    c.send(at::full({2, 2}, 10.0 * r + 2), next);
    at::Tensor a = at::zeros({2, 2}), b = at::zeros({2, 2});
    c.recv(a, prev);
    c.recv(b, prev);
    EXPECT_TRUE(at::equal(a, at::full({2, 2}, 10.0 * prev + 1))) << r;
    EXPECT_TRUE(at::equal(b, at::full({2, 2}, 10.0 * prev + 2))) << r;
    entered.fetch_add(1);
    c.barrier();
    EXPECT_EQ(entered.load(), 3) << "barrier returned before every rank entered";
  });
}

TEST(FakeCollective, BadInputsThrowNamingTheProblem) {
  EXPECT_THROW(FakeCollective::create_group(0), wand::Error);
  auto g = FakeCollective::create_group(2);
  // Split dim of size 3 does not divide by 2: every rank throws before meeting.
  run_ranks(g, [&](int, Collective& c) {
    try {
      c.all_to_all(at::zeros({3, 4}), 0, 0);
      ADD_FAILURE() << "expected an error";
    } catch (const wand::Error& e) {
      EXPECT_NE(std::string(e.what()).find("does not divide"), std::string::npos) << e.what();
    }
  });
  at::Tensor out = at::zeros({2});
  EXPECT_THROW(g[0]->send(out, 5), wand::Error);
  g[0]->send(at::zeros({3}), 1);
  EXPECT_THROW(g[1]->recv(out, 0), wand::Error);  // shape mismatch
  // A peer that never arrives: the waiting rank times out instead of hanging.
  auto lone = FakeCollective::create_group(2, /*timeout_ms=*/50);
  EXPECT_THROW(lone[0]->barrier(), wand::Error);
}

}  // namespace
