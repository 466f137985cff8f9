#include "model/vae_tiling.h"

#include <algorithm>
#include <cmath>
#include <sstream>

#include "common/error.h"

namespace wand::model {

namespace {

// Note [VAE decode memory model]
// The decode of one latent region runs the decoder once per latent frame with
// a feature cache (reference doc §6.4). Its memory is
//   * the caches: up to 2 input frames of every cached conv, at that conv's
//     width and resolution (full after the third chunk), plus
//   * the transient set of the op in flight: the block input, the norm output,
//     the cache-prepended conv input [C, T+2, H, W], the conv output, ...
//   * the region's output video [3, F, 8h, 8w] in fp32.
// Rather than a closed formula, MemSim replays the allocation sequence of
// vae.cpp (same order, same frees) over shapes, for the first three chunks
// (later chunks repeat the third). Worked example (2.1, dim 96, fp32, 90x160
// latents = 720p): the full-resolution caches are 7 convs x 2 frames x 96 ch
// x 720 x 1280 x 4 B = 4.95 GB, all caches 8.6 GB; a full-resolution
// residual block holds x, y, [96,6,720,1280] and its output, 1.4 + 1.4 + 2.1
// + 1.4 GB; the output video is 0.9 GB. Keep this replay in step with vae.cpp.
// Note [VAE encode memory model]
// The encode (vae.cpp Vae::encode_mu) runs the encoder on chunks of 1, 4, 4,
// ... frames, or frame-streamed (Note [VAE frame-streamed encode] in vae.cpp),
// with feature caches as the decode. Its memory is
//   * the caches: up to 2 input frames of every cached conv (1 frame for the
//     stride-2 time convs), at that conv's width and resolution,
//   * the transient set of the op in flight, over the chunk's 4 frames
//     (chunked) or 1 frame (in the frame-streamed stages),
//   * the chunk's input frames on the device (the video itself is counted
//     only when it is on the device: VaePlanOptions::input_elem_bytes),
//   * the per-chunk outputs and the final conv1 / normalisation (small).
// MemSim replays it over shapes like the decode, every chunk. Worked example
// (2.1, dim 96, fp32, 1280x720, CUDA path without the 1.3 factor): stage 0's
// caches are 4 convs x 2 frames x 96 ch x 720 x 1280 x 4 B = 2.8 GB, stage
// 1's 1.2 GB, the rest 0.4 GB; chunked, a stage-0 residual block over 4
// frames holds x, its norm, [96, 6, 720, 1280] and the conv output (1.4 +
// 1.4 + 2.1 + 1.4 GB); frame-streamed that is 1 + 1 + 3 + 1 frames (2.1 GB).
// The bf16 mode (elem_bytes 2) is replayed with its copies: the bf16 conv
// input beside the fp32 activation, bf16 caches, the bf16 conv output widened
// to fp32. The middle block's attention is modelled as math attention
// (logits and softmax, 2 x (hw)^2 per frame, 1.7 GB at 720p): CUDA's fused
// kernels need less, so there the model overcounts.
class MemSim {
 public:
  // elem 4: fp32; 2: the bf16 mode of vae.cpp (Note [VAE bf16 mode]): fp32
  // between convs, the residual convs of the high-resolution stages on a bf16
  // copy of their input (cached as such) with a bf16 output widened again.
  MemSim(const VaeConfig& cfg, int64_t elem, bool cpu) : cfg_(cfg), e_(4), bf16_(elem == 2), cpu_(cpu) {}

  int64_t peak() const { return peak_; }
  void alloc(int64_t b) {
    live_ += b;
    peak_ = std::max(peak_, live_);
  }
  void release(int64_t b) { live_ -= b; }

  struct Act {
    int64_t c, t, h, w;
    int64_t e;  // element bytes
    int64_t numel() const { return c * t * h * w; }
  };
  int64_t bytes(const Act& a) const { return a.numel() * a.e; }
  Act make(int64_t c, int64_t t, int64_t h, int64_t w, int64_t e = 0) {
    Act a{c, t, h, w, e > 0 ? e : e_};
    alloc(bytes(a));
    return a;
  }
  // Whether the residual convs of the stage being replayed run in bf16.
  void set_low(bool low) { low_ = bf16_ && low; }
  void drop(const Act& a) { release(bytes(a)); }

  void start_chunk() { idx_ = 0; }
  struct Slot {
    bool rep = false;
    int64_t frames = 0;
    int64_t bytes = 0;
  };
  Slot& next_slot() {
    if (idx_ >= slots_.size()) slots_.resize(idx_ + 1);
    return slots_[idx_++];
  }

