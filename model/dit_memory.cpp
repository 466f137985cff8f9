#include "model/dit_memory.h"

#include <algorithm>

namespace wand::model {

std::uint64_t dit_activation_bytes(const DitActivationShape& s) {
  const auto S = static_cast<std::uint64_t>(s.tokens), D = static_cast<std::uint64_t>(s.dim),
             F = static_cast<std::uint64_t>(s.ffn_dim), L = static_cast<std::uint64_t>(s.text_len),
             e = static_cast<std::uint64_t>(s.run_bytes);
  const std::uint64_t chunk =
      s.chunk_tokens > 0 ? std::min<std::uint64_t>(S, static_cast<std::uint64_t>(s.chunk_tokens)) : S;
  const std::uint64_t streams = static_cast<std::uint64_t>(s.streams) * S * D * 4;
  const std::uint64_t inputs = S * D * e + 2 * L * D * e + S * 64 * 4;  // tokens, contexts, rope
  const std::uint64_t attn = S * D * 4 + 5 * S * D * e;
  const std::uint64_t ffn = S * D * 4 + 2 * S * D * e + 2 * chunk * F * e;
  return streams + inputs + std::max(attn, ffn);  // Note [Activation estimate]
}

}  // namespace wand::model
