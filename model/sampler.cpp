#include "model/sampler.h"

#include <cmath>
#include <cstring>

#include "common/error.h"

namespace wand::model {

namespace {

// log-SNR of a flow sigma in float32: log(1 - s) - log(s).
float lambda_of(float sigma) {
  const float alpha = 1.0f - sigma;
  return std::log(alpha) - std::log(sigma);
}

// torch.linalg.solve of [[1, 1], [r, 1]] x = b in float32 (LU with partial pivoting).
void solve2(float r, float b0, float b1, float* x0, float* x1) {
  float a00 = 1.0f, a01 = 1.0f, a10 = r, a11 = 1.0f;
  if (std::fabs(a10) > std::fabs(a00)) {
    std::swap(a00, a10);
    std::swap(a01, a11);
    std::swap(b0, b1);
  }
  const float l = a10 * (1.0f / a00);
  const float u11 = a11 - l * a01;
  const float y1 = b1 - l * b0;
  *x1 = y1 / u11;
  *x0 = (b0 - a01 * *x1) / a00;
}

at::Tensor scalar_long(int64_t v) { return at::full({}, v, at::TensorOptions().dtype(at::kLong)); }

}  // namespace

FlowSampler::FlowSampler(SolverKind kind, int steps, double shift)
    : kind_(kind), shift_(shift), sched_(make_schedule(kind, steps, shift)) {}

FlowSampler::FlowSampler(const std::map<std::string, at::Tensor>& state) : kind_(SolverKind::kUniPC) {
  auto need = [&](const char* k) -> const at::Tensor& {
    auto it = state.find(k);
    if (it == state.end()) throw Error(ErrorCode::kBadRequest, std::string("sampler state: missing '") + k + "'");
    return it->second;
  };
  kind_ = solver_from_code(need("kind").item<int64_t>());
  shift_ = need("shift").item<double>();
  sched_ = make_schedule(kind_, static_cast<int>(need("steps").item<int64_t>()), shift_);
  load_state_dict(state);
}

int64_t FlowSampler::timestep() const {
  WAND_ASSERT(!done(), "sampler: no timestep after the last step");
  return sched_.timesteps[step_];
}

float FlowSampler::sigma() const {
  WAND_ASSERT(!done(), "sampler: no sigma after the last step");
  return sched_.sigmas[step_];
}

at::Tensor FlowSampler::step(const at::Tensor& model_output, const at::Tensor& sample) {
  if (done()) throw Error(ErrorCode::kBadRequest, "sampler: step() after the last step");
  if (model_output.sizes() != sample.sizes()) {
    throw Error(ErrorCode::kBadRequest, "sampler: model output and sample shapes differ");
  }
  if (kind_ == SolverKind::kEuler) {
    at::Tensor out = step_euler(model_output, sample);
    this_order_ = 1;
    if (lower_order_nums_ < 2) ++lower_order_nums_;
    ++step_;
    return out;
  }
  // Data prediction x0 = x - sigma * v (sigma is a float32 scalar promoted to the tensor dtype).
  at::Tensor v = model_output.to(sample.scalar_type());
  at::Tensor m = sample - static_cast<double>(sched_.sigmas[step_]) * v;
  at::Tensor out = kind_ == SolverKind::kUniPC ? step_unipc(m, sample) : step_dpmpp(m, sample, v);
  if (lower_order_nums_ < 2) ++lower_order_nums_;
  ++step_;
  return out;
}

at::Tensor FlowSampler::step_unipc(const at::Tensor& m, const at::Tensor& sample_in) {
  const std::vector<float>& s = sched_.sigmas;
  const int64_t k = step_;
  const int n = steps();
  at::Tensor sample = sample_in;
  // Corrector UniC-bh2 (order = the previous step's order) with the new model output.
  if (k > 0 && last_sample_.defined()) {
    const float sig_t = s[k], sig_s0 = s[k - 1];
    const float a_t = 1.0f - sig_t;
    const float h = lambda_of(sig_t) - lambda_of(sig_s0);
    const float hh = -h;
    const float phi1 = std::expm1(hh);
    const float bh = std::expm1(hh);
    const at::Tensor& m0 = last_output_;  // m_{k-1}
    at::Tensor x_t_ = static_cast<double>(sig_t / sig_s0) * last_sample_ - static_cast<double>(a_t * phi1) * m0;
    at::Tensor d1_t = m - m0;
    if (this_order_ == 1) {
      sample = x_t_ - static_cast<double>(a_t * bh) * (0.5 * d1_t);
    } else {
      const float rk = (lambda_of(s[k - 2]) - lambda_of(sig_s0)) / h;
      at::Tensor d1 = (prev_output_ - m0) / static_cast<double>(rk);
      float h_phi_k = phi1 / hh - 1.0f;
      const float b0 = h_phi_k * 1.0f / bh;
      h_phi_k = h_phi_k / hh - 0.5f;
      const float b1 = h_phi_k * 2.0f / bh;
      float rho0 = 0, rho1 = 0;
      solve2(rk, b0, b1, &rho0, &rho1);
      at::Tensor corr = static_cast<double>(rho0) * d1;
      sample = x_t_ - static_cast<double>(a_t * bh) * (corr + static_cast<double>(rho1) * d1_t);
    }
    sample = sample.to(sample_in.scalar_type());
  }
  prev_output_ = last_output_;
  last_output_ = m;
  this_order_ = std::min<int>(2, std::min<int>(n - static_cast<int>(k), lower_order_nums_ + 1));
  last_sample_ = sample;
  // Predictor UniP-bh2.
  const float sig_t = s[k + 1], sig_s0 = s[k];
  const float a_t = 1.0f - sig_t;
  const float h = lambda_of(sig_t) - lambda_of(sig_s0);
  const float hh = -h;
  const float phi1 = std::expm1(hh);
  const float bh = std::expm1(hh);
  at::Tensor x_t = static_cast<double>(sig_t / sig_s0) * sample - static_cast<double>(a_t * phi1) * m;
  if (this_order_ == 2) {
    const float rk = (lambda_of(s[k - 1]) - lambda_of(sig_s0)) / h;
    at::Tensor d1 = (prev_output_ - m) / static_cast<double>(rk);
    x_t = x_t - static_cast<double>(a_t * bh) * (0.5 * d1);
  }
  return x_t.to(sample_in.scalar_type());
}

at::Tensor FlowSampler::step_dpmpp(const at::Tensor& m, const at::Tensor& sample_in, const at::Tensor& v) {
  const std::vector<float>& s = sched_.sigmas;
  const int64_t k = step_;
  const int n = steps();
  prev_output_ = last_output_;
  last_output_ = m;
  at::Tensor x32 = sample_in.to(at::kFloat);  // official upcast
  const float sig_t = s[k + 1], sig_s0 = s[k];
  const float a_t = 1.0f - sig_t;
  const float h = lambda_of(sig_t) - lambda_of(sig_s0);
  const float c = a_t * (std::exp(-h) - 1.0f);
  at::Tensor x_t;
  const bool final_step = k == n - 1;  // final_sigmas_type zero -> first order
  if (lower_order_nums_ < 1 || final_step) {
    this_order_ = 1;
    x_t = x32 * (sig_t / sig_s0) - static_cast<double>(c) * m;
  } else {
    this_order_ = 2;
    const float h0 = lambda_of(sig_s0) - lambda_of(s[k - 1]);
    const float r0 = h0 / h;
    at::Tensor d1 = static_cast<double>(1.0f / r0) * (m - prev_output_);
    x_t = x32 * (sig_t / sig_s0) - static_cast<double>(c) * m - static_cast<double>(0.5f * c) * d1;
  }
  return x_t.to(v.scalar_type());
}

// FlowMatchEulerDiscreteScheduler.step (deterministic): x_next = x + (sigma_next - sigma) v, with
// the sample upcast to float32, dt a float32 scalar, the result in the model output's dtype.
// No history: the state is the step index.
at::Tensor FlowSampler::step_euler(const at::Tensor& v, const at::Tensor& sample) {
  const float dt = sched_.sigmas[step_ + 1] - sched_.sigmas[step_];
  at::Tensor x32 = sample.to(at::kFloat);
  return (x32 + static_cast<double>(dt) * v).to(v.scalar_type());
}

std::map<std::string, at::Tensor> FlowSampler::state_dict() const {
  std::map<std::string, at::Tensor> st;
  st["kind"] = scalar_long(solver_code(kind_));
  st["steps"] = scalar_long(steps());
  st["shift"] = at::full({}, shift_, at::TensorOptions().dtype(at::kDouble));
  st["step_index"] = scalar_long(step_);
  st["lower_order_nums"] = scalar_long(lower_order_nums_);
  st["this_order"] = scalar_long(this_order_);
  st["sigmas"] = at::tensor(at::ArrayRef<float>(sched_.sigmas)).clone();
  if (prev_output_.defined()) st["prev_output"] = prev_output_.cpu().clone();
  if (last_output_.defined()) st["last_output"] = last_output_.cpu().clone();
  if (last_sample_.defined()) st["last_sample"] = last_sample_.cpu().clone();
  return st;
}

void FlowSampler::load_state_dict(const std::map<std::string, at::Tensor>& st) {
  auto need = [&](const char* k) -> const at::Tensor& {
    auto it = st.find(k);
    if (it == st.end()) throw Error(ErrorCode::kBadRequest, std::string("sampler state: missing '") + k + "'");
    return it->second;
  };
  const SolverKind kind = solver_from_code(need("kind").item<int64_t>());
  if (kind != kind_ || need("steps").item<int64_t>() != steps() || need("shift").item<double>() != shift_) {
    throw Error(ErrorCode::kBadRequest, "sampler state: solver, steps or shift differ from this sampler");
  }
  at::Tensor sig = need("sigmas").to(at::kFloat).contiguous();
  if (sig.numel() != static_cast<int64_t>(sched_.sigmas.size()) ||
      std::memcmp(sig.data_ptr<float>(), sched_.sigmas.data(), sched_.sigmas.size() * sizeof(float)) != 0) {
    throw Error(ErrorCode::kBadRequest, "sampler state: sigmas differ from this schedule");
  }
  step_ = need("step_index").item<int64_t>();
  lower_order_nums_ = static_cast<int>(need("lower_order_nums").item<int64_t>());
  this_order_ = static_cast<int>(need("this_order").item<int64_t>());
  if (step_ < 0 || step_ > steps()) throw Error(ErrorCode::kBadRequest, "sampler state: step_index out of range");
  auto opt = [&](const char* k) { auto it = st.find(k); return it == st.end() ? at::Tensor() : it->second.clone(); };
  prev_output_ = opt("prev_output");
  last_output_ = opt("last_output");
  last_sample_ = opt("last_sample");
}

}  // namespace wand::model