  // The conv itself over a time-padded input (Note [CPU conv3d] in vae.cpp:
  // on the CPU a contiguous copy of each tap's frames, the tap output and the
  // final [1, Cout, T, H, W] copy live beside the accumulator).
  Act conv_core(const Act& in, int64_t cout, int64_t t_out, int64_t ho = 0, int64_t wo = 0) {
    const int64_t h = ho > 0 ? ho : in.h, w = wo > 0 ? wo : in.w;
    if (!cpu_) return make(cout, t_out, h, w, in.e);
    // oneDNN also reorders its input and output (one more copy of each).
    Act acc = make(cout, t_out, h, w, in.e);
    Act src = make(in.c, t_out, in.h, in.w, in.e);
    Act src2 = make(in.c, t_out, in.h, in.w, in.e);
    Act tap = make(cout, t_out, h, w, in.e);
    Act tap2 = make(cout, t_out, h, w, in.e);
    drop(tap2);
    drop(tap);
    drop(src2);
    drop(src);
    Act fin = make(cout, t_out, h, w, in.e);
    drop(acc);
    return fin;
  }
  // causal conv over [slot, x] (x held by the caller); returns the output.
  Act conv(const Act& x, int64_t cout, int64_t slot_frames, bool temporal) {
    if (!temporal) return conv_core(x, cout, x.t);
    const int64_t pad = std::max<int64_t>(0, 2 - slot_frames);
    Act in = make(x.c, pad + slot_frames + x.t, x.h, x.w, x.e);
    Act out = conv_core(in, cout, x.t);
    drop(in);
    return out;
  }
  // low: the conv runs in bf16 on a copy of x (vae.cpp cached_conv's x_act.to(bf16)).
  Act cached_conv(const Act& x_act, int64_t cout, bool low = false) {
    Slot& s = next_slot();
    const Act x = low ? make(x_act.c, x_act.t, x_act.h, x_act.w, 2) : x_act;
    const int64_t keep = std::min<int64_t>(2, x.t);
    Act next = make(x.c, keep, x.h, x.w, x.e);
    if (keep < 2 && s.frames > 0) {
      Act cat = make(x.c, 2, x.h, x.w, x.e);
      drop(next);
      next = cat;
    }
    Act out = conv(x, cout, s.frames, true);
    release(s.bytes);
    s.frames = next.t;
    s.bytes = bytes(next);
    s.rep = false;
    if (low) return widen(out, x);
    return out;
  }
  // out.to(fp32) of a bf16 conv output, then its bf16 input copy x is freed.
  Act widen(const Act& out, const Act& x) {
    Act wide = make(out.c, out.t, out.h, out.w, 4);
    drop(out);
    drop(x);
    return wide;
  }
  // x is owned: released before returning.
  Act res_block(Act x, int64_t cout) {
    const bool shortcut = x.c != cout;
    Act h{};
    if (shortcut && low_) {
      Act xl = make(x.c, x.t, x.h, x.w, 2);
      h = widen(conv(xl, cout, 0, false), xl);
    } else if (shortcut) {
      h = conv(x, cout, 0, false);
    }
    Act y = make(x.c, x.t, x.h, x.w);  // norm output
    if (shortcut) drop(x);
    Act y2 = cached_conv(y, cout, low_);
    drop(y);
    Act y3 = make(cout, y2.t, y2.h, y2.w);
    drop(y2);
    Act y4 = cached_conv(y3, cout, low_);
    drop(y3);
    if (shortcut) {
      drop(h);
    } else {
      drop(x);
    }
    return y4;
  }
  // x held by the caller; returns the new activation.
  Act attention(const Act& x) {
    const int64_t hw = x.h * x.w;
    Act f = make(x.c, x.t, x.h, x.w);
    Act qkv = make(3 * x.c, x.t, x.h, x.w);
    drop(f);
    Act qkv2 = make(3 * x.c, x.t, x.h, x.w);
    drop(qkv);
    // math attention: logits, scaled logits / softmax, then the output
    alloc(2 * x.t * hw * hw * e_);
    Act o = make(x.c, x.t, x.h, x.w);
    release(2 * x.t * hw * hw * e_);
    drop(qkv2);
    Act o2 = make(x.c, x.t, x.h, x.w);
    drop(o);
    Act o3 = make(x.c, x.t, x.h, x.w);
    drop(o2);
    Act o4 = make(x.c, x.t, x.h, x.w);
    drop(o3);
    return o4;
  }
  // x owned.
  Act resample_up(Act x, int64_t cout, bool temporal) {
    if (temporal) {
      Slot& s = next_slot();
      if (!s.rep && s.frames == 0) {
        s.rep = true;
      } else {
        const int64_t keep = std::min<int64_t>(2, x.t);
        Act next = make(x.c, keep, x.h, x.w);
        if (keep < 2) {
          Act cat = make(x.c, 2, x.h, x.w);
          drop(next);
          next = cat;
        }
        Act y = conv(x, 2 * x.c, s.rep ? 0 : s.frames, true);
        release(s.bytes);
        s.rep = false;
        s.frames = next.t;
        s.bytes = bytes(next);
        drop(x);
        Act st = make(x.c, 2 * x.t, x.h, x.w);
        drop(y);
        x = st;
      }
    }
    Act out = make(cout, x.t, 2 * x.h, 2 * x.w);
    Act up = make(x.c, 1, 2 * x.h, 2 * x.w);
    Act cv = make(cout, 1, 2 * x.h, 2 * x.w);
    drop(cv);
    drop(up);
    drop(x);
    return out;
  }
  Act head(const Act& x, int64_t cout) {
    Act y = make(x.c, x.t, x.h, x.w);
    Act out = cached_conv(y, cout);
    drop(y);
    return out;
  }
  Act dup_up(const Act& x, int64_t cout, int64_t ft, bool first) {
    Act rep = make(cout * ft * 4, x.t, x.h, x.w);
    Act out = make(cout, x.t * ft, 2 * x.h, 2 * x.w);
    drop(rep);
    if (first && ft > 1) out.t -= ft - 1;  // a view: bytes stay those of the full tensor
    return out;
  }

