// bench_tokenizer: wand::model::Tokenizer encoding typical Wan prompts, one
// thread, with umT5's vocabulary size (256,384 pieces).
//
//   bench_tokenizer [--model FILE]            a real spiece.model (default: the synthetic
//                                             umT5-sized model of model/tokenizer_synth.h)
//                   [--normalizer-from FILE]  take the normalizer (precompiled charsmap and
//                                             flags) from this spiece.model, e.g. a small one
//                                             spm_train made with nmt_nfkc like umT5's
//                   [--prompts 1000] [--repeat 5] [--pieces 256384]
//
// Prints one line per run and a summary: load (model build + trie), best and
// median seconds to encode all prompts (encode_ids: normalize + Viterbi), the
// pieces produced, and the bound of issue 19 (1,000 prompts in 100 ms).
// Pin it to a core with taskset for stable numbers.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "bench/bench_util.h"
#include "common/error.h"
#include "model/tokenizer.h"
#include "model/tokenizer_synth.h"

using namespace wand;
using bench::Clock;
using bench::since;

int main(int argc, char** argv) {
  std::string model_path, normalizer_from;
  int n_prompts = 1000, repeat = 5, pieces = model::kUmt5VocabSize;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "bench_tokenizer: %s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--model") model_path = value();
    else if (a == "--normalizer-from") normalizer_from = value();
    else if (a == "--prompts") n_prompts = std::stoi(value());
    else if (a == "--repeat") repeat = std::max(1, std::stoi(value()));
    else if (a == "--pieces") pieces = std::stoi(value());
    else {
      std::fprintf(stderr, "bench_tokenizer: unknown argument %s (see the header of bench_tokenizer.cpp)\n", a.c_str());
      return 2;
    }
  }
  try {
    auto t0 = Clock::now();
    model::SpmModel m = model_path.empty() ? model::synthetic_umt5_model(pieces) : model::SpmModel::read(model_path);
    const double make_s = since(t0);
    if (!normalizer_from.empty()) {
      const model::SpmModel n = model::SpmModel::read(normalizer_from);
      m.normalizer_name = n.normalizer_name;
      m.precompiled_charsmap = n.precompiled_charsmap;
      m.add_dummy_prefix = n.add_dummy_prefix;
      m.remove_extra_whitespaces = n.remove_extra_whitespaces;
      m.escape_whitespaces = n.escape_whitespaces;
    }
    t0 = Clock::now();
    const model::Tokenizer tok = model::Tokenizer::from_model(std::move(m));
    const double load_s = since(t0);
    const std::vector<std::string> prompts = model::typical_prompts(n_prompts);
    std::size_t bytes = 0;
    for (const auto& p : prompts) bytes += p.size();
    std::printf("model %s: %lld pieces (made in %.3f s), normalizer %s; Tokenizer::from_model %.3f s\n",
                model_path.empty() ? "synthetic" : model_path.c_str(), static_cast<long long>(tok.vocab_size()), make_s,
                normalizer_from.empty() ? "of the model" : normalizer_from.c_str(), load_s);
    std::vector<double> runs;
    std::size_t tokens = 0;
    for (int k = 0; k < repeat; ++k) {
      tokens = 0;
      t0 = Clock::now();
      for (const auto& p : prompts) tokens += tok.encode_ids(p).size();
      runs.push_back(since(t0));
      std::printf("run %d: %d prompts (%zu bytes) -> %zu pieces in %.2f ms\n", k + 1, n_prompts, bytes, tokens,
                  runs.back() * 1e3);
    }
    std::vector<double> sorted = runs;
    std::sort(sorted.begin(), sorted.end());
    const double best = sorted.front(), median = sorted[sorted.size() / 2];
    std::printf("summary: best %.2f ms, median %.2f ms for %d prompts (%.1f us/prompt, %.0f pieces/s); "
                "issue-19 bound 100 ms per 1,000 prompts: %s\n",
                best * 1e3, median * 1e3, n_prompts, best * 1e6 / n_prompts, static_cast<double>(tokens) / best,
                best * 1000.0 / n_prompts <= 0.1 ? "met" : "NOT met");
  } catch (const Error& e) {
    std::fprintf(stderr, "bench_tokenizer: %s\n", e.what());
    return 1;
  }
  return 0;
}
