// Collective: the communication primitives of one rank in a group of ranks
// (one GPU, or one fake device thread), on tensors (CPU or CUDA).
//
//   auto ranks = FakeCollective::create_group(4);          // or NcclCollective::create_group({0, 1})
//   // on rank r's own thread:
//   Collective& c = *ranks[r];
//   at::Tensor y = c.all_to_all(x, /*split_dim=*/2, /*concat_dim=*/1);  // heads out, tokens in
//   at::Tensor g = c.all_gather(part, /*dim=*/1);          // [.., W * n, ..]
//   c.send(t, peer);  c.recv(out, peer);  c.barrier();
//
// Every rank of a group must call the same collectives in the same order
// (all_to_all, all_gather, barrier); send/recv pair up per (sender, receiver)
// in call order. A Collective object belongs to one thread (its rank's
// thread); the group is shared by those threads. Errors throw wand::Error.
#pragma once

#include <cstdint>
#include <string>

#include <ATen/ATen.h>

namespace wand::sched {

class Collective {
 public:
  virtual ~Collective() = default;

  virtual int rank() const = 0;
  virtual int world_size() const = 0;
  // Short description for logs and errors, e.g. "fake rank=1/4".
  virtual std::string describe() const = 0;

  // x is split into world_size() equal chunks along split_dim (its size must
  // divide); chunk j goes to rank j. Returns the chunks received from ranks
  // 0..W-1 concatenated along concat_dim. Every rank passes the same shape.
  // Example (Ulysses, W = 2): x [1, S/2, N, d], split 2, concat 1 -> [1, S, N/2, d].
  virtual at::Tensor all_to_all(const at::Tensor& x, int64_t split_dim, int64_t concat_dim) = 0;
  // Concatenation along dim of every rank's x (same shape on every rank), rank order.
  virtual at::Tensor all_gather(const at::Tensor& x, int64_t dim) = 0;
  // Point to point. recv fills `out`, which has the sender's shape and dtype.
  virtual void send(const at::Tensor& x, int peer) = 0;
  virtual void recv(at::Tensor& out, int peer) = 0;
  // Returns once every rank of the group has entered barrier().
  virtual void barrier() = 0;
};

}  // namespace wand::sched
