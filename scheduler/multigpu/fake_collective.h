// FakeCollective: a group of N ranks inside one process, one thread per rank,
// meeting at a shared rendezvous (mutex + condition variable). Used by the
// CPU tests of the multi-GPU drivers in place of NCCL. Deterministic: every
// collective's result depends only on the ranks' inputs.
//
//   std::vector<std::unique_ptr<Collective>> g = FakeCollective::create_group(3);
//   std::thread t([&] { at::Tensor y = g[1]->all_gather(x1, 0); });
//
// Owns copies of the tensors in flight (sent tensors are cloned, so the
// sender may reuse its tensor at once). Each rank object is used by one
// thread. A rank that waits longer than timeout_ms (default 120 s) for its
// peers throws kInternal instead of hanging the test (a peer died or called a
// different collective).
#pragma once

#include <memory>
#include <vector>

#include "scheduler/multigpu/collective.h"

namespace wand::sched {

class FakeCollective : public Collective {
 public:
  struct Shared;  // the rendezvous of one group (fake_collective.cpp)

  static std::vector<std::unique_ptr<Collective>> create_group(int world_size, int64_t timeout_ms = 120000);

  FakeCollective(std::shared_ptr<Shared> shared, int rank);
  ~FakeCollective() override;

  int rank() const override { return rank_; }
  int world_size() const override;
  std::string describe() const override;
  at::Tensor all_to_all(const at::Tensor& x, int64_t split_dim, int64_t concat_dim) override;
  at::Tensor all_gather(const at::Tensor& x, int64_t dim) override;
  void send(const at::Tensor& x, int peer) override;
  void recv(at::Tensor& out, int peer) override;
  void barrier() override;

 private:
  // Deposits outgoing[j] for rank j, waits for all ranks, returns incoming[i] from rank i.
  std::vector<at::Tensor> exchange(std::vector<at::Tensor> outgoing);
  void check_peer(int peer, const char* op) const;

  std::shared_ptr<Shared> shared_;
  int rank_;
};

}  // namespace wand::sched
