// WanGenerator: the official Wan2.2 generation pipelines (WanT2V.generate,
// WanI2V.generate, WanTI2V.generate) as a step-wise generator, so that a job
// runner can checkpoint between denoising steps and resume bitwise identically.
//
//   WanGenerator gen("/models/Wan2.2-T2V-A14B");          // release layout
//   GenRequest req;  req.task = "t2v";  req.prompt = "a cat surfing";
//   req.width = 832; req.height = 480; req.frames = 81; req.seed = 42;
//   GenState st = gen.prepare(req);                        // text, noise, i2v/ti2v conditioning
//   while (st.completed_steps() < st.total_steps()) {
//     gen.step(st, [&] { token.throw_if_cancelled(); });   // checked between DiT blocks
//     auto blobs = gen.save_state(st);                     // latents, sampler, RNG, conditioning
//   }
//   at::Tensor video = gen.decode(st);                     // [3, F, H, W] fp32 in [-1, 1] (CPU)
//   at::Tensor rgb = WanGenerator::to_uint8(video);        // [F, H, W, 3] uint8 (truncation)
//
//   GenState again = gen.resume(req, blobs);               // after a crash: no text / image encode
//
// Model directories (reference §2.1; wand-make-model writes the same layout):
//   A14B (t2v / i2v): high_noise_model/ + low_noise_model/ (config.json + shards),
//     models_t5_umt5-xxl-enc-bf16.pth, Wan2.1_VAE.pth, google/umt5-xxl/;
//   ti2v-5B: config.json + shards at the root, the same T5 and tokenizer, Wan2.2_VAE.pth.
//
// Tasks: an A14B t2v dir runs "t2v" (width x height exactly, multiples of 16);
// an A14B i2v dir runs "i2v" (image required; width * height is the area, the
// aspect follows the image); a ti2v dir runs "ti2v" (image optional), "t2v"
// (no image) and "i2v" (image required): without an image width x height
// exactly (multiples of 32), with one best_output_size of the area.
//
// Note [CPU noise]: the reproducibility contract. The only random draw of a job
// is the initial noise, drawn on the CPU from a generator seeded with the seed
// (at::randn, float32) and then moved to the run device. The same seed gives
// the same noise on every machine and device, unlike the official CUDA draw
// (which depends on the PyTorch version and the GPU's SM count). On the CPU in
// fp32 the whole generation is deterministic: same request -> same bytes.
//
// Device: CUDA when LibTorch has it and a GPU is present, else the CPU; DiT run
// dtype bf16 on CUDA, fp32 on the CPU (GeneratorOptions overrides both). The
// VAEs run in fp32, latents and sampler arithmetic are fp32.
//
// Owns the DiT experts (loaded on first use), the VAE and the text encoder.
// One thread at a time per generator; a GenState belongs to one generator.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <ATen/ATen.h>

#include "common/job_request.h"
#include "common/model_traits.h"
#include "model/dit_block_weights.h"  // RunDtype
#include "model/sampler.h"
#include "model/vae_config.h"
#include "model/vae_tiling.h"
#include "model/wan_config.h"

