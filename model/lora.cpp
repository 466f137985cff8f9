#include "model/lora.h"

#include <algorithm>
#include <cstdio>

#include "common/error.h"
#include "common/log.h"
#include "model/safetensors.h"
#include "model/safetensors_header.h"

namespace wand::model {

std::shared_ptr<const LoraFile> LoraFile::read(const std::string& path, const WanConfig& cfg) {
  auto f = std::shared_ptr<LoraFile>(new LoraFile());
  // The header checks (byte ranges inside the file: a truncated file is refused here, naming
  // the tensor) come first, then the key map (naming the key).
  const SafetensorsHeader h = read_safetensors_header(path);
  f->index_ = formats::index_lora(h, cfg);
  SafetensorsFile st(path);
  for (const SafetensorsEntry& e : h.entries) {
    try {
      f->tensors_.emplace_back(e.name, st.load(e.name));
    } catch (const Error& err) {
      throw Error(err.code(), "LoRA " + path + ": key '" + e.name + "': " + err.what());
    }
  }
  std::sort(f->tensors_.begin(), f->tensors_.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  log::get("model")->info("lora read file={} layout={} modules={} rank={} bytes={}", path,
                          formats::lora_layout_name(f->index_.layout), f->index_.modules.size(), f->index_.max_rank,
                          format_bytes(f->index_.tensor_bytes));
  return f;
}

std::shared_ptr<const LoraFile> LoraFile::to(at::Device device) const {
  auto f = std::shared_ptr<LoraFile>(new LoraFile());
  f->index_ = index_;
  for (const auto& [k, t] : tensors_) f->tensors_.emplace_back(k, t.to(device).contiguous());
  return f;
}

const at::Tensor& LoraFile::tensor(const std::string& file_key) const {
  auto it = std::lower_bound(tensors_.begin(), tensors_.end(), file_key,
                             [](const auto& p, const std::string& k) { return p.first < k; });
  WAND_ASSERT(it != tensors_.end() && it->first == file_key, "lora: no tensor " + file_key + " in " + path());
  return it->second;
}

std::shared_ptr<const DitLora> DitLora::build(const std::vector<Use>& uses, at::Device device, RunDtype run) {
  auto d = std::shared_ptr<DitLora>(new DitLora());
  d->run_ = run;
  std::vector<std::vector<Change>> by_block;
  for (const Use& u : uses) {
    if (u.strength == 0.0 || !u.file) continue;  // Note [LoRA merge]: strength 0 is no LoRA
    char s[32];
    std::snprintf(s, sizeof s, "%g", u.strength);
    d->describe_ += (d->describe_.empty() ? "" : ", ") + u.file->path() + ":" + s;
    for (const formats::LoraModule& m : u.file->index().modules) {
      WAND_ASSERT(m.block >= 0, "lora: a module outside the blocks passed the index: " + m.module);
      if (static_cast<std::size_t>(m.block) >= by_block.size()) by_block.resize(static_cast<std::size_t>(m.block) + 1);
      std::vector<Change>& changes = by_block[static_cast<std::size_t>(m.block)];
      const std::vector<std::string> names = DitBlockWeights::tensor_names(m.block);
      auto change_of = [&](const std::string& key) -> Change& {
        const auto it = std::find(names.begin(), names.end(), key);
        WAND_ASSERT(it != names.end(), "lora: " + key + " is not a block tensor");
        const int field = static_cast<int>(it - names.begin());
        for (Change& c : changes) {
          if (c.field == field) return c;
        }
        changes.push_back(Change{field, {}});
        return changes.back();
      };
      auto up = [&](const std::string& key) {
        at::Tensor t = u.file->tensor(key).to(device).contiguous();
        const auto bytes = static_cast<std::uint64_t>(t.numel()) * t.element_size();
        d->factor_bytes_ += bytes;
        d->factor_storage_.emplace_back(t.data_ptr(), bytes);
        return t;
      };
      if (!m.weight_key.empty()) {
        Term t;
        if (m.rank > 0) {
          t.down = up(m.down_key);
          t.up = up(m.up_key);
          const double alpha = m.alpha_key.empty()
                                   ? static_cast<double>(m.rank)
                                   : u.file->tensor(m.alpha_key).to(at::kDouble).reshape({-1})[0].item<double>();
          t.scale = u.strength * alpha / static_cast<double>(m.rank);
        }
        if (!m.diff_key.empty()) {
          t.diff = up(m.diff_key);
          t.diff_scale = u.strength;
        }
        change_of(m.weight_key).terms.push_back(std::move(t));
      }
      if (!m.diff_b_key.empty()) {
        Term t;
        t.diff = up(m.diff_b_key);
        t.diff_scale = u.strength;
        change_of(m.bias_key).terms.push_back(std::move(t));
      }
    }
  }
  // Changes in field order: the merge order inside a block does not depend on the file.
  for (std::vector<Change>& changes : by_block) {
    std::sort(changes.begin(), changes.end(), [](const Change& a, const Change& b) { return a.field < b.field; });
  }
  for (const std::vector<Change>& changes : by_block) {
    std::uint64_t n = 0;
    for (const Change& c : changes) {
      const Term& t = c.terms.front();
      n += static_cast<std::uint64_t>(t.up.defined() ? t.up.size(0) * t.down.size(1) : t.diff.numel());
    }
    d->max_changed_ = std::max(d->max_changed_, n);
  }
  d->terms_ = std::move(by_block);
  return d;
}

namespace {

// The merged copy of one tensor (Note [LoRA merge]): row chunks in fp32, rounded to the GEMM
// dtype `g`, held in src's dtype.
template <class Terms>
at::Tensor merged(const at::Tensor& src, const Terms& terms, at::ScalarType g, std::uint64_t* elements) {
  const int64_t rows = src.dim() >= 2 ? src.size(0) : 1;
  const int64_t cols = src.numel() / std::max<int64_t>(rows, 1);
  const at::Tensor s2 = src.reshape({rows, cols});
  at::Tensor out = at::empty({rows, cols}, src.options());
  const int64_t chunk = std::max<int64_t>(1, static_cast<int64_t>(kMergeChunkBytes / 4) / std::max<int64_t>(cols, 1));
  for (int64_t r0 = 0; r0 < rows; r0 += chunk) {
    const int64_t n = std::min(chunk, rows - r0);
    at::Tensor acc = s2.narrow(0, r0, n).to(at::kFloat, /*non_blocking=*/false, /*copy=*/true);  // [n, cols] fp32
    for (const auto& t : terms) {
      if (t.up.defined()) {
        acc.addmm_(t.up.narrow(0, r0, n).to(at::kFloat), t.down.to(at::kFloat), /*beta=*/1, /*alpha=*/t.scale);
      }
      if (t.diff.defined()) {
        acc.add_(t.diff.reshape({rows, cols}).narrow(0, r0, n).to(at::kFloat), t.diff_scale);
      }
    }
    out.narrow(0, r0, n).copy_(acc.to(g).to(src.scalar_type()));
  }
  *elements += static_cast<std::uint64_t>(src.numel());
  return out.reshape(src.sizes());
}

}  // namespace

DitBlockWeights DitLora::apply(int64_t block, const DitBlockWeights& w) const {
  if (block < 0 || static_cast<std::size_t>(block) >= terms_.size() || terms_[static_cast<std::size_t>(block)].empty()) {
    return w;
  }
  DitBlockWeights out = w;
  const std::vector<const at::Tensor*> src = w.fields();
  std::vector<at::Tensor*> dst = out.fields();
  std::uint64_t elements = 0;
  for (const Change& c : terms_[static_cast<std::size_t>(block)]) {
    *dst[static_cast<std::size_t>(c.field)] = merged(*src[static_cast<std::size_t>(c.field)], c.terms, gemm_dtype(run_), &elements);
  }
  return out;
}

std::string DitLora::describe() const { return describe_; }

BlockLoop with_lora(BlockLoop inner, const DitLora* lora) {
  if (lora == nullptr || lora->empty()) return inner;
  return [inner = std::move(inner), lora](const BlockBody& body) {
    inner([&](int64_t i, const DitBlockWeights& w) { body(i, lora->apply(i, w)); });
  };
}

std::uint64_t lora_card_bytes(const std::vector<std::shared_ptr<const DitLora>>& loras, RunDtype run) {
  const std::uint64_t es = run == RunDtype::kFloat32 ? 4 : 2;
  std::vector<std::pair<const void*, std::uint64_t>> seen;
  std::uint64_t factors = 0, scratch = 0;
  bool any = false;
  for (const auto& l : loras) {
    if (!l || l->empty()) continue;
    any = true;
    for (const auto& f : l->factor_storage()) {
      if (std::find(seen.begin(), seen.end(), f) != seen.end()) continue;
      seen.push_back(f);
      factors += f.second;
    }
    scratch = std::max(scratch, l->max_block_changed_elements() * es);
  }
  return any ? factors + scratch + kMergeChunkBytes : 0;
}

}  // namespace wand::model
