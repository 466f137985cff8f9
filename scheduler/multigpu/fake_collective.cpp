#include "scheduler/multigpu/fake_collective.h"

#include <chrono>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>

#include "common/error.h"

namespace wand::sched {

struct FakeCollective::Shared {
  int world = 0;
  std::chrono::milliseconds timeout{0};
  std::mutex mu;
  std::condition_variable cv;
  int arrived = 0;              // guarded by mu
  uint64_t generation = 0;      // guarded by mu: completed barriers
  std::vector<std::vector<at::Tensor>> slots;        // guarded by mu: [src][dst]
  std::map<std::pair<int, int>, std::deque<at::Tensor>> mail;  // guarded by mu: (src, dst) -> FIFO

  // Waits (lock held) until every rank has arrived at this barrier.
  void barrier_locked(std::unique_lock<std::mutex>& lk, int rank) {
    const uint64_t gen = generation;
    if (++arrived == world) {
      arrived = 0;
      ++generation;
      cv.notify_all();
      return;
    }
    if (!cv.wait_for(lk, timeout, [&] { return generation != gen; })) {
      throw Error(ErrorCode::kInternal, "fake collective: rank " + std::to_string(rank) + " of " +
                                            std::to_string(world) + " timed out waiting for its peers");
    }
  }
};

std::vector<std::unique_ptr<Collective>> FakeCollective::create_group(int world_size, int64_t timeout_ms) {
  if (world_size < 1) {
    throw Error(ErrorCode::kBadRequest, "fake collective: world size must be >= 1, got " + std::to_string(world_size));
  }
  auto shared = std::make_shared<Shared>();
  shared->world = world_size;
  shared->timeout = std::chrono::milliseconds(timeout_ms);
  shared->slots.resize(world_size);
  std::vector<std::unique_ptr<Collective>> ranks;
  for (int r = 0; r < world_size; ++r) ranks.push_back(std::make_unique<FakeCollective>(shared, r));
  return ranks;
}

FakeCollective::FakeCollective(std::shared_ptr<Shared> shared, int rank) : shared_(std::move(shared)), rank_(rank) {}
FakeCollective::~FakeCollective() = default;

int FakeCollective::world_size() const { return shared_->world; }

std::string FakeCollective::describe() const {
  return "fake rank=" + std::to_string(rank_) + "/" + std::to_string(shared_->world);
}

void FakeCollective::check_peer(int peer, const char* op) const {
  if (peer < 0 || peer >= shared_->world) {
    throw Error(ErrorCode::kBadRequest, std::string("fake collective: ") + op + " peer " + std::to_string(peer) +
                                            " out of range for " + describe());
  }
}

std::vector<at::Tensor> FakeCollective::exchange(std::vector<at::Tensor> outgoing) {
  Shared& s = *shared_;
  std::unique_lock<std::mutex> lk(s.mu);
  s.slots[rank_] = std::move(outgoing);
  s.barrier_locked(lk, rank_);  // every rank has deposited
  std::vector<at::Tensor> incoming(s.world);
  for (int src = 0; src < s.world; ++src) incoming[src] = s.slots[src][rank_];
  s.barrier_locked(lk, rank_);  // every rank has read: slots may be reused
  s.slots[rank_].clear();
  return incoming;
}

at::Tensor FakeCollective::all_to_all(const at::Tensor& x, int64_t split_dim, int64_t concat_dim) {
  const int W = shared_->world;
  const int64_t sd = split_dim < 0 ? split_dim + x.dim() : split_dim;
  WAND_ASSERT(sd >= 0 && sd < x.dim(), "fake collective: all_to_all split dim out of range");
  if (x.size(sd) % W != 0) {
    throw Error(ErrorCode::kBadRequest, "fake collective: all_to_all split dim " + std::to_string(sd) + " of size " +
                                            std::to_string(x.size(sd)) + " does not divide by world size " +
                                            std::to_string(W));
  }
  std::vector<at::Tensor> out;
  for (const at::Tensor& c : x.split(x.size(sd) / W, sd)) out.push_back(c.clone(at::MemoryFormat::Contiguous));
  std::vector<at::Tensor> in = exchange(std::move(out));
  for (int src = 1; src < W; ++src) {
    if (in[src].sizes() != in[0].sizes() || in[src].scalar_type() != in[0].scalar_type()) {
      throw Error(ErrorCode::kBadRequest, "fake collective: all_to_all ranks passed different shapes or dtypes");
    }
  }
  return at::cat(in, concat_dim);
}

at::Tensor FakeCollective::all_gather(const at::Tensor& x, int64_t dim) {
  std::vector<at::Tensor> out(shared_->world, x.clone(at::MemoryFormat::Contiguous));
  std::vector<at::Tensor> in = exchange(std::move(out));
  for (size_t src = 1; src < in.size(); ++src) {
    if (in[src].sizes() != in[0].sizes() || in[src].scalar_type() != in[0].scalar_type()) {
      throw Error(ErrorCode::kBadRequest, "fake collective: all_gather ranks passed different shapes or dtypes");
    }
  }
  return at::cat(in, dim);
}

void FakeCollective::send(const at::Tensor& x, int peer) {
  check_peer(peer, "send");
  Shared& s = *shared_;
  std::lock_guard<std::mutex> lk(s.mu);
  s.mail[{rank_, peer}].push_back(x.clone(at::MemoryFormat::Contiguous));
  s.cv.notify_all();
}

void FakeCollective::recv(at::Tensor& out, int peer) {
  check_peer(peer, "recv");
  Shared& s = *shared_;
  std::unique_lock<std::mutex> lk(s.mu);
  auto& box = s.mail[{peer, rank_}];
  if (!s.cv.wait_for(lk, s.timeout, [&] { return !box.empty(); })) {
    throw Error(ErrorCode::kInternal, "fake collective: " + describe() + " timed out in recv from rank " +
                                          std::to_string(peer));
  }
  at::Tensor t = std::move(box.front());
  box.pop_front();
  lk.unlock();
  if (!out.defined() || out.sizes() != t.sizes() || out.scalar_type() != t.scalar_type()) {
    throw Error(ErrorCode::kBadRequest, "fake collective: recv buffer does not match the sent tensor (shape/dtype) on " +
                                            describe());
  }
  out.copy_(t);
}

void FakeCollective::barrier() {
  Shared& s = *shared_;
  std::unique_lock<std::mutex> lk(s.mu);
  s.barrier_locked(lk, rank_);
}

}  // namespace wand::sched