namespace wand::model {

class WanDit;
class Vae;
class DitLora;

// Encodes one prompt to its trimmed umT5 embedding [L_txt, text_dim] (EOS
// included); the prompt is passed as given (cleaning is the encoder's job).
using TextEncodeFn = std::function<at::Tensor(const std::string& text)>;
// Several texts in one call ([L_i, text_dim] each, in order): a streamed encoder reads its
// weights once for all of them (scheduler/exec T5Stream::encode_texts).
using TextEncodeManyFn = std::function<std::vector<at::Tensor>(const std::vector<std::string>& texts)>;
// Called between DiT blocks (and between the stages of prepare/decode); throws
// (e.g. Error(kCancelled)) to stop. The state is left as it was before the call.
using CancelCheck = std::function<void()>;

// What one CFG step's DiT forwards need (for an external executor).
struct StepForwardInputs {
  int64_t step = 0;          // sampler step index k
  bool high_noise = true;    // A14B: which expert (ti2v: always true, the single model)
  // false: guidance 1 at this step (Note [Guidance 1], sampler_schedule.h): run the cond branch
  // only and return (cond, undefined); context_null may then be undefined.
  bool uncond = true;
  at::Tensor x;              // [C, F, H, W] fp32 latent
  at::Tensor t;              // [1] int64 (A14B) or [1, seq_len] fp32 per-token (ti2v)
  at::Tensor context;        // [L, text_dim] prompt embedding
  at::Tensor context_null;   // [L', text_dim] negative prompt embedding
  int64_t seq_len = 0;
  c10::optional<at::Tensor> y;  // i2v conditioning [20, F, H, W]
  const DitLora* lora = nullptr;  // the job's LoRAs of this expert (model/lora.h); null: none
};
// Runs both CFG branches of a step, returns (cond, uncond) velocities, each
// [C, F, H, W] fp32 (with in.uncond false the cond branch only: (cond, undefined)); must call
// `check` between blocks. E.g. the streaming
// DitExecutor of scheduler/exec (blocks from the memory tiers).
using CfgForwardFn = std::function<std::pair<at::Tensor, at::Tensor>(const StepForwardInputs&, const CancelCheck&)>;

struct GeneratorOptions {
  std::optional<at::Device> device;  // default: CUDA when available, else CPU
  std::optional<RunDtype> run_dtype;  // default: bf16 on CUDA, fp32 on the CPU
  // Default: the umT5 encoder and tokenizer of the model directory.
  TextEncodeFn text_encoder;
  // When set, prepare() encodes the prompt and the negative prompt with one call of it
  // (instead of text_encoder twice); the same two [L, text_dim] results are expected.
  TextEncodeManyFn text_encoder_many;
  // A14B: keep both experts in memory once loaded (false: drop the idle one at
  // the switch and reload it when a later job needs it).
  bool keep_both_experts = true;
  // When set, step() calls it instead of its own resident-weight forwards and
  // never loads DiT weights itself.
  CfgForwardFn cfg_forward;
  // Note [VAE per phase]: when set, the VAE phases (the i2v / ti2v conditioning encode, the
  // decode) run inside a device budget: right before each phase it is asked how many bytes
  // the phase may take on the run device (the VAE's weights included; 0: no limit), the VAE
  // is loaded for that phase alone, tiled to fit (VaeDecodeOptions::budget_bytes; the video
  // gathers in host memory), and dropped after it, so no VAE weights sit on the card during
  // the steps. A phase that cannot fit even in its smallest tiles throws
  // Error(kOutOfMemory) naming the phase and the bytes. Unset: the official untiled VAE,
  // kept loaded.
  std::function<std::int64_t()> vae_budget;
  // With vae_budget: the VAE phases ask it for their videos' host buffers (the i2v
  // conditioning video before the encode, the decoded video), each a contiguous fp32 CPU
  // tensor of the given sizes [3, F, H, W]; an undefined tensor: the phase allocates its own
  // (Note [Videos in the host tier], scheduler/wan/wan_generator.cpp).
  std::function<at::Tensor(const std::vector<int64_t>& sizes)> host_video;
  // Told each phase of a job as it starts: "text", "encode" (only with an image), "steps"
  // (every step() call), "decode". For logs and per-phase memory sampling.
  std::function<void(const char* phase)> on_phase;
};

// The geometry of a validated request (WanGenerator::geometry): what the job's memory plan
// needs before anything runs.
struct GenGeometry {
  bool has_image = false;
  int64_t width = 0, height = 0, frames = 0;  // output video
  int64_t lat_f = 0, lat_h = 0, lat_w = 0;    // latent
  int64_t seq_len = 0;                        // DiT tokens
};

// A job request (common/job_request.h: task, prompt, negative, image bytes, sizes, steps,
// seed, guide_scale, shift, sampler; model and priority are not read here) and, instead of
// the encoded image, a decoded one.
// loras (JobRequest) are the effective set (common/job_request.h effective_loras); lora_files[i]
// is the file of loras[i], resolved by the daemon from its config (a job never names a path).
struct GenRequest : JobRequest {
  at::Tensor image_rgb;      // [H, W, 3] uint8; wins over image
  std::vector<std::string> lora_files;  // parallel to loras
};

// Everything a job needs between steps. Tensors live on the generator's device.
struct GenState {
  std::string task;               // as requested
  bool has_image = false;
  int64_t width = 0, height = 0;  // output video size
  int64_t frames = 0;
  int64_t lat_f = 0, lat_h = 0, lat_w = 0;
  int64_t seq_len = 0;            // tokens (one GPU: lat_f * lat_h/2 * lat_w/2)
  std::uint64_t seed = 0;
  double guide_low = 0, guide_high = 0;  // sample_guide_scale (low-noise, high-noise)
  // [L, text_dim] trimmed umT5 outputs (prompt, negative); context_null is undefined when no
  // step of the job guides (Note [Guidance 1], sampler_schedule.h).
  at::Tensor context, context_null;
  at::Tensor latent;                 // [C, lat_f, lat_h, lat_w] fp32
  at::Tensor y;                      // i2v: [20, lat_f, lat_h, lat_w] = cat(mask(4), image latent(16))
  at::Tensor z;                      // ti2v with image: [48, 1, lat_h, lat_w] image latent
  at::Tensor mask2;                  // ti2v with image: [48, lat_f, lat_h, lat_w], 0 on latent frame 0
  at::Tensor rng_state;              // CPU generator state after the noise draw (uint8)
  std::optional<FlowSampler> sampler;
  std::string experts_run;           // one char per completed step: 'h' high, 'l' low, 's' single model
  // The job's LoRAs per expert (0 high noise / single model, 1 low noise), on the device;
  // null: none (Note [LoRA merge], model/lora.h). Set by prepare() / resume() from the request,
  // dropped after the last step.
  std::vector<std::shared_ptr<const DitLora>> loras;

