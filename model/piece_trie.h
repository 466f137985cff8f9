// A byte trie over the tokenizer's pieces: the lookups sentencepiece does with
// its darts-clone double array (every piece that is a prefix of the text at a
// position, shortest first; the longest such piece), without hashing substrings
// or scanning the vocabulary.
//
//   PieceTrie t;
//   t.build({{"\xE2\x96\x81", 3}, {"\xE2\x96\x81" "a", 4}});
//   t.prefixes(s, n, [&](std::size_t len, int value) { ... });   // len 3 then 4
//   auto [len, value] = t.longest_prefix(s, n);                    // (4, 4)
//
// Note [piece trie layout]: nodes are numbered breadth first, so the children
// of a node are consecutive nodes [first_child, first_child + n_children) and
// labels_[i] is the byte that leads to node i. A node with few children is
// searched linearly in labels_; one with many (the root, the node after U+2581,
// lead bytes of big scripts) gets a 256-entry table. A step costs one or two
// cache lines; 12 bytes a node (the synthetic 256,384-piece vocabulary of
// model/tokenizer_synth.h: 3.1 MB of pieces, 0.57 M nodes).
// Immutable after build(); lookups from any thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace wand::model {

class PieceTrie {
 public:
  // keys: (bytes, value >= 0). An empty key is ignored; for a key given twice
  // the first value wins.
  void build(std::vector<std::pair<std::string, int>> keys);

  bool empty() const { return nodes_.size() <= 1; }
  std::size_t node_count() const { return nodes_.size(); }

  // f(length, value) for every key equal to s[0, length), length ascending.
  template <class F>
  void prefixes(const char* s, std::size_t n, F&& f) const {
    if (nodes_.empty()) return;
    std::uint32_t node = 0;
    for (std::size_t i = 0; i < n; ++i) {
      node = child(node, static_cast<unsigned char>(s[i]));
      if (node == kNone) return;
      const int v = nodes_[node].value;
      if (v >= 0) f(i + 1, v);
    }
  }

  // The longest key that is a prefix of s[0, n): (length, value), or (0, -1).
  std::pair<std::size_t, int> longest_prefix(const char* s, std::size_t n) const {
    std::pair<std::size_t, int> best{0, -1};
    prefixes(s, n, [&](std::size_t len, int v) { best = {len, v}; });
    return best;
  }

 private:
  static constexpr std::uint32_t kNone = 0;  // node 0 is the root, never a child
  static constexpr std::uint32_t kDenseChildren = 12;

  struct Node {
    std::uint32_t first_child = 0;
    std::uint32_t n_children = 0;  // < 2^9; the high bits hold 1 + dense table index, 0 = none
    int value = -1;
  };

  std::uint32_t child(std::uint32_t node, unsigned char c) const {
    const Node& nd = nodes_[node];
    const std::uint32_t dense = nd.n_children >> 9;
    if (dense != 0) return dense_[(static_cast<std::size_t>(dense - 1) << 8) | c];
    const std::uint32_t cnt = nd.n_children & 0x1FF;
    const unsigned char* l = labels_.data() + nd.first_child;
    for (std::uint32_t k = 0; k < cnt; ++k) {
      if (l[k] == c) return nd.first_child + k;
    }
    return kNone;
  }

  std::vector<Node> nodes_;
  std::vector<unsigned char> labels_;  // labels_[i]: the byte on the edge into node i
  std::vector<std::uint32_t> dense_;   // 256 child ids per dense node, kNone = no child
};

}  // namespace wand::model
