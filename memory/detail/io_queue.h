// IoQueue: the order in which an IoEngine submits chunks: demand (urgent) requests before
// prefetches, first come first served within each class, and a requeued chunk (a short
// read) at the head of its class. Not thread-safe: each engine guards its queue.
//
//   IoQueue q;
//   q.push(split_request(prefetch_op, chunk), /*urgent=*/false);
//   q.push(split_request(demand_op, chunk), /*urgent=*/true);
//   IoChunk next = q.pop();    // the demand's first chunk
#pragma once

#include <deque>
#include <vector>

#include "memory/detail/io_op.h"

namespace wand::memory::detail {

class IoQueue {
 public:
  void push(std::vector<IoChunk> chunks, bool urgent) {
    auto& q = urgent ? urgent_ : normal_;
    for (auto& c : chunks) q.push_back(std::move(c));
  }
  void push_back(IoChunk chunk) { (chunk.op->req.urgent ? urgent_ : normal_).push_back(std::move(chunk)); }
  void push_front(IoChunk chunk) { (chunk.op->req.urgent ? urgent_ : normal_).push_front(std::move(chunk)); }
  bool empty() const { return urgent_.empty() && normal_.empty(); }
  std::size_t size() const { return urgent_.size() + normal_.size(); }
  IoChunk pop() {
    auto& q = urgent_.empty() ? normal_ : urgent_;
    IoChunk c = std::move(q.front());
    q.pop_front();
    return c;
  }

 private:
  std::deque<IoChunk> urgent_;
  std::deque<IoChunk> normal_;
};

}  // namespace wand::memory::detail
