#include "model/t5_encoder.h"

#include <cmath>
#include <limits>

#include "common/error.h"
#include "common/log.h"
#include "common/torch_compat.h"
#include "model/pth.h"
#include "model/text_clean.h"

namespace wand::model {

// Note [umT5 numerics]
// Official wan/modules/t5.py in bf16 (T5EncoderModel(dtype=bf16), no autocast):
//   RMSNorm:   y = w * bf16(x * rsqrt(mean(float(x)^2) + eps))   (the product is
//              fp32 because rsqrt is fp32; rounded to bf16, then times bf16 w)
//   attention: q, k, v = x W^T (bf16); logits = q k^T (bf16, no 1/sqrt(d));
//              bias = zeros + pos_bias (bf16), masked_fill(mask == 0, finfo.min);
//              logits + bias (bf16); p = bf16(softmax(float(logits))); p v; o.
//   FFN:       fc2(fc1(x) * gelu(gate(x))), gelu = 0.5*u*(1 + tanh(sqrt(2/pi)*(u +
//              0.044715*u^3))) as separate bf16 ops in this order:
//              a = 0.5u, p = u^3, b = 0.044715p, c = u + b, s = 0.79788c,
//              t = tanh(s), g = 1 + t, gelu = a*g.
// kFloat32 runs the same expressions with float32 tensors everywhere (the
// casts become no-ops), which is what the golden float32 tolerances assume.

namespace {

at::ScalarType act_dtype(RunDtype run) {
  switch (run) {
    case RunDtype::kFloat32: return at::kFloat;
    case RunDtype::kBFloat16: return at::kBFloat16;
    default:
      throw Error(ErrorCode::kConfig, std::string("umT5 runs in fp32 or bf16, not ") + run_dtype_name(run));
  }
}

const std::vector<int64_t>& shape_of(const TensorSource& src, const std::string& key) {
  if (!src.contains(key)) {
    throw Error(ErrorCode::kModelFormat, src.describe() + ": umT5 tensor '" + key + "' missing");
  }
  return src.info(key).shape;
}

void expect_shape(const TensorSource& src, const std::string& key, const std::vector<int64_t>& want) {
  const auto& got = shape_of(src, key);
  if (got != want) {
    auto str = [](const std::vector<int64_t>& v) {
      std::string s = "[";
      for (std::size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + std::to_string(v[i]);
      return s + "]";
    };
    throw Error(ErrorCode::kModelFormat,
                src.describe() + ": umT5 tensor '" + key + "' has shape " + str(got) + ", expected " + str(want));
  }
}

at::Tensor rms_norm(const at::Tensor& x, const at::Tensor& w, double eps) {
  at::Tensor r = at::rsqrt(x.to(at::kFloat).pow(2).mean(-1, /*keepdim=*/true) + eps);
  at::Tensor y = x * r;  // fp32 (type promotion with the fp32 factor)
  return w * y.to(w.scalar_type());
}

at::Tensor gelu_chain(const at::Tensor& u) {
  at::Tensor a = u * 0.5;
  at::Tensor p = at::pow(u, 3.0);
  at::Tensor b = p * 0.044715;
  at::Tensor c = u + b;
  at::Tensor s = c * std::sqrt(2.0 / M_PI);
  at::Tensor t = at::tanh(s);
  at::Tensor g = t + 1.0;
  return a * g;
}

}  // namespace

T5Config T5Config::from_source(const TensorSource& src) {
  T5Config c;
  const auto& emb = shape_of(src, "token_embedding.weight");
  if (emb.size() != 2) throw Error(ErrorCode::kModelFormat, src.describe() + ": token_embedding.weight is not 2-D");
  c.vocab = emb[0];
  c.dim = emb[1];
  while (src.contains("blocks." + std::to_string(c.num_layers) + ".attn.q.weight")) ++c.num_layers;
  if (c.num_layers == 0) throw Error(ErrorCode::kModelFormat, src.describe() + ": no umT5 blocks (blocks.0.attn.q.weight missing)");
  const auto& q = shape_of(src, "blocks.0.attn.q.weight");
  const auto& fc1 = shape_of(src, "blocks.0.ffn.fc1.weight");
  const auto& pos = shape_of(src, "blocks.0.pos_embedding.embedding.weight");
  if (q.size() != 2 || fc1.size() != 2 || pos.size() != 2) {
    throw Error(ErrorCode::kModelFormat, src.describe() + ": umT5 block 0 tensors have unexpected ranks");
  }
  c.dim_attn = q[0];
  c.dim_ffn = fc1[0];
  c.num_buckets = pos[0];
  c.num_heads = pos[1];
  if (c.num_heads <= 0 || c.dim_attn % c.num_heads != 0) {
    throw Error(ErrorCode::kModelFormat, src.describe() + ": dim_attn " + std::to_string(c.dim_attn) +
                                             " is not a multiple of num_heads " + std::to_string(c.num_heads));
  }
  if (c.num_buckets % 2 != 0) {
    throw Error(ErrorCode::kModelFormat, src.describe() + ": odd number of relative-position buckets");
  }
  for (int64_t l = 0; l < c.num_layers; ++l) {
    const std::string b = "blocks." + std::to_string(l) + ".";
    expect_shape(src, b + "norm1.weight", {c.dim});
    expect_shape(src, b + "norm2.weight", {c.dim});
    expect_shape(src, b + "attn.q.weight", {c.dim_attn, c.dim});
    expect_shape(src, b + "attn.k.weight", {c.dim_attn, c.dim});
    expect_shape(src, b + "attn.v.weight", {c.dim_attn, c.dim});
    expect_shape(src, b + "attn.o.weight", {c.dim, c.dim_attn});
    expect_shape(src, b + "ffn.gate.0.weight", {c.dim_ffn, c.dim});
    expect_shape(src, b + "ffn.fc1.weight", {c.dim_ffn, c.dim});
    expect_shape(src, b + "ffn.fc2.weight", {c.dim, c.dim_ffn});
    expect_shape(src, b + "pos_embedding.embedding.weight", {c.num_buckets, c.num_heads});
  }
  expect_shape(src, "norm.weight", {c.dim});
  return c;
}

std::vector<std::string> T5BlockWeights::tensor_names(int layer) {
  const std::string b = "blocks." + std::to_string(layer) + ".";
  return {b + "norm1.weight",     b + "attn.q.weight",   b + "attn.k.weight", b + "attn.v.weight",
          b + "attn.o.weight",    b + "norm2.weight",    b + "ffn.fc1.weight", b + "ffn.gate.0.weight",
          b + "ffn.fc2.weight",   b + "pos_embedding.embedding.weight"};
}

T5BlockWeights T5BlockWeights::from(const TensorSource& src, int layer, RunDtype run, at::Device device) {
  const at::ScalarType dt = act_dtype(run);
  const auto names = tensor_names(layer);
  auto get = [&](int i) {
    if (!src.contains(names[i])) {
      throw Error(ErrorCode::kModelFormat, src.describe() + ": umT5 tensor '" + names[i] + "' missing");
    }
    return src.load(names[i], dt).to(device);
  };
  T5BlockWeights w;
  w.norm1 = get(0);
  w.q = get(1);
  w.k = get(2);
  w.v = get(3);
  w.o = get(4);
  w.norm2 = get(5);
  w.fc1 = get(6);
  w.gate = get(7);
  w.fc2 = get(8);
  w.pos = get(9);
  return w;
}

T5Encoder T5Encoder::load(const std::string& pth_path, RunDtype run, at::Device device, bool load_blocks) {
  PthFile f(pth_path);
  return load(f, run, device, load_blocks);
}

T5Encoder T5Encoder::load(const TensorSource& src, RunDtype run, at::Device device, bool load_blocks) {
  T5Encoder e;
  e.cfg_ = T5Config::from_source(src);
  e.run_ = run;
  e.device_ = device;
  const at::ScalarType dt = act_dtype(run);
  e.token_embedding_ = src.load("token_embedding.weight", dt).to(device);
  e.norm_ = src.load("norm.weight", dt).to(device);
  if (load_blocks) {
    for (int l = 0; l < e.num_layers(); ++l) e.blocks_.push_back(T5BlockWeights::from(src, l, run, device));
  }
  const T5Config& c = e.cfg_;
  wand::log::get("model")->info(
      "umt5 loaded src={} vocab={} dim={} dim_attn={} heads={} ffn={} layers={} buckets={} run={} blocks={}",
      src.describe(), c.vocab, c.dim, c.dim_attn, c.num_heads, c.dim_ffn, c.num_layers, c.num_buckets,
      run_dtype_name(run), load_blocks ? "loaded" : "streamed");
  return e;
}

at::ScalarType T5Encoder::dtype() const { return act_dtype(run_); }

const T5BlockWeights& T5Encoder::block_weights(int layer) const {
  if (layer < 0 || layer >= static_cast<int>(blocks_.size())) {
    throw Error(ErrorCode::kInternal, "umt5: block " + std::to_string(layer) +
                                          " weights not loaded (load with load_blocks or pass T5BlockWeights)");
  }
  return blocks_[static_cast<std::size_t>(layer)];
}

at::Tensor T5Encoder::relative_buckets(int64_t lq, int64_t lk, int64_t num_buckets, int64_t max_dist) {
  at::Tensor out = at::empty({lq, lk}, at::kLong);
  auto acc = out.accessor<int64_t, 2>();
  const int64_t half = num_buckets / 2;
  const int64_t max_exact = half / 2;
  for (int64_t i = 0; i < lq; ++i) {
    for (int64_t j = 0; j < lk; ++j) {
      const int64_t r = j - i;
      const int64_t base = r > 0 ? half : 0;
      const int64_t a = r < 0 ? -r : r;
      int64_t bucket;
      if (a < max_exact) {
        bucket = a;
      } else if (num_buckets == 32 && max_dist == 128) {
        // The measured table of wan22-reference.md §5.3 (avoids float32 log edge cases).
        static const int64_t kStart[] = {8, 12, 16, 23, 32, 46, 64, 91};
        bucket = 8;
        for (int k = 0; k < 8; ++k) {
          if (a >= kStart[k]) bucket = 8 + k;
        }
      } else {
        const float x = std::log(static_cast<float>(a) / static_cast<float>(max_exact)) /
                        static_cast<float>(std::log(static_cast<double>(max_dist) / max_exact)) *
                        static_cast<float>(half - max_exact);
        bucket = std::min<int64_t>(max_exact + static_cast<int64_t>(x), half - 1);
      }
      acc[i][j] = base + bucket;
    }
  }
  return out;
}

at::Tensor T5Encoder::position_bias(const T5BlockWeights& w, int64_t lq, int64_t lk) const {
  at::Tensor buckets = relative_buckets(lq, lk, cfg_.num_buckets, cfg_.max_dist).to(w.pos.device());
  at::Tensor e = at::embedding(w.pos, buckets);  // [lq, lk, H]
  return e.permute({2, 0, 1}).unsqueeze(0).contiguous();  // [1, H, lq, lk]
}

at::Tensor T5Encoder::embed(const at::Tensor& ids) const {
  if (ids.dim() != 2) throw Error(ErrorCode::kBadRequest, "umt5: ids must be [B, L]");
  at::Tensor i = ids.to(token_embedding_.device(), at::kLong);
  const int64_t mx = i.numel() ? i.max().item<int64_t>() : 0;
  const int64_t mn = i.numel() ? i.min().item<int64_t>() : 0;
  if (mn < 0 || mx >= cfg_.vocab) {
    throw Error(ErrorCode::kBadRequest, "umt5: token id " + std::to_string(mn < 0 ? mn : mx) +
                                            " outside the vocabulary of " + std::to_string(cfg_.vocab));
  }
  return at::embedding(token_embedding_, i);  // [B, L, dim]
}

at::Tensor T5Encoder::block(int layer, const at::Tensor& x_in, const at::Tensor& mask, const T5BlockWeights& w) const {
  (void)layer;
  const int64_t B = x_in.size(0), L = x_in.size(1), H = cfg_.num_heads, C = cfg_.head_dim();
  const at::ScalarType dt = dtype();
  at::Tensor x = x_in;
  // --- attention
  {
    at::Tensor h = rms_norm(x, w.norm1, cfg_.eps);
    at::Tensor q = at::linear(h, w.q).view({B, L, H, C}).permute({0, 2, 1, 3});  // [B, H, L, C]
    at::Tensor k = at::linear(h, w.k).view({B, L, H, C}).permute({0, 2, 1, 3});
    at::Tensor v = at::linear(h, w.v).view({B, L, H, C}).permute({0, 2, 1, 3});
    at::Tensor bias = at::zeros({B, H, L, L}, x.options()) + position_bias(w, L, L);  // [B, H, L, L]
    at::Tensor m = mask.to(x.device()).reshape({B, 1, 1, L});
    const double lowest = dt == at::kBFloat16 ? static_cast<double>(std::numeric_limits<c10::BFloat16>::lowest())
                                              : static_cast<double>(std::numeric_limits<float>::lowest());
    bias.masked_fill_(m == 0, lowest);
    at::Tensor logits = at::matmul(q, k.transpose(-2, -1)) + bias;  // [B, H, L, L]
    at::Tensor p = at::softmax(logits.to(at::kFloat), -1).to(dt);
    at::Tensor o = at::matmul(p, v).permute({0, 2, 1, 3}).reshape({B, L, H * C});  // [B, L, dim_attn]
    x = x + at::linear(o, w.o);
  }
  // --- gated-GELU FFN
  {
    at::Tensor h = rms_norm(x, w.norm2, cfg_.eps);
    at::Tensor a = at::linear(h, w.fc1);                 // [B, L, ffn]
    at::Tensor g = gelu_chain(at::linear(h, w.gate));    // [B, L, ffn]
    x = x + at::linear(a * g, w.fc2);
  }
  return x;
}

at::Tensor T5Encoder::final_norm(const at::Tensor& x) const { return rms_norm(x, norm_, cfg_.eps); }

at::Tensor T5Encoder::forward(const at::Tensor& ids, const at::Tensor& mask) const {
  if (mask.sizes() != ids.sizes()) throw Error(ErrorCode::kBadRequest, "umt5: ids and mask shapes differ");
  if (static_cast<int64_t>(blocks_.size()) != cfg_.num_layers) {
    throw Error(ErrorCode::kInternal, "umt5: forward() needs the blocks (load with load_blocks = true)");
  }
  at::Tensor x = embed(ids);
  for (int l = 0; l < num_layers(); ++l) x = block(l, x, mask, blocks_[static_cast<std::size_t>(l)]);
  return final_norm(x);
}

std::vector<at::Tensor> T5Encoder::encode(const at::Tensor& ids, const at::Tensor& mask) const {
  at::Tensor out = forward(ids, mask);
  at::Tensor lens = mask.gt(0).sum(1).to(at::kCPU, at::kLong);
  std::vector<at::Tensor> res;
  for (int64_t b = 0; b < out.size(0); ++b) res.push_back(out[b].narrow(0, 0, lens[b].item<int64_t>()));
  return res;
}

std::vector<at::Tensor> T5Encoder::encode_texts(const Tokenizer& tok, const std::vector<std::string>& texts,
                                                int text_len) const {
  std::vector<at::Tensor> out;
  for (const std::string& text : texts) {
    const TokenizedText t = tok.encode(clean_text(text), text_len);
    const at::Tensor ids = at::tensor(t.ids, at::kLong).view({1, text_len}).to(device_);
    const at::Tensor mask = at::tensor(t.mask, at::kLong).view({1, text_len}).to(device_);
    out.push_back(encode(ids, mask)[0]);
  }
  return out;
}

}  // namespace wand::model
