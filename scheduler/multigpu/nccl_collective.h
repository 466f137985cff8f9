// NcclCollective: Collective over NCCL for the GPUs of one process, one
// communicator per GPU of the group, one thread per GPU (the rank's thread).
// Built only when WAND_HAVE_NCCL.
//
//   auto g = NcclCollective::create_group({0, 1, 2, 3});   // ncclCommInitAll, from one thread
//   // on GPU r's thread (cudaSetDevice is done by every call):
//   at::Tensor y = g[r]->all_to_all(x, 2, 1);              // x on cuda:devices[r]
//
// Note [NCCL stream]: the collectives run on the legacy default CUDA stream,
// the stream LibTorch launches its kernels on unless told otherwise, so they
// are ordered after the kernels that produced their inputs and before the
// kernels that read their outputs, and the caching allocator may recycle the
// staging buffers as soon as a call returns. Calls return once the work is
// enqueued, except barrier() which waits for the stream. all_to_all is one
// ncclGroupStart/End of W send/recv pairs. send/recv to the rank itself
// would deadlock (separate calls): use a copy instead.
// Owns the communicator (destroyed with the object).
#pragma once

#include <memory>
#include <vector>

#include "scheduler/multigpu/collective.h"

namespace wand::sched {

class NcclCollective : public Collective {
 public:
  // One rank per entry of `devices` (CUDA ordinals, distinct). Call from one thread.
  static std::vector<std::unique_ptr<Collective>> create_group(const std::vector<int>& devices);
  ~NcclCollective() override;

  int rank() const override { return rank_; }
  int world_size() const override { return world_; }
  int device() const { return device_; }
  std::string describe() const override;
  at::Tensor all_to_all(const at::Tensor& x, int64_t split_dim, int64_t concat_dim) override;
  at::Tensor all_gather(const at::Tensor& x, int64_t dim) override;
  void send(const at::Tensor& x, int peer) override;
  void recv(at::Tensor& out, int peer) override;
  void barrier() override;

 private:
  struct Comm;  // wraps ncclComm_t (nccl_collective.cpp)
  NcclCollective(std::unique_ptr<Comm> comm, int rank, int world, int device);
  void check_tensor(const at::Tensor& x, const char* op) const;

  std::unique_ptr<Comm> comm_;
  int rank_, world_, device_;
};

}  // namespace wand::sched