  // One decoder chunk; x [z, 1, h, w] owned. Returns the chunk output.
  Act decoder_chunk(Act x, bool first) {
    start_chunk();
    const int64_t d = cfg_.dec_dim;
    const int64_t dims[5] = {d * 4, d * 4, d * 4, d * 2, d};
    const bool tup[3] = {VaeConfig::kTemporalDownsample[2], VaeConfig::kTemporalDownsample[1],
                         VaeConfig::kTemporalDownsample[0]};
    set_low(false);
    Act y = cached_conv(x, dims[0]);
    drop(x);
    y = res_block(y, dims[0]);
    Act a = attention(y);
    drop(y);
    y = res_block(a, dims[0]);
    const bool v22 = cfg_.version == VaeVersion::kWan22;
    for (int i = 0; i < 4; ++i) {
      const bool up = i != 3;
      const bool tu = i < 3 && tup[i];
      int64_t cin = y.c;
      const int64_t cout = dims[i + 1];
      int64_t sc_bytes = 0;
      if (v22 && up) {
        dup_up(y, cout, tu ? 2 : 1, first);
        sc_bytes = cout * (y.t * (tu ? 2 : 1)) * 4 * y.h * y.w * e_;
      }
      set_low(i >= 2);  // Note [VAE bf16 mode]: decoder stages 2-3
      for (int r = 0; r < VaeConfig::kNumResBlocks + 1; ++r) {
        y = res_block(y, cout);
        cin = cout;
      }
      set_low(false);
      if (up) {
        y = resample_up(y, v22 ? cin : cin / 2, tu);
        if (v22) release(sc_bytes);
      }
    }
    Act out = head(y, cfg_.in_channels());
    drop(y);
    return out;
  }