  int completed_steps() const { return sampler ? static_cast<int>(sampler->step_index()) : 0; }
  int total_steps() const { return sampler ? sampler->steps() : 0; }
};

class WanGenerator {
 public:
  explicit WanGenerator(const std::filesystem::path& dir, GeneratorOptions opt = {});
  ~WanGenerator();
  WanGenerator(const WanGenerator&) = delete;
  WanGenerator& operator=(const WanGenerator&) = delete;

  // True when `dir` has the file layout of an A14B or ti2v-5B release (no parsing of weights).
  static bool probe(const std::filesystem::path& dir);

  const WanConfig& config() const { return cfg_; }   // of the (first) expert
  bool two_experts() const { return two_experts_; }
  at::Device device() const { return device_; }
  RunDtype run_dtype() const { return run_; }
  int fps() const;                                    // 16 (A14B) or 24 (ti2v)
  std::vector<std::string> tasks() const;             // tasks this directory runs
  bool supports(const std::string& task) const;

  // Model-specific checks of a request (task, sizes, frames, steps, guide
  // scales, sampler, image presence); throws Error(kBadRequest) naming the field.
  void validate(const GenRequest& req) const;

  // The directory's DiT config (A14B: the high-noise expert's; both experts' are read and
  // must agree), with the constructor's checks, reading config.json files only (no weights).
  // Throws Error(kNotFound / kModelFormat) naming the file.
  static WanConfig read_dir_config(const std::filesystem::path& dir);
  // What a model of this config accepts (Note [Checks from the config], generator.cpp).
  static ModelTraits traits_of(const WanConfig& cfg);
  // validate() for a config: the same checks and messages, without a generator.
  static void validate_request(const WanConfig& cfg, const GenRequest& req);
  // validate() and the output / latent sizes of the request (an i2v / ti2v image is decoded
  // for its aspect); runs nothing.
  GenGeometry geometry(const GenRequest& req) const;
  // The tiles the decode of a job of this geometry takes within `budget_bytes` (its
  // weights included; 0: untiled), as decode() would plan it; the VAE need not be loaded.
  VaeDecodePlan plan_decode(const GenGeometry& g, std::int64_t budget_bytes) const;
  // Text encoding, noise, conditioning, sampler set-up. Checks `check` between stages.
  GenState prepare(const GenRequest& req, const CancelCheck& check = {});
  // The state prepare(req) then load_state(blobs) gives, bitwise, without the work the
  // checkpoint makes useless: no text encode, no conditioning (VAE) encode, no noise
  // draw; the conditioning and the text embeddings come from the "cond" blob, and the
  // shapes they are checked against from the request. Same checks and errors as
  // load_state. Checks `check` once before restoring.
  GenState resume(const GenRequest& req, const std::map<std::string, std::vector<std::uint8_t>>& blobs,
                  const CancelCheck& check = {});
  // One denoising step (expert by boundary, cond + uncond forwards interleaved
  // per block, CFG, sampler step, ti2v re-injection; at guidance 1 the cond forward only,
  // Note [Guidance 1]). On a throw the state is unchanged.
  void step(GenState& st, const CancelCheck& check = {});
  // Latents -> video [3, F, H, W] fp32 in [-1, 1] on the CPU. Needs every step done.
  at::Tensor decode(const GenState& st, const CancelCheck& check = {});
  // [3, F, H, W] in [-1, 1] -> [F, H, W, 3] uint8 as the official save_video
  // (clamp, (x + 1) / 2 * 255, truncation).
  static at::Tensor to_uint8(const at::Tensor& video);
  // The same written to dst (F * H * W * 3 bytes), one frame at a time: no video-sized
  // temporaries on the host.
  static void to_uint8(const at::Tensor& video, std::uint8_t* dst);

