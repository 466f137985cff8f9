#include "model/piece_trie.h"

#include <algorithm>
#include <deque>

#include "common/error.h"

namespace wand::model {

void PieceTrie::build(std::vector<std::pair<std::string, int>> keys) {
  keys.erase(std::remove_if(keys.begin(), keys.end(), [](const auto& k) { return k.first.empty() || k.second < 0; }),
             keys.end());
  // Byte order (std::string compares as unsigned char); stable, so the first of
  // two equal keys comes first and wins below.
  std::stable_sort(keys.begin(), keys.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  nodes_.assign(1, Node{});
  labels_.assign(1, 0);
  dense_.clear();
  struct Pending {
    std::uint32_t node;
    std::size_t lo, hi, depth;  // keys [lo, hi) share their first `depth` bytes
  };
  std::deque<Pending> queue;
  queue.push_back({0, 0, keys.size(), 0});
  while (!queue.empty()) {
    const Pending p = queue.front();
    queue.pop_front();
    std::size_t i = p.lo;
    // Keys that end here come first in sorted order.
    if (i < p.hi && keys[i].first.size() == p.depth) {
      nodes_[p.node].value = keys[i].second;
      while (i < p.hi && keys[i].first.size() == p.depth) ++i;
    }
    const std::size_t first = nodes_.size();
    if (first > 0xFFFFFFFFu - 256) throw Error(ErrorCode::kModelFormat, "tokenizer: piece trie exceeds 2^32 nodes");
    std::uint32_t count = 0;
    while (i < p.hi) {
      const unsigned char c = static_cast<unsigned char>(keys[i].first[p.depth]);
      std::size_t j = i;
      while (j < p.hi && static_cast<unsigned char>(keys[j].first[p.depth]) == c) ++j;
      const auto id = static_cast<std::uint32_t>(nodes_.size());
      nodes_.push_back(Node{});
      labels_.push_back(c);
      queue.push_back({id, i, j, p.depth + 1});
      ++count;
      i = j;
    }
    Node& nd = nodes_[p.node];
    nd.first_child = static_cast<std::uint32_t>(first);
    nd.n_children = count;
    if (count > kDenseChildren) {
      const std::size_t table = dense_.size() / 256;
      dense_.resize(dense_.size() + 256, kNone);
      for (std::uint32_t k = 0; k < count; ++k) dense_[table * 256 + labels_[first + k]] = static_cast<std::uint32_t>(first + k);
      nd.n_children |= static_cast<std::uint32_t>(table + 1) << 9;
    }
  }
}

}  // namespace wand::model