  // --- Encoder (Note [VAE encode memory model]) ---
  // The spatial part of a downsample Resample, frame by frame; x owned.
  Act resample_down_spatial(Act x) {
    Act out = make(x.c, x.t, x.h / 2, x.w / 2);
    Act pad = make(x.c, 1, x.h + 1, x.w + 1);
    Act cv = conv_core(pad, x.c, 1, x.h / 2, x.w / 2);
    drop(cv);
    drop(pad);
    drop(x);
    return out;
  }
  // down3d_time; x owned.
  Act down3d_time(Act x) {
    Slot& s = next_slot();
    Act next = make(x.c, 1, x.h, x.w);
    if (s.frames == 0) {
      s.frames = 1;
      s.bytes = bytes(next);
      return x;
    }
    Act in = make(x.c, x.t + 1, x.h, x.w);
    drop(x);
    const int64_t t_out = x.t / 2 > 0 ? x.t / 2 : 1;
    Act y = conv_core(in, x.c, t_out);
    drop(in);
    release(s.bytes);
    s.bytes = bytes(next);
    return y;
  }
  // AvgDown3D of 2.2 (held while the stage runs): the permuted copy, then the mean.
  Act avg_down(const Act& x, int64_t cout, int64_t ft, int64_t fs) {
    const int64_t t = (x.t + ft - 1) / ft;
    Act pad{};
    const bool padded = t * ft != x.t;
    if (padded) pad = make(x.c, t * ft, x.h, x.w);
    Act perm = make(x.c, t * ft, x.h, x.w);
    if (padded) drop(pad);
    Act out = make(cout, t, x.h / fs, x.w / fs);
    drop(perm);
    return out;
  }
  int64_t enc_dim(int i) const { return i == 0 ? cfg_.dim : cfg_.dim * VaeConfig::kDimMult[i - 1]; }
  bool enc_low(int i) const {
    return cfg_.version == VaeVersion::kWan21 ? i <= 1 : i == 1;  // Note [VAE bf16 mode]
  }
  // Encoder stage i on x (owned); spatial_only: a downsample3d stops after its spatial conv.
  Act encoder_stage(int i, Act x, bool spatial_only) {
    const bool down = i != 3;
    const bool tdown = i < 3 && VaeConfig::kTemporalDownsample[i];
    const int64_t cout = enc_dim(i + 1);
    Act sc{};
    const bool v22 = cfg_.version == VaeVersion::kWan22;
    if (v22) sc = avg_down(x, cout, tdown ? 2 : 1, down ? 2 : 1);
    set_low(enc_low(i));
    for (int r = 0; r < VaeConfig::kNumResBlocks; ++r) x = res_block(x, cout);
    set_low(false);
    if (down) {
      x = resample_down_spatial(x);
      if (tdown && !spatial_only) x = down3d_time(x);
    }
    if (v22) drop(sc);
    return x;
  }
  Act encoder_rest(Act x, int from) {
    for (int i = from; i < 4; ++i) x = encoder_stage(i, x, false);
    x = res_block(x, x.c);
    Act a = attention(x);
    drop(x);
    x = res_block(a, a.c);
    Act out = head(x, 2 * cfg_.z_dim);
    drop(x);
    return out;
  }
  // The encoder's input for frames [len] at pixels H x W on the device (2.2: after patchify).
  Act enc_input(int64_t len, int64_t H, int64_t W) {
    Act x = make(3, len, H, W);
    if (cfg_.version == VaeVersion::kWan22) {
      Act p = make(12, len, H / 2, W / 2);
      drop(x);
      return p;
    }
    return x;
  }
  // One encoder chunk of len frames; returns its output [2z, 1, h, w].
  Act encoder_chunk(int64_t len, int64_t H, int64_t W, bool streamed) {
    if (!streamed) {
      start_chunk();
      Act x = enc_input(len, H, W);
      Act y = cached_conv(x, cfg_.dim);
      drop(x);
      return encoder_rest(y, 0);
    }
    const int S = cfg_.version == VaeVersion::kWan21 ? 2 : 1;
    Act buf{};
    size_t resume = 0;
    for (int64_t f = 0; f < len; ++f) {
      start_chunk();
      Act x = enc_input(1, H, W);
      Act y = cached_conv(x, cfg_.dim);
      drop(x);
      for (int i = 0; i < S; ++i) y = encoder_stage(i, y, i == S - 1);
      if (f == 0) buf = make(y.c, len, y.h, y.w);
      drop(y);
      resume = idx_;
    }
    idx_ = resume;
    if (VaeConfig::kTemporalDownsample[S - 1]) buf = down3d_time(buf);
    return encoder_rest(buf, S);
  }
  // Peak of encoding 1 + 4 (chunks - 1) frames of H x W pixels, incl. the
  // per-chunk outputs (kept until the final conv1).
  int64_t encode_peak(int64_t chunks, int64_t H, int64_t W, bool streamed) {
    Act out{};
    for (int64_t i = 0; i < chunks; ++i) out = encoder_chunk(i == 0 ? 1 : 4, H, W, streamed);  // all held
    // cat of the chunk outputs, conv1 over it, the mu copy, the normalisation.
    Act cat = make(out.c, chunks, out.h, out.w);
    release(chunks * bytes(out));
    Act mu2 = conv_core(cat, out.c, chunks);
    drop(cat);
    Act mu = make(cfg_.z_dim, chunks, out.h, out.w);
    drop(mu2);
    Act d = make(cfg_.z_dim, chunks, out.h, out.w);
    Act z = make(cfg_.z_dim, chunks, out.h, out.w);
    drop(d);
    drop(mu);
    drop(z);
    return peak_;
  }