  // Checkpoint blobs: "latent", "sampler", "rng", "cond" (each an in-memory
  // safetensors, model/tensor_bytes.h). The conditioning (text embeddings,
  // i2v y, ti2v z) is stored too, so a resume never depends on re-encoding.
  std::map<std::string, std::vector<std::uint8_t>> save_state(const GenState& st) const;
  // Restores save_state() output into a state fresh from prepare() of the same
  // request (resume() does both without prepare's encodes). Throws
  // Error(kModelFormat) naming the blob on missing or mismatched data.
  void load_state(GenState& st, const std::map<std::string, std::vector<std::uint8_t>>& blobs) const;

  // Expert of every step of a prepared job (0 = high-noise / single model, 1 =
  // low-noise), from the sampler's timesteps and the boundary: the static
  // schedule an executor plans with.
  std::vector<int> expert_of_step(const GenState& st) const;
  // Whether each step of a prepared job runs the uncond branch (its guide scale is not 1,
  // Note [Guidance 1]): with expert_of_step, what an executor plans with.
  std::vector<bool> uncond_of_step(const GenState& st) const;
  // The same for a request, before prepare (validated; nothing decoded or run): a preflight's.
  std::vector<bool> uncond_of_step(const GenRequest& req) const;
  // The directory holding an expert's config.json and shards.
  std::filesystem::path expert_dir(bool high_noise) const;

  // Number of DiT block calls so far (both branches count; a guidance-1 step counts one per
  // block), for tests and stats.
  int64_t block_calls() const { return block_calls_; }

 private:
  const WanDit& expert(bool high_noise);
  const Vae& vae();
  void phase(const char* name) const;
  at::Tensor encode_text(const std::string& text);
  at::Tensor checked_text(at::Tensor ctx) const;  // shape check, trim to text_len, to device_
  void resolve_size(const GenRequest& req, int64_t img_h, int64_t img_w, GenState& st) const;
  // prepare()'s first part, shared with resume(): validation, the image decoded (into
  // *rgb), sizes, guidance scales, sampler. No model runs.
  GenState start_state(const GenRequest& req, at::Tensor* rgb) const;
  // start_state's guidance scales and sampler (into st).
  void set_guidance_and_sampler(const GenRequest& req, GenState& st) const;
  std::vector<bool> uncond_of(const GenState& st) const;
  // The request's LoRAs read and built for this generator's device (kept until a job's last
  // step: a prepare / resume of the same set and files meanwhile reuses them).
  std::vector<std::shared_ptr<const DitLora>> job_loras(const GenRequest& req);
  struct Expected;  // what a checkpoint of a job must match (generator.cpp)
  void restore(GenState& st, const std::map<std::string, std::vector<std::uint8_t>>& blobs,
               const Expected& want) const;

  std::filesystem::path dir_;
  GeneratorOptions opt_;
  at::Device device_ = at::kCPU;
  RunDtype run_ = RunDtype::kFloat32;
  bool two_experts_ = false;
  WanConfig cfg_;
  std::unique_ptr<WanDit> high_;   // A14B high-noise expert, or the single ti2v model
  std::unique_ptr<WanDit> low_;    // A14B low-noise expert
  std::unique_ptr<Vae> vae_;
  VaeConfig vae_cfg_;               // read from the .pth's shapes at construction
  std::int64_t vae_weight_bytes_ = 0;  // the VAE's weights in its run dtype (fp32)
  TextEncodeFn text_;
  int64_t block_calls_ = 0;
  std::string lora_key_;  // the set lora_cache_ was built for ("" none)
  std::vector<std::shared_ptr<const DitLora>> lora_cache_;
};

}  // namespace wand::model
