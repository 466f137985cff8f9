#include "model/generator.h"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <tuple>

#include "common/error.h"
#include "common/log.h"
#include "common/torch_compat.h"
#include "model/checkpoint.h"
#include "model/dit.h"
#include "model/formats/diffusers_keys.h"
#include "model/formats/model_layout.h"
#include "model/formats/part_sources.h"
#include "model/formats/single_file.h"
#include "model/image_prep.h"
#include "model/generator_text.h"
#include "model/lora.h"
#include "model/tensor_bytes.h"
#include "model/pth.h"
#include "model/sampler_schedule.h"
#include "model/vae.h"

namespace wand::model {

namespace fs = std::filesystem;

namespace {

// Note [CPU determinism]: with two intra-op threads, the same job gave one of two
// different videos (about one run in five; tests/daemon wan_e2e under load, 2-core
// machine), while with one intra-op thread every run was identical: some
// multi-threaded CPU kernel orders its reduction by thread timing. CPU generation
// therefore runs with WAND_CPU_THREADS intra-op threads (default 1), set on the
// calling thread (OpenMP's thread count is per thread) before every prepare / step
// / decode: same seed, same bytes. CUDA runs are not affected.
void use_deterministic_cpu_threads(const at::Device& device) {
  if (device.is_cuda()) return;
  int n = 1;
  if (const char* e = std::getenv("WAND_CPU_THREADS")) n = std::max(1, std::atoi(e));
  at::set_num_threads(n);
}


constexpr int kMaxSteps = 1000;

bool is_ti2v(const WanConfig& c) { return c.model_type == "ti2v"; }

WanConfig read_config(const fs::path& expert_dir) {
  // A single-file expert (comfyui): the config from its shapes (Note [Single-file config]).
  if (fs::is_regular_file(expert_dir)) return formats::read_single_file_expert(expert_dir).config;
  const fs::path p = expert_dir / "config.json";
  std::ifstream f(p);
  if (!f) throw Error(ErrorCode::kNotFound, "model: cannot open " + p.string());
  nlohmann::json j;
  try {
    f >> j;
  } catch (const std::exception& e) {
    throw Error(ErrorCode::kModelFormat, p.string() + ": not JSON: " + e.what());
  }
  return formats::wan_config_from_any(j, p.string());  // release or diffusers naming
}

at::Device default_device() {
  if (at::hasCUDA() && torch::cuda::is_available()) return at::Device(at::kCUDA, 0);
  return at::Device(at::kCPU);
}

[[noreturn]] void bad(const std::string& field, const std::string& msg) {
  throw Error(ErrorCode::kBadRequest, field + ": " + msg);
}

// The one random draw of a job (see Note [CPU noise], generator.h).
at::Tensor draw_noise(std::uint64_t seed, at::IntArrayRef shape, at::Tensor* rng_state) {
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  // (at::randn takes the generator's mutex itself.)
  at::Tensor noise = at::randn(shape, gen, at::TensorOptions().dtype(at::kFloat));
  *rng_state = gen.get_state();
  return noise;
}

void need_blob_entry(const std::map<std::string, at::Tensor>& m, const std::string& blob, const std::string& key) {
  if (m.find(key) == m.end()) {
    throw Error(ErrorCode::kModelFormat, "checkpoint blob '" + blob + "': missing entry '" + key + "'");
  }
}

std::map<std::string, at::Tensor> parse_blob(const std::map<std::string, std::vector<std::uint8_t>>& blobs,
                                             const std::string& name) {
  auto it = blobs.find(name);
  if (it == blobs.end()) throw Error(ErrorCode::kModelFormat, "checkpoint: missing blob '" + name + "'");
  return tensors_from_bytes(it->second, "checkpoint blob '" + name + "'");
}

void check_same_shape(const at::Tensor& saved, at::IntArrayRef want, const std::string& blob,
                      const std::string& key) {
  if (saved.sizes() != want) {
    throw Error(ErrorCode::kModelFormat, "checkpoint blob '" + blob + "': entry '" + key + "' has shape " +
                                             c10::str(saved.sizes()) + ", the job needs " + c10::str(want));
  }
}

}  // namespace

WanGenerator::WanGenerator(const fs::path& dir, GeneratorOptions opt) : dir_(dir), opt_(std::move(opt)) {
  if (!fs::is_directory(dir_)) throw Error(ErrorCode::kNotFound, "model: no directory " + dir_.string());
  const formats::ModelLayout layout = formats::detect_model_layout(dir_);
  two_experts_ = layout.two_experts();
  cfg_ = read_dir_config(dir_);
  {  // The VAE's architecture and size from its shapes (no weights read): the job's memory plan.
    // The release .pth or a diffusers vae/ (Note [Diffusers parts]); a missing one fails here.
    const std::unique_ptr<TensorSource> vf = open_part(layout.vae(cfg_.model_type));
    vae_cfg_ = VaeConfig::from_checkpoint(*vf);
    for (const auto& n : vf->names()) vae_weight_bytes_ += static_cast<std::int64_t>(vf->info(n).numel() * 4);  // fp32 run
  }
  device_ = opt_.device ? *opt_.device : default_device();
  run_ = opt_.run_dtype ? *opt_.run_dtype : (device_.is_cuda() ? RunDtype::kBFloat16 : RunDtype::kFloat32);
  text_ = opt_.text_encoder ? opt_.text_encoder : make_umt5_text_encoder(dir_, device_, run_);
  log::get("model")->info("generator dir={} variant={} experts={} device={} dtype={}", dir_.string(), cfg_.variant,
                          two_experts_ ? 2 : 1, device_.str(), run_dtype_name(run_));
}

WanGenerator::~WanGenerator() = default;

WanConfig WanGenerator::read_dir_config(const fs::path& dir) {
  // The layout (release or diffusers) from model/formats/model_layout.h, as the planner reads it.
  const formats::ModelLayout layout = formats::detect_model_layout(dir);
  // comfyui: the manifest's model_type must be the files' (Note [Model manifest]).
  auto check_manifest_type = [&](const WanConfig& c, const fs::path& file) {
    if (layout.kind == formats::LayoutKind::kComfyUI && c.model_type != layout.model_type) {
      throw Error(ErrorCode::kModelFormat, (dir / formats::kManifestName).string() + ": model_type \"" +
                                               layout.model_type + "\" but " + file.string() + " is a " + c.model_type +
                                               " DiT (" + c.variant + ")");
    }
  };
  if (!layout.two_experts()) {
    WanConfig cfg = read_config(layout.experts[0].dir);
    check_manifest_type(cfg, layout.experts[0].dir);
    if (!is_ti2v(cfg)) {
      throw Error(ErrorCode::kModelFormat, "model " + dir.string() + ": a single " + cfg.model_type + " model; A14B needs " +
                                               (layout.kind == formats::LayoutKind::kDiffusers
                                                    ? "transformer/ and transformer_2/"
                                                    : "high_noise_model/ and low_noise_model/"));
    }
    return cfg;
  }
  const std::string high_name = layout.experts[0].name, low_name = layout.experts[1].name;
  WanConfig cfg = read_config(layout.experts[0].dir);
  const WanConfig low = read_config(layout.experts[1].dir);
  check_manifest_type(cfg, layout.experts[0].dir);
  check_manifest_type(low, layout.experts[1].dir);
  if (low.model_type != cfg.model_type || low.in_dim != cfg.in_dim || low.out_dim != cfg.out_dim ||
      low.text_dim != cfg.text_dim) {
    throw Error(ErrorCode::kModelFormat, "model " + dir.string() + ": " + high_name + " and " + low_name + " configs differ");
  }
  if (is_ti2v(cfg)) {
    throw Error(ErrorCode::kModelFormat, "model " + dir.string() + ": ti2v model in the two-expert (A14B) layout");
  }
  if (layout.boundary_ratio) cfg.boundary = *layout.boundary_ratio;  // model_index.json (diffusers), the manifest (comfyui)
  return cfg;
}

ModelTraits WanGenerator::traits_of(const WanConfig& cfg) {
  ModelTraits r;
  r.variant = cfg.variant;
  const bool ti2v = is_ti2v(cfg);
  r.tasks = ti2v ? std::vector<std::string>{"ti2v", "t2v", "i2v"} : std::vector<std::string>{cfg.model_type};
  r.size_multiple = ti2v ? 32 : 16;
  r.default_width = 1280;
  r.default_height = ti2v ? 704 : 720;
  r.default_frames = ti2v ? 121 : 81;
  r.default_steps = cfg.sample_steps;
  r.fps = ti2v ? 24 : 16;
  return r;
}

bool WanGenerator::probe(const fs::path& dir) { return formats::probe_model_layout(dir); }

int WanGenerator::fps() const { return traits_of(cfg_).fps; }

std::vector<std::string> WanGenerator::tasks() const { return traits_of(cfg_).tasks; }

bool WanGenerator::supports(const std::string& task) const {
  for (const auto& t : tasks()) {
    if (t == task) return true;
  }
  return false;
}

void WanGenerator::validate(const GenRequest& req) const { validate_request(cfg_, req); }

// Note [Checks from the config]: every model-specific check of a request needs only the
// model's config.json (the variant: tasks, size multiple, defaults), so the daemon runs
// validate_request at submit from read_dir_config, before the model's first load, and a
// request is refused (bad_request, wanctl exit 2) the same way whether the model is loaded
// or not (issue 15 item 9, issue 20 item 3). The task wanctl sends without --task is t2v
// when no image is given: on an image-only model that is a missing image, and the message
// says so in the user's terms instead of naming a task they never chose.
void WanGenerator::validate_request(const WanConfig& cfg, const GenRequest& req) {
  const ModelTraits rules = traits_of(cfg);
  const bool has_image = req.image_rgb.defined() || !req.image.empty();
  auto supports = [&](const std::string& t) {
    return std::find(rules.tasks.begin(), rules.tasks.end(), t) != rules.tasks.end();
  };
  if (!supports(req.task)) {
    if (req.task == "t2v" && !has_image && supports("i2v")) {
      bad("image", cfg.variant + " is an image-to-video model: pass --image FILE");
    }
    if (req.task == "i2v" && has_image && supports("t2v")) {
      bad("image", cfg.variant + " is a text-to-video model: it takes no --image");
    }
    std::string list;
    for (const auto& t : rules.tasks) list += (list.empty() ? "" : ", ") + t;
    bad("task", "'" + req.task + "' is not supported by " + cfg.variant + " (" + list + ")");
  }
  for (std::size_t i = 0; i < req.loras.size(); ++i) {
    check_lora_ref(req.loras[i], "field 'loras[" + std::to_string(i) + "]'");
    if (req.loras[i].expert == "low" && is_ti2v(cfg)) {
      bad("loras", "LoRA '" + req.loras[i].name + "' is for the low-noise expert (@low), but " + cfg.variant +
                       " is a single model");
    }
  }
  if (req.task == "i2v" && !has_image) bad("image", "task i2v needs an input image: pass --image FILE");
  if (req.task == "t2v" && has_image) bad("image", "task t2v takes no input image");
  if (req.image_rgb.defined() &&
      (req.image_rgb.dim() != 3 || req.image_rgb.size(2) != 3 || req.image_rgb.scalar_type() != at::kByte)) {
    bad("image", "expected an RGB uint8 tensor [H, W, 3]");
  }
  const int mult = rules.size_multiple;
  const int w = req.width ? req.width : rules.default_width;
  const int h = req.height ? req.height : rules.default_height;
  if (w < 0 || h < 0) bad("width", "sizes must be positive");
  if (w % mult != 0) bad("width", std::to_string(w) + " is not a multiple of " + std::to_string(mult));
  if (h % mult != 0) bad("height", std::to_string(h) + " is not a multiple of " + std::to_string(mult));
  if (static_cast<int64_t>(w) * h > 4096LL * 4096LL) bad("width", "area above 4096x4096");
  const int frames = req.frames ? req.frames : rules.default_frames;
  if (frames < 1 || (frames - 1) % 4 != 0) bad("frames", std::to_string(frames) + " is not 4n + 1");
  if (req.steps < 0 || req.steps > kMaxSteps) bad("steps", std::to_string(req.steps) + " out of range 1.." + std::to_string(kMaxSteps));
  if (req.guide_scale.size() > 2) bad("guide_scale", std::string("at most two values ") + kGuideScaleOrder);
  for (double g : req.guide_scale) {
    if (!std::isfinite(g)) bad("guide_scale", "not finite");
  }
  if (req.shift && !(*req.shift > 0.0 && std::isfinite(*req.shift))) bad("shift", "must be a positive number");
  try {
    parse_solver(req.sampler);
  } catch (const Error& e) {
    bad("sampler", "'" + req.sampler + "' (unipc, dpm++ or euler)");
  }
}

GenGeometry WanGenerator::geometry(const GenRequest& req) const {
  validate(req);
  at::Tensor rgb;
  if (req.image_rgb.defined()) {
    rgb = req.image_rgb;
  } else if (!req.image.empty()) {
    rgb = image_from_bytes(req.image);
  }
  GenState st;
  st.has_image = rgb.defined();
  resolve_size(req, st.has_image ? rgb.size(0) : 0, st.has_image ? rgb.size(1) : 0, st);
  GenGeometry g;
  g.has_image = st.has_image;
  g.width = st.width;
  g.height = st.height;
  g.frames = st.frames;
  g.lat_f = st.lat_f;
  g.lat_h = st.lat_h;
  g.lat_w = st.lat_w;
  g.seq_len = st.seq_len;
  return g;
}

VaeDecodePlan WanGenerator::plan_decode(const GenGeometry& g, std::int64_t budget_bytes) const {
  VaeDecodeOptions o;
  o.budget_bytes = budget_bytes;
  o.output_on_cpu = true;
  return Vae::plan_decode(vae_cfg_, vae_weight_bytes_, device_, at::kFloat, {g.lat_f, g.lat_h, g.lat_w}, o);
}

void WanGenerator::phase(const char* name) const {
  if (opt_.on_phase) opt_.on_phase(name);
}

void WanGenerator::resolve_size(const GenRequest& req, int64_t img_h, int64_t img_w, GenState& st) const {
  const ModelTraits rules = traits_of(cfg_);
  const int64_t w = req.width ? req.width : rules.default_width;
  const int64_t h = req.height ? req.height : rules.default_height;
  const int64_t stride = cfg_.vae_stride_h;  // 8 (A14B) or 16 (ti2v)
  st.frames = req.frames ? req.frames : rules.default_frames;
  st.lat_f = (st.frames - 1) / cfg_.vae_stride_t + 1;
  if (!st.has_image) {
    st.width = w;
    st.height = h;
  } else if (!is_ti2v(cfg_)) {
    // WanI2V.generate: area only, aspect of the image.
    auto [lat_h, lat_w] = i2v_latent_size(w * h, img_h, img_w, stride, cfg_.patch_h);
    st.height = lat_h * stride;
    st.width = lat_w * stride;
  } else {
    auto [ow, oh] = best_output_size(img_w, img_h, stride * cfg_.patch_w, stride * cfg_.patch_h, w * h);
    st.width = ow;
    st.height = oh;
  }
  st.lat_h = st.height / stride;
  st.lat_w = st.width / stride;
  st.seq_len = st.lat_f * (st.lat_h / cfg_.patch_h) * (st.lat_w / cfg_.patch_w);
}

at::Tensor WanGenerator::encode_text(const std::string& text) { return checked_text(text_(text)); }

at::Tensor WanGenerator::checked_text(at::Tensor ctx) const {
  if (ctx.dim() != 2 || ctx.size(1) != cfg_.text_dim) {
    throw Error(ErrorCode::kModelFormat, "text encoder: output " + c10::str(ctx.sizes()) + ", the DiT needs [L, " +
                                             std::to_string(cfg_.text_dim) + "]");
  }
  if (ctx.size(0) > cfg_.text_len) ctx = ctx.narrow(0, 0, cfg_.text_len);
  return ctx.to(device_);
}

GenState WanGenerator::start_state(const GenRequest& req, at::Tensor* rgb) const {
  validate(req);
  GenState st;
  st.task = req.task;
  st.seed = req.seed;
  if (req.image_rgb.defined()) {
    *rgb = req.image_rgb.to(at::kCPU).contiguous();
  } else if (!req.image.empty()) {
    *rgb = image_from_bytes(req.image);
  }
  st.has_image = rgb->defined();
  resolve_size(req, st.has_image ? rgb->size(0) : 0, st.has_image ? rgb->size(1) : 0, st);

  set_guidance_and_sampler(req, st);
  return st;
}

void WanGenerator::set_guidance_and_sampler(const GenRequest& req, GenState& st) const {
  // Guidance scales (low-noise, high-noise) and the sampler.
  st.guide_low = cfg_.guide_scale_low;
  st.guide_high = cfg_.guide_scale_high;
  if (req.guide_scale.size() == 1) st.guide_low = st.guide_high = req.guide_scale[0];
  if (req.guide_scale.size() == 2) {
    st.guide_low = req.guide_scale[0];
    st.guide_high = req.guide_scale[1];
  }
  const int steps = req.steps ? req.steps : cfg_.sample_steps;
  const double shift = req.shift ? *req.shift : cfg_.sample_shift;
  st.sampler.emplace(parse_solver(req.sampler), steps, shift);
}

GenState WanGenerator::prepare(const GenRequest& req, const CancelCheck& check) {
  use_deterministic_cpu_threads(device_);
  auto checkpoint = [&] {
    if (check) check();
  };
  at::Tensor rgb;
  GenState st = start_state(req, &rgb);

  // Text: the prompt and the default negative prompt when empty (reference §5.5); two separate
  // encodes, or one call of text_encoder_many that runs both (the same per-text results).
  checkpoint();
  phase("text");
  // Note [Guidance 1] (sampler_schedule.h): a job none of whose steps guides never reads the
  // negative prompt's embedding, so it is not encoded.
  bool needs_negative = false;
  for (bool u : uncond_of_step(st)) needs_negative = needs_negative || u;
  const std::string negative = req.negative.empty() ? default_negative_prompt() : req.negative;
  if (!needs_negative) {
    if (opt_.text_encoder_many) {
      std::vector<at::Tensor> one = opt_.text_encoder_many({req.prompt});
      if (one.size() != 1) {
        throw Error(ErrorCode::kModelFormat, "text encoder: " + std::to_string(one.size()) + " outputs for 1 text");
      }
      st.context = checked_text(one[0]);
    } else {
      st.context = encode_text(req.prompt);
    }
  } else if (opt_.text_encoder_many) {
    std::vector<at::Tensor> both = opt_.text_encoder_many({req.prompt, negative});
    if (both.size() != 2) {
      throw Error(ErrorCode::kModelFormat, "text encoder: " + std::to_string(both.size()) + " outputs for 2 texts");
    }
    st.context = checked_text(both[0]);
    st.context_null = checked_text(both[1]);
  } else {
    st.context = encode_text(req.prompt);
    checkpoint();
    st.context_null = encode_text(negative);
  }

  // Noise (the only random draw), then the task's conditioning.
  checkpoint();
  const int64_t channels = cfg_.out_dim;  // 16 (A14B) or 48 (ti2v)
  at::Tensor noise = draw_noise(req.seed, {channels, st.lat_f, st.lat_h, st.lat_w}, &st.rng_state).to(device_);
  st.latent = noise;
  if (st.has_image && !is_ti2v(cfg_)) {
    // WanI2V.generate: bicubic resize on the CPU (fp32), conditioning video with
    // F - 1 zero frames, VAE encode, y = cat(mask, latent).
    at::Tensor img = bicubic_resize(unit_image(rgb), st.height, st.width);  // [3, h, w]
    // (Built in place, in the host tier when the pipeline lends it: no second video-sized copy.)
    at::Tensor video;
    if (opt_.vae_budget && opt_.host_video) video = opt_.host_video({3, st.frames, st.height, st.width});
    if (video.defined()) {
      video.zero_();
    } else {
      video = at::zeros({3, st.frames, st.height, st.width}, at::kFloat);
    }
    video.select(1, 0).copy_(img);
    checkpoint();
    phase("encode");
    at::Tensor lat;
    if (opt_.vae_budget) {
      // The budget before the VAE is loaded (Note [VAE per phase], generator.h); the video
      // stays in host memory and the encode streams it frame chunk by frame chunk when it must.
      VaeEncodeOptions eo;
      eo.budget_bytes = opt_.vae_budget();
      log::get("model")->info("encode budget={}", format_bytes(static_cast<std::uint64_t>(eo.budget_bytes)));
      lat = vae().encode(video, eo);  // [16, Fl, lat_h, lat_w]
      vae_.reset();
    } else {
      lat = vae().encode(video.to(device_));
    }
    at::Tensor msk = i2v_mask(st.frames, st.lat_h, st.lat_w).to(device_);
    st.y = at::cat({msk, lat.to(at::kFloat)}, 0);
  } else if (st.has_image) {
    // WanTI2V.i2v: Lanczos + centre crop, VAE 2.2 encode of the one frame, frame-0 mixing.
    at::Tensor img = ti2v_image(rgb, st.width, st.height);  // [3, 1, oh, ow]
    checkpoint();
    phase("encode");
    if (opt_.vae_budget) {
      VaeEncodeOptions eo;
      eo.budget_bytes = opt_.vae_budget();
      st.z = vae().encode(img, eo).to(at::kFloat);  // [48, 1, lat_h, lat_w]
      vae_.reset();
    } else {
      st.z = vae().encode(img.to(device_)).to(at::kFloat);
    }
    st.mask2 = at::ones_like(noise);
    st.mask2.select(1, 0).zero_();
    st.latent = (1.0 - st.mask2) * st.z + st.mask2 * noise;
  }
  log::get("model")->info("prepare task={} size={}x{} frames={} latent={} seq_len={} steps={} sampler={} seed={}",
                          st.task, st.width, st.height, st.frames, c10::str(st.latent.sizes()), st.seq_len,
                          st.total_steps(), solver_name(st.sampler->kind()), st.seed);
  // The LoRAs last, right before the steps: the text and VAE phases' budgets do not hold them.
  checkpoint();
  st.loras = job_loras(req);
  return st;
}

// What a checkpoint of a job must match: the shapes of the fresh state's latent and
// conditioning (empty: the job has none of it), and the dtypes the text embeddings are
// restored to (unset: as saved, which is what the job's prepare() produced).
struct WanGenerator::Expected {
  std::vector<int64_t> latent, y, z, mask2;
  c10::optional<at::ScalarType> context, context_null;
};

GenState WanGenerator::resume(const GenRequest& req, const std::map<std::string, std::vector<std::uint8_t>>& blobs,
                              const CancelCheck& check) {
  use_deterministic_cpu_threads(device_);
  at::Tensor rgb;  // decoded for the geometry only (an i2v / ti2v size follows the image)
  GenState st = start_state(req, &rgb);
  st.loras = job_loras(req);
  if (check) check();
  // The shapes prepare() would give (the noise, y = cat(mask(4), image latent), z, mask2).
  Expected want;
  want.latent = {cfg_.out_dim, st.lat_f, st.lat_h, st.lat_w};
  if (st.has_image && !is_ti2v(cfg_)) {
    want.y = {4 + vae_cfg_.z_dim, st.lat_f, st.lat_h, st.lat_w};
  } else if (st.has_image) {
    want.z = {vae_cfg_.z_dim, 1, st.lat_h, st.lat_w};
    want.mask2 = want.latent;
  }
  restore(st, blobs, want);
  log::get("model")->info("resume task={} size={}x{} frames={} step={} of {} (text and conditioning from the "
                          "checkpoint)",
                          st.task, st.width, st.height, st.frames, st.completed_steps(), st.total_steps());
  return st;
}

std::vector<int> WanGenerator::expert_of_step(const GenState& st) const {
  WAND_ASSERT(st.sampler.has_value(), "expert_of_step: state was not prepared");
  std::vector<int> out;
  for (int64_t t : st.sampler->schedule().timesteps) {
    out.push_back(two_experts_ && !choose_expert(t, cfg_.boundary, st.guide_low, st.guide_high).use_high_noise ? 1 : 0);
  }
  return out;
}

std::vector<bool> WanGenerator::uncond_of_step(const GenRequest& req) const {
  validate(req);
  GenState st;
  set_guidance_and_sampler(req, st);
  return uncond_of(st);
}

std::vector<bool> WanGenerator::uncond_of_step(const GenState& st) const { return uncond_of(st); }

std::vector<bool> WanGenerator::uncond_of(const GenState& st) const {
  WAND_ASSERT(st.sampler.has_value(), "uncond_of_step: state was not prepared");
  std::vector<bool> out;
  for (int64_t t : st.sampler->schedule().timesteps) {
    // One model: the high-noise scale is its scale (step()).
    const double g = two_experts_ ? choose_expert(t, cfg_.boundary, st.guide_low, st.guide_high).guide_scale
                                  : st.guide_high;
    out.push_back(uses_uncond(g));
  }
  return out;
}

fs::path WanGenerator::expert_dir(bool high_noise) const {
  const formats::ModelLayout layout = formats::detect_model_layout(dir_);
  return layout.experts.at(two_experts_ && !high_noise ? 1 : 0).dir;
}

const WanDit& WanGenerator::expert(bool high_noise) {
  std::unique_ptr<WanDit>& slot = (two_experts_ && !high_noise) ? low_ : high_;
  if (!slot) {
    if (two_experts_ && !opt_.keep_both_experts) (high_noise ? low_ : high_).reset();
    const fs::path d = expert_dir(high_noise);
    CheckpointDir ck(d);
    slot = std::make_unique<WanDit>(WanDit::load(ck, run_, device_, /*load_blocks=*/true));
    log::get("model")->info("dit loaded dir={} layers={} dtype={}", d.string(), slot->num_layers(), run_dtype_name(run_));
  }
  return *slot;
}

std::vector<std::shared_ptr<const DitLora>> WanGenerator::job_loras(const GenRequest& req) {
  if (req.loras.empty()) return {};
  if (req.lora_files.size() != req.loras.size()) {
    throw Error(ErrorCode::kBadRequest, "loras: " + std::to_string(req.loras.size()) + " LoRAs but " +
                                            std::to_string(req.lora_files.size()) +
                                            " files (the daemon resolves each name to a file of its config)");
  }
  // The set: every (name, strength, expert, file, file size, mtime); the same set reuses the
  // factors already on the device.
  std::string key;
  for (std::size_t i = 0; i < req.loras.size(); ++i) {
    std::error_code ec;
    const auto size = fs::file_size(req.lora_files[i], ec);
    const auto mtime = fs::last_write_time(req.lora_files[i], ec).time_since_epoch().count();
    key += lora_ref_text(req.loras[i]) + "=" + req.lora_files[i] + "#" + std::to_string(ec ? 0 : size) + "@" +
           std::to_string(ec ? 0 : mtime) + ";";
  }
  if (key == lora_key_) return lora_cache_;
  lora_cache_.clear();
  lora_key_.clear();
  std::vector<DitLora::Use> per_expert[2];
  std::map<std::string, std::shared_ptr<const LoraFile>> files;
  for (std::size_t i = 0; i < req.loras.size(); ++i) {
    const LoraRef& r = req.loras[i];
    if (r.strength == 0.0) continue;
    auto& f = files[req.lora_files[i]];
    if (!f) {
      try {
        f = LoraFile::read(req.lora_files[i], cfg_)->to(device_);  // one device copy for both experts
      } catch (const Error& e) {
        throw Error(e.code(), "LoRA '" + r.name + "': " + e.what());
      }
    }
    if (r.expert != "low") per_expert[0].push_back({f, r.strength});
    if (r.expert != "high" && two_experts_) per_expert[1].push_back({f, r.strength});
  }
  std::vector<std::shared_ptr<const DitLora>> out(two_experts_ ? 2 : 1);
  for (std::size_t e = 0; e < out.size(); ++e) {
    if (!per_expert[e].empty()) out[e] = DitLora::build(per_expert[e], device_, run_);
    if (out[e]) {
      log::get("model")->info("lora expert={} set=[{}] factors={}", e == 0 ? (two_experts_ ? "high" : "single") : "low",
                              out[e]->describe(), format_bytes(out[e]->factor_bytes()));
    }
  }
  lora_key_ = key;
  lora_cache_ = out;
  return out;
}

const Vae& WanGenerator::vae() {
  if (!vae_) {
    const std::unique_ptr<TensorSource> src = open_part(formats::detect_model_layout(dir_).vae(cfg_.model_type));
    VaeOptions o;
    o.device = device_;
    o.dtype = at::kFloat;
    vae_ = std::make_unique<Vae>(*src, o);
  }
  return *vae_;
}

void WanGenerator::step(GenState& st, const CancelCheck& check) {
  use_deterministic_cpu_threads(device_);
  WAND_ASSERT(st.sampler.has_value(), "step: state was not prepared");
  if (st.sampler->done()) throw Error(ErrorCode::kInternal, "step: every step is already done");
  phase("steps");
  at::NoGradGuard no_grad;
  const int64_t t = st.sampler->timestep();
  bool high = true;
  double g = st.guide_high;
  char who = 's';
  if (two_experts_) {
    const ExpertChoice c = choose_expert(t, cfg_.boundary, st.guide_low, st.guide_high);
    high = c.use_high_noise;
    g = c.guide_scale;
    who = high ? 'h' : 'l';
  }
  // Timestep input: A14B int64 [1]; ti2v per-token fp32 [1, seq_len] (0 on frame 0 with an image).
  at::Tensor t_in = is_ti2v(cfg_)
                        ? ti2v_token_timesteps(st.lat_f, st.lat_h / cfg_.patch_h, st.lat_w / cfg_.patch_w, st.seq_len,
                                               t, st.has_image)
                              .to(device_)
                        : at::full({1}, t, at::TensorOptions().dtype(at::kLong)).to(device_);
  c10::optional<at::Tensor> y;
  if (st.y.defined()) y = st.y;

  const at::Tensor& x = st.latent;
  const bool uncond = uses_uncond(g);  // Note [Guidance 1]
  if (uncond && !st.context_null.defined()) {
    throw Error(ErrorCode::kInternal, "step: guide scale " + std::to_string(g) + " needs the negative prompt's "
                                      "embedding, which this job did not encode");
  }
  const std::size_t e = two_experts_ && !high ? 1 : 0;
  const DitLora* lora = e < st.loras.size() ? st.loras[e].get() : nullptr;
  at::Tensor v_c, v_u;
  if (opt_.cfg_forward) {
    StepForwardInputs in;
    in.step = st.sampler->step_index();
    in.high_noise = high;
    in.uncond = uncond;
    in.x = x;
    in.t = t_in;
    in.context = st.context;
    in.context_null = st.context_null;
    in.seq_len = st.seq_len;
    in.y = y;
    in.lora = lora;
    std::tie(v_c, v_u) = opt_.cfg_forward(in, check);
    if (!v_c.defined() || (uncond && !v_u.defined())) {
      throw Error(ErrorCode::kInternal, "step: the CFG-forward hook returned no prediction for a branch it was asked for");
    }
  } else {
    // The owned blocks, with the job's check between them (Note [Block loops], dit.h).
    const WanDit& dit = expert(high);
    const BlockLoop blocks = [&](const BlockBody& body) {
      for (int64_t i = 0; i < dit.num_layers(); ++i) {
        if (check) check();
        body(i, dit.block_weights(i));
        block_calls_ += uncond ? 2 : 1;  // both branches, or the cond one alone
      }
      if (check) check();
    };
    const BlockLoop merged = with_lora(blocks, lora);  // Note [LoRA merge]
    if (uncond) {
      std::tie(v_c, v_u) = dit.forward_cfg(x, t_in, st.context, st.context_null, st.seq_len, y, merged);
    } else {
      v_c = dit.forward(x, t_in, st.context, st.seq_len, y, merged);
    }
  }
  // Guidance 1: the cond prediction is the step's velocity as it is (no fp32 round trip
  // through u + (c - u), which would not be bitwise c).
  at::Tensor v = uncond ? cfg_combine(v_u, v_c, g) : v_c.to(at::kFloat);

  // Sampler step on a copy so that a throw above leaves the state untouched.
  at::Tensor next = st.sampler->step(v, x);
  if (st.mask2.defined()) next = (1.0 - st.mask2) * st.z + st.mask2 * next;  // ti2v re-injection
  st.latent = next;
  st.experts_run.push_back(who);
  if (st.sampler->done() && !st.loras.empty()) {
    // Note [LoRA merge]: the factors leave the card with the last step (the decode's budget
    // does not hold them).
    st.loras.clear();
    lora_cache_.clear();
    lora_key_.clear();
  }
}

at::Tensor WanGenerator::decode(const GenState& st, const CancelCheck& check) {
  use_deterministic_cpu_threads(device_);
  WAND_ASSERT(st.sampler.has_value(), "decode: state was not prepared");
  if (!st.sampler->done()) {
    throw Error(ErrorCode::kInternal, "decode: " + std::to_string(st.completed_steps()) + " of " +
                                          std::to_string(st.total_steps()) + " steps done");
  }
  if (check) check();
  phase("decode");
  at::NoGradGuard no_grad;
  if (!opt_.vae_budget) {
    VaeDecodeOptions vo;
    vo.check = check;  // cancel honoured between latent frames (issue 15)
    at::Tensor video = vae().decode(st.latent, vo);  // [3, F, H, W] in [-1, 1]
    return video.to(at::kCPU).to(at::kFloat);
  }
  // The budget is asked before the VAE is loaded: it counts the weights (Note [VAE per phase]).
  VaeDecodeOptions o;
  o.budget_bytes = opt_.vae_budget();
  o.output_on_cpu = true;
  o.check = check;
  const VaeDecodePlan plan = plan_decode(GenGeometry{st.has_image, st.width, st.height, st.frames, st.lat_f,
                                                     st.lat_h, st.lat_w, st.seq_len},
                                         o.budget_bytes);
  if (o.budget_bytes > 0 && !plan.fits) {
    throw Error(ErrorCode::kOutOfMemory,
                "decode of " + std::to_string(st.width) + "x" + std::to_string(st.height) + "x" +
                    std::to_string(st.frames) + " does not fit the card: its smallest tiles need " +
                    format_bytes(static_cast<std::uint64_t>(plan.est_total_bytes)) + " and the budget leaves " + format_bytes(static_cast<std::uint64_t>(o.budget_bytes)));
  }
  log::get("model")->info("decode budget={} plan: {}", format_bytes(static_cast<std::uint64_t>(o.budget_bytes)), plan.describe());
  at::Tensor video;
  {
    const Vae& v = vae();
    if (opt_.host_video) {
      const int64_t s = v.config().spatial_stride();
      o.output = opt_.host_video({3, 1 + 4 * (st.lat_f - 1), st.lat_h * s, st.lat_w * s});
    }
    video = v.decode(st.latent, o);
  }
  vae_.reset();
  return video.to(at::kCPU).to(at::kFloat);
}

at::Tensor WanGenerator::to_uint8(const at::Tensor& video) {
  WAND_ASSERT(video.dim() == 4 && video.size(0) == 3, "to_uint8: expected [3, F, H, W]");
  at::Tensor out = at::empty({video.size(1), video.size(2), video.size(3), 3}, at::TensorOptions().dtype(at::kByte));
  to_uint8(video, out.data_ptr<std::uint8_t>());
  return out;
}

void WanGenerator::to_uint8(const at::Tensor& video, std::uint8_t* dst) {
  WAND_ASSERT(video.dim() == 4 && video.size(0) == 3, "to_uint8: expected [3, F, H, W]");
  const int64_t frames = video.size(1), h = video.size(2), w = video.size(3);
  at::Tensor out = at::from_blob(dst, {frames, h, w, 3}, at::TensorOptions().dtype(at::kByte));
  for (int64_t f = 0; f < frames; ++f) {
    // Per element, as the official save: clamp to [-1, 1], (x + 1) / 2, x 255, truncation.
    at::Tensor x = video.select(1, f).to(at::kCPU).to(at::kFloat).clamp(-1.0, 1.0);  // [3, H, W]
    x = (x - (-1.0)) / (1.0 - (-1.0));
    out.select(0, f).copy_((x * 255).to(at::kByte).permute({1, 2, 0}));
  }
}

std::map<std::string, std::vector<std::uint8_t>> WanGenerator::save_state(const GenState& st) const {
  WAND_ASSERT(st.sampler.has_value(), "save_state: state was not prepared");
  std::map<std::string, std::vector<std::uint8_t>> out;
  at::Tensor who = at::empty({static_cast<int64_t>(st.experts_run.size())}, at::kByte);
  for (std::size_t i = 0; i < st.experts_run.size(); ++i) who[static_cast<int64_t>(i)] = static_cast<int64_t>(st.experts_run[i]);
  out["latent"] = tensors_to_bytes({{"latent", st.latent},
                                    {"step_index", at::full({1}, st.sampler->step_index(), at::kLong)},
                                    {"experts_run", who}});
  out["sampler"] = tensors_to_bytes(st.sampler->state_dict());
  out["rng"] = tensors_to_bytes({{"generator_state", st.rng_state},
                                 {"seed", at::full({1}, static_cast<int64_t>(st.seed), at::kLong)}});
  std::map<std::string, at::Tensor> cond{{"context", st.context}};
  if (st.context_null.defined()) cond["context_null"] = st.context_null;  // none when nothing guides
  if (st.y.defined()) cond["y"] = st.y;
  if (st.z.defined()) cond["z"] = st.z;
  if (st.mask2.defined()) cond["mask2"] = st.mask2;
  out["cond"] = tensors_to_bytes(cond);
  return out;
}

void WanGenerator::load_state(GenState& st, const std::map<std::string, std::vector<std::uint8_t>>& blobs) const {
  WAND_ASSERT(st.sampler.has_value(), "load_state: state was not prepared");
  Expected want;
  want.latent = st.latent.sizes().vec();
  if (st.y.defined()) want.y = st.y.sizes().vec();
  if (st.z.defined()) want.z = st.z.sizes().vec();
  if (st.mask2.defined()) want.mask2 = st.mask2.sizes().vec();
  want.context = st.context.scalar_type();
  if (st.context_null.defined()) want.context_null = st.context_null.scalar_type();
  restore(st, blobs, want);
}

void WanGenerator::restore(GenState& st, const std::map<std::string, std::vector<std::uint8_t>>& blobs,
                           const Expected& want) const {
  WAND_ASSERT(st.sampler.has_value(), "restore: state has no sampler");
  auto lat = parse_blob(blobs, "latent");
  auto smp = parse_blob(blobs, "sampler");
  auto rng = parse_blob(blobs, "rng");
  auto cond = parse_blob(blobs, "cond");
  for (const char* k : {"latent", "step_index", "experts_run"}) need_blob_entry(lat, "latent", k);
  for (const char* k : {"generator_state", "seed"}) need_blob_entry(rng, "rng", k);
  need_blob_entry(cond, "cond", "context");
  // The negative prompt's embedding: needed when a step guides (Note [Guidance 1]).
  bool needs_negative = false;
  for (bool u : uncond_of_step(st)) needs_negative = needs_negative || u;
  if (needs_negative) need_blob_entry(cond, "cond", "context_null");
  if (rng["seed"].item<int64_t>() != static_cast<int64_t>(st.seed)) {
    throw Error(ErrorCode::kModelFormat, "checkpoint blob 'rng': seed differs from the job's");
  }
  check_same_shape(lat["latent"], want.latent, "latent", "latent");
  for (const char* k : {"y", "z", "mask2"}) {
    const std::vector<int64_t>& shape = std::string(k) == "y" ? want.y : (std::string(k) == "z" ? want.z : want.mask2);
    if (!shape.empty()) {
      need_blob_entry(cond, "cond", k);
      check_same_shape(cond[k], shape, "cond", k);
    }
  }
  // Sampler: the saved history lives with the latents on the run device.
  for (auto& [k, v] : smp) {
    if (v.dim() >= 2) v = v.to(device_);
  }
  FlowSampler sampler(smp);
  if (sampler.kind() != st.sampler->kind() || sampler.steps() != st.sampler->steps() ||
      sampler.schedule().sigmas != st.sampler->schedule().sigmas) {
    throw Error(ErrorCode::kModelFormat, "checkpoint blob 'sampler': solver, steps or shift differ from the job's");
  }
  const int64_t idx = lat["step_index"].item<int64_t>();
  if (idx != sampler.step_index() || lat["experts_run"].numel() != idx) {
    throw Error(ErrorCode::kModelFormat, "checkpoint blob 'latent': step_index " + std::to_string(idx) +
                                             " does not match the sampler's " + std::to_string(sampler.step_index()));
  }
  // Commit.
  st.latent = lat["latent"].to(at::kFloat).to(device_);
  st.sampler.emplace(std::move(sampler));
  st.rng_state = rng["generator_state"];
  st.experts_run.clear();
  at::Tensor who = lat["experts_run"].to(at::kByte).contiguous();
  for (int64_t i = 0; i < who.numel(); ++i) st.experts_run.push_back(static_cast<char>(who[i].item<int64_t>()));
  const at::Tensor& ctx = cond["context"];
  st.context = ctx.to(want.context.value_or(ctx.scalar_type())).to(device_);
  st.context_null = at::Tensor();
  if (cond.count("context_null") != 0) {
    const at::Tensor& ctx_null = cond["context_null"];
    st.context_null = ctx_null.to(want.context_null.value_or(ctx_null.scalar_type())).to(device_);
  }
  if (!want.y.empty()) st.y = cond["y"].to(device_);
  if (!want.z.empty()) st.z = cond["z"].to(device_);
  if (!want.mask2.empty()) st.mask2 = cond["mask2"].to(device_);
}

}  // namespace wand::model