  // Peak of decoding a [frames, h, w] latent region, incl. its fp32 output.
  int64_t region_peak(int64_t frames, int64_t h, int64_t w) {
    const int64_t s = cfg_.spatial_stride();
    const int64_t out_frames = 1 + 4 * (frames - 1);
    alloc(3 * out_frames * h * s * w * s * 4);  // the region's output video (fp32)
    alloc(cfg_.z_dim * frames * h * w * e_);   // conv2 output
    const int64_t chunks = std::min<int64_t>(frames, 3);
    for (int64_t i = 0; i < chunks; ++i) {
      Act x = make(cfg_.z_dim, 1, h, w);
      Act y = decoder_chunk(x, i == 0);
      if (cfg_.version == VaeVersion::kWan22) {
        Act un = make(3, y.t, y.h * 2, y.w * 2);
        drop(un);
      }
      drop(y);
    }
    return peak_;
  }

 private:
  const VaeConfig& cfg_;
  int64_t e_;
  bool bf16_ = false, low_ = false;
  bool cpu_;
  int64_t live_ = 0, peak_ = 0;
  std::vector<Slot> slots_;
  size_t idx_ = 0;
};

int64_t default_overlap(const VaeConfig& cfg, int64_t overlap) {
  return overlap >= 0 ? overlap : 64 / cfg.spatial_stride();
}

std::string gib(int64_t b) {
  std::ostringstream o;
  o.setf(std::ios::fixed);
  o.precision(2);
  o << static_cast<double>(b) / (1024.0 * 1024.0 * 1024.0) << " GiB";
  return o.str();
}

void fill_totals(VaeDecodePlan& p, const VaeConfig& cfg, const VaeLatentShape& z,
                 const VaePlanOptions& opt) {
  auto scaled = [&](int64_t b) { return static_cast<int64_t>(static_cast<double>(b) * opt.working_factor); };
  p.est_untiled_bytes =
      scaled(vae_decode_working_bytes(cfg, z.height, z.width, opt.elem_bytes, opt.cpu_convs)) +
      vae_decode_output_bytes(cfg, z, 4);
  if (!p.tiled) {
    p.est_tile_bytes = p.est_untiled_bytes;
    p.est_total_bytes = p.est_untiled_bytes + opt.weight_bytes;
    if (opt.output_elem_bytes == 0) p.est_total_bytes -= vae_decode_output_bytes(cfg, z, 4);
    return;
  }
  const VaeLatentShape tile{z.frames, p.tile_h, p.tile_w};
  p.est_tile_bytes = scaled(vae_decode_working_bytes(cfg, p.tile_h, p.tile_w, opt.elem_bytes, opt.cpu_convs)) +
                     vae_decode_output_bytes(cfg, tile, 4);
  // + the blended video and the weight map (both only when kept on the device).
  const int64_t s = cfg.spatial_stride();
  const int64_t full = opt.output_elem_bytes == 0
                           ? 0
                           : vae_decode_output_bytes(cfg, z, 4) + z.height * s * z.width * s * 4;
  p.est_total_bytes = p.est_tile_bytes + full + opt.weight_bytes;
}

}  // namespace

int64_t vae_decode_working_bytes(const VaeConfig& cfg, int64_t h, int64_t w, int64_t elem_bytes,
                                 bool cpu_convs) {
  // Independent of the frame count: replay 3 chunks, minus the output/conv2 terms.
  MemSim sim(cfg, elem_bytes, cpu_convs);
  const int64_t with_io = sim.region_peak(3, h, w);
  const int64_t s = cfg.spatial_stride();
  return with_io - 3 * 9 * h * s * w * s * 4 - cfg.z_dim * 3 * h * w * 4;
}

int64_t vae_decode_output_bytes(const VaeConfig& cfg, const VaeLatentShape& z, int64_t elem_bytes) {
  const int64_t s = cfg.spatial_stride();
  return 3 * (1 + 4 * (z.frames - 1)) * z.height * s * z.width * s * elem_bytes;
}

std::vector<std::pair<int64_t, int64_t>> vae_tile_spans(int64_t total, int64_t tile, int64_t overlap) {
  WAND_ASSERT(total > 0, "tile spans of an empty extent");
  if (tile <= 0 || tile >= total) return {{0, total}};
  WAND_ASSERT(overlap >= 0 && overlap < tile, "tile overlap must be smaller than the tile");
  const int64_t step = tile - overlap;
  const int64_t n = std::max<int64_t>(2, (total - overlap + step - 1) / step);
  std::vector<std::pair<int64_t, int64_t>> spans;
  for (int64_t k = 0; k < n; ++k) {
    // starts spread evenly over [0, total - tile], rounded down (integer math).
    const int64_t start = (k * (total - tile)) / (n - 1);
    spans.emplace_back(start, start + tile);
  }
  return spans;
}

std::string VaeDecodePlan::describe() const {
  std::ostringstream o;
  if (tiled) {
    o << "tiled " << rows.size() << "x" << cols.size() << " tiles=" << tile_h << "x" << tile_w
      << " overlap=" << overlap;
  } else {
    o << "untiled";
  }
  o << " est_tile=" << gib(est_tile_bytes) << " est_total=" << gib(est_total_bytes)
    << " est_untiled=" << gib(est_untiled_bytes);
  if (!fits) o << " (does not fit)";
  return o.str();
}

VaeDecodePlan fixed_vae_decode_plan(const VaeConfig& cfg, const VaeLatentShape& z, int64_t tile_h,
                                    int64_t tile_w, int64_t overlap, const VaePlanOptions& opt) {
  VaeDecodePlan p;
  p.overlap = default_overlap(cfg, overlap >= 0 ? overlap : opt.overlap);
  p.tile_h = tile_h <= 0 ? z.height : std::min(tile_h, z.height);
  p.tile_w = tile_w <= 0 ? z.width : std::min(tile_w, z.width);
  if ((p.tile_h < z.height && p.overlap >= p.tile_h) || (p.tile_w < z.width && p.overlap >= p.tile_w)) {
    throw Error(ErrorCode::kBadRequest, "vae decode: tile overlap " + std::to_string(p.overlap) +
                                            " must be smaller than the tile " +
                                            std::to_string(p.tile_h) + "x" + std::to_string(p.tile_w));
  }
  p.rows = vae_tile_spans(z.height, p.tile_h, p.overlap);
  p.cols = vae_tile_spans(z.width, p.tile_w, p.overlap);
  p.tiled = p.rows.size() > 1 || p.cols.size() > 1;
  if (!p.tiled) {
    p.tile_h = z.height;
    p.tile_w = z.width;
  }
  fill_totals(p, cfg, z, opt);
  return p;
}

VaeDecodePlan plan_vae_decode(const VaeConfig& cfg, const VaeLatentShape& z, int64_t budget_bytes,
                              const VaePlanOptions& opt) {
  if (z.frames < 1 || z.height < 1 || z.width < 1) {
    throw Error(ErrorCode::kBadRequest, "vae decode plan: empty latent " + std::to_string(z.frames) +
                                            "x" + std::to_string(z.height) + "x" +
                                            std::to_string(z.width));
  }
  VaeDecodePlan untiled = fixed_vae_decode_plan(cfg, z, 0, 0, opt.overlap, opt);
  if (budget_bytes <= 0) return untiled;
  const auto usable = static_cast<int64_t>(static_cast<double>(budget_bytes) * (1.0 - opt.safety));
  if (untiled.est_total_bytes <= usable) return untiled;

  const int64_t ov = default_overlap(cfg, opt.overlap);
  const int64_t min_tile = std::max<int64_t>(opt.min_tile > 0 ? opt.min_tile : 2 * ov + 2, 1);
  // Candidate tile sides: for n tiles along an axis, the smallest side that covers it.
  auto sides = [&](int64_t total) {
    std::vector<int64_t> v;
    if (total <= min_tile) return std::vector<int64_t>{total};
    for (int64_t n = 1;; ++n) {
      const int64_t side = n == 1 ? total : (total + (n - 1) * ov + n - 1) / n;
      if (side < min_tile) break;
      if (v.empty() || side != v.back()) v.push_back(side);
      if (side == min_tile) break;
    }
    if (v.back() > min_tile) v.push_back(min_tile);
    return v;
  };
  VaeDecodePlan best;
  bool found = false;
  int64_t best_count = 0, best_area = 0;
  for (int64_t th : sides(z.height)) {
    for (int64_t tw : sides(z.width)) {
      VaeDecodePlan p = fixed_vae_decode_plan(cfg, z, th, tw, ov, opt);
      if (p.est_total_bytes > usable) continue;
      const int64_t count = static_cast<int64_t>(p.rows.size() * p.cols.size());
      const int64_t area = count * p.tile_h * p.tile_w;
      if (!found || count < best_count || (count == best_count && area < best_area)) {
        best = p;
        best_count = count;
        best_area = area;
        found = true;
      }
    }
  }
  if (found) return best;
  VaeDecodePlan smallest = fixed_vae_decode_plan(cfg, z, min_tile, min_tile, ov, opt);
  smallest.fits = false;
  return smallest;
}

int64_t vae_encode_working_bytes(const VaeConfig& cfg, const VaeVideoShape& v, int64_t elem_bytes, bool streamed,
                                 bool cpu_convs) {
  const int64_t s = cfg.spatial_stride();
  if (v.frames < 1 || v.height < s || v.width < s || v.height % s != 0 || v.width % s != 0) {
    throw Error(ErrorCode::kBadRequest, "vae encode plan: video " + std::to_string(v.frames) + "x" +
                                            std::to_string(v.height) + "x" + std::to_string(v.width) +
                                            " needs frames >= 1 and sides that are positive multiples of " +
                                            std::to_string(s));
  }
  MemSim sim(cfg, elem_bytes, cpu_convs);
  return sim.encode_peak(1 + (v.frames - 1) / 4, v.height, v.width, streamed);
}

int64_t vae_encode_input_bytes(const VaeVideoShape& v, int64_t elem_bytes) {
  return 3 * v.frames * v.height * v.width * elem_bytes;
}

std::string VaeEncodePlan::describe() const {
  std::ostringstream o;
  o << (streamed ? "frame-streamed" : "chunked");
  if (tiled) {
    o << " tiled " << rows.size() << "x" << cols.size() << " tiles=" << tile_h << "x" << tile_w
      << " overlap=" << overlap << " est_tile=" << gib(est_tile_bytes);
  }
  o << " est_total=" << gib(est_total_bytes) << " est_chunked=" << gib(est_chunked_bytes)
    << " est_streamed=" << gib(est_streamed_bytes);
  if (!fits) o << " (does not fit " << gib(usable_bytes) << ")";
  return o.str();
}

int64_t vae_encode_default_overlap(const VaeConfig& cfg) { return 128 / cfg.spatial_stride(); }

VaeEncodePlan fixed_vae_encode_plan(const VaeConfig& cfg, const VaeVideoShape& v, bool streamed,
                                    int64_t budget_bytes, const VaePlanOptions& opt, int64_t tile_h,
                                    int64_t tile_w) {
  auto scaled = [&](int64_t b) { return static_cast<int64_t>(static_cast<double>(b) * opt.working_factor); };
  const int64_t s = cfg.spatial_stride();
  VaeEncodePlan p;
  p.est_chunked_bytes = scaled(vae_encode_working_bytes(cfg, v, opt.elem_bytes, false, opt.cpu_convs));
  p.est_streamed_bytes = scaled(vae_encode_working_bytes(cfg, v, opt.elem_bytes, true, opt.cpu_convs));
  const int64_t lh = v.height / s, lw = v.width / s;
  p.overlap = opt.overlap >= 0 ? opt.overlap : vae_encode_default_overlap(cfg);
  p.tile_h = tile_h <= 0 ? lh : std::min(tile_h, lh);
  p.tile_w = tile_w <= 0 ? lw : std::min(tile_w, lw);
  if ((p.tile_h < lh && p.overlap >= p.tile_h) || (p.tile_w < lw && p.overlap >= p.tile_w)) {
    throw Error(ErrorCode::kBadRequest, "vae encode: tile overlap " + std::to_string(p.overlap) +
                                            " must be smaller than the tile " + std::to_string(p.tile_h) +
                                            "x" + std::to_string(p.tile_w));
  }
  p.rows = vae_tile_spans(lh, p.tile_h, p.overlap);
  p.cols = vae_tile_spans(lw, p.tile_w, p.overlap);
  p.tiled = p.rows.size() > 1 || p.cols.size() > 1;
  p.streamed = streamed || p.tiled;
  const int64_t input = vae_encode_input_bytes(v, opt.input_elem_bytes);
  if (!p.tiled) {
    p.tile_h = lh;
    p.tile_w = lw;
    p.est_tile_bytes = p.streamed ? p.est_streamed_bytes : p.est_chunked_bytes;
    p.est_total_bytes = p.est_tile_bytes + opt.weight_bytes + input;
  } else {
    p.est_tile_bytes = scaled(vae_encode_working_bytes(cfg, {v.frames, p.tile_h * s, p.tile_w * s},
                                                       opt.elem_bytes, true, opt.cpu_convs));
    // + the blended latent and its weight map.
    const int64_t t = 1 + (v.frames - 1) / 4;
    const int64_t blend = (cfg.z_dim * t + 1) * lh * lw * 4;
    p.est_total_bytes = p.est_tile_bytes + blend + opt.weight_bytes + input;
  }
  p.usable_bytes = vae_usable_bytes(budget_bytes, opt);
  p.fits = budget_bytes <= 0 || p.est_total_bytes <= p.usable_bytes;
  return p;
}

VaeEncodePlan plan_vae_encode(const VaeConfig& cfg, const VaeVideoShape& v, int64_t budget_bytes,
                              const VaePlanOptions& opt) {
  VaeEncodePlan chunked = fixed_vae_encode_plan(cfg, v, false, budget_bytes, opt);
  if (chunked.fits) return chunked;
  VaeEncodePlan streamed = fixed_vae_encode_plan(cfg, v, true, budget_bytes, opt);
  if (streamed.fits) return streamed;
  // Tiles: the fewest whose predicted peak fits (ties: least recomputed area).
  const int64_t s = cfg.spatial_stride();
  const int64_t lh = v.height / s, lw = v.width / s;
  const int64_t ov = opt.overlap >= 0 ? opt.overlap : vae_encode_default_overlap(cfg);
  const int64_t min_tile = std::max<int64_t>(opt.min_tile > 0 ? opt.min_tile : 2 * ov + 2, 1);
  auto sides = [&](int64_t total) {
    std::vector<int64_t> out;
    if (total <= min_tile) return std::vector<int64_t>{total};
    for (int64_t n = 1;; ++n) {
      const int64_t side = n == 1 ? total : (total + (n - 1) * ov + n - 1) / n;
      if (side < min_tile) break;
      if (out.empty() || side != out.back()) out.push_back(side);
      if (side == min_tile) break;
    }
    if (out.back() > min_tile) out.push_back(min_tile);
    return out;
  };
  VaeEncodePlan best;
  bool found = false;
  int64_t best_count = 0, best_area = 0;
  for (int64_t th : sides(lh)) {
    for (int64_t tw : sides(lw)) {
      if (th == lh && tw == lw) continue;
      VaeEncodePlan p = fixed_vae_encode_plan(cfg, v, true, budget_bytes, opt, th, tw);
      if (!p.fits) continue;
      const int64_t count = static_cast<int64_t>(p.rows.size() * p.cols.size());
      const int64_t area = count * p.tile_h * p.tile_w;
      if (!found || count < best_count || (count == best_count && area < best_area)) {
        best = p;
        best_count = count;
        best_area = area;
        found = true;
      }
    }
  }
  if (found) return best;
  VaeEncodePlan smallest = fixed_vae_encode_plan(cfg, v, true, budget_bytes, opt, std::min(min_tile, lh),
                                                 std::min(min_tile, lw));
  smallest.fits = false;
  return smallest;
}

// Note [VAE precision rule]
// What each way of saving VAE memory costs in accuracy (docs/vae-precision.md,
// docs/vae-tiling.md): the frame-streamed encode nothing (summation order);
// the bf16 mode 3.3e-3 / 4.9e-3 (2.1 encode / decode) and 3.8e-3 / 5.5e-3
// (2.2) relative L2 off the float64 references on the golden cases, at most
// 7.6e-3 over random-weight seeds; spatial tiles of the decode 1.2e-2 relative
// L2 at 720p (H100, random full-size weights, 2 tiles) and far more in small
// models; tiles of the encode likewise (docs/vae-tiling.md). So: fp32 when both
// phases fit exactly, else bf16 (even when bf16 still needs tiles: its tiles
// are fewer and larger). The VAE's dtype is fixed when it is built, so the
// choice covers both phases of a job.
VaePrecisionChoice choose_vae_precision(const VaeConfig& cfg, const VaeVideoShape* encode, int64_t encode_budget,
                                        const VaeLatentShape& decode, int64_t decode_budget,
                                        const VaePlanOptions& opt) {
  auto at = [&](bool bf16) {
    VaePrecisionChoice c;
    c.bf16 = bf16;
    VaePlanOptions o = opt;
    o.elem_bytes = bf16 ? 2 : 4;
    o.weight_bytes = vae_param_count(cfg) * 4;
    if (encode != nullptr) c.encode = plan_vae_encode(cfg, *encode, encode_budget, o);
    c.decode = plan_vae_decode(cfg, decode, decode_budget, o);
    c.exact = c.encode.fits && !c.encode.tiled && c.decode.fits && !c.decode.tiled;
    return c;
  };
  VaePrecisionChoice fp32 = at(false);
  if (fp32.exact) return fp32;
  return at(true);
}

std::string VaePrecisionChoice::describe() const {
  std::ostringstream o;
  o << (bf16 ? "bf16" : "fp32") << (exact ? " exact" : " tiled") << "; encode " << encode.describe() << "; decode "
    << decode.describe();
  return o.str();
}

int64_t vae_usable_bytes(int64_t budget_bytes, const VaePlanOptions& opt) {
  if (budget_bytes <= 0) return 0;
  return static_cast<int64_t>(static_cast<double>(budget_bytes) * (1.0 - opt.safety));
}

}  // namespace wand::model
