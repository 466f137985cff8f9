#include "scheduler/multigpu/nccl_collective.h"

#include <cuda_runtime.h>
#include <nccl.h>

#include "common/error.h"
#include "common/log.h"

namespace wand::sched {

namespace {

#define WAND_NCCL_CHECK(expr)                                                                       \
  do {                                                                                              \
    ncclResult_t wand_nccl_res_ = (expr);                                                           \
    if (wand_nccl_res_ != ncclSuccess) {                                                            \
      throw Error(ErrorCode::kCuda, std::string("nccl error: ") + #expr + " failed: " +             \
                                        ncclGetErrorString(wand_nccl_res_) + " at " + __FILE__ + ":" + \
                                        std::to_string(__LINE__));                                  \
    }                                                                                               \
  } while (0)

#define WAND_NCCL_CUDA_CHECK(expr)                                                                  \
  do {                                                                                              \
    cudaError_t wand_cuda_err_ = (expr);                                                            \
    if (wand_cuda_err_ != cudaSuccess) {                                                            \
      (void)cudaGetLastError();                                                                     \
      throw Error(ErrorCode::kCuda, std::string("cuda error: ") + #expr + " failed: " +             \
                                        cudaGetErrorString(wand_cuda_err_) + " at " + __FILE__ + ":" + \
                                        std::to_string(__LINE__));                                  \
    }                                                                                               \
  } while (0)

ncclDataType_t nccl_type(at::ScalarType t) {
  switch (t) {
    case at::kFloat: return ncclFloat32;
    case at::kHalf: return ncclFloat16;
    case at::kBFloat16: return ncclBfloat16;
    case at::kDouble: return ncclFloat64;
    case at::kLong: return ncclInt64;
    case at::kInt: return ncclInt32;
    case at::kChar: return ncclInt8;
    case at::kByte:
    case at::kBool: return ncclUint8;
    default:
      throw Error(ErrorCode::kBadRequest, std::string("nccl collective: unsupported dtype ") + c10::toString(t));
  }
}

// NCCL runs on the legacy default stream: Note [NCCL stream].
cudaStream_t nccl_stream() { return cudaStreamLegacy; }

}  // namespace

struct NcclCollective::Comm {
  ncclComm_t comm = nullptr;
  float* scratch = nullptr;  // one device float for barrier()
  ~Comm() {
    if (scratch != nullptr) cudaFree(scratch);
    if (comm != nullptr) ncclCommDestroy(comm);
  }
};

std::vector<std::unique_ptr<Collective>> NcclCollective::create_group(const std::vector<int>& devices) {
  if (devices.empty()) throw Error(ErrorCode::kBadRequest, "nccl collective: empty device list");
  int count = 0;
  WAND_NCCL_CUDA_CHECK(cudaGetDeviceCount(&count));
  for (size_t i = 0; i < devices.size(); ++i) {
    if (devices[i] < 0 || devices[i] >= count) {
      throw Error(ErrorCode::kBadRequest, "nccl collective: device " + std::to_string(devices[i]) +
                                              " does not exist (" + std::to_string(count) + " visible)");
    }
    for (size_t j = 0; j < i; ++j) {
      if (devices[j] == devices[i]) {
        throw Error(ErrorCode::kBadRequest, "nccl collective: device " + std::to_string(devices[i]) + " listed twice");
      }
    }
  }
  const int n = static_cast<int>(devices.size());
  std::vector<ncclComm_t> comms(n, nullptr);
  WAND_NCCL_CHECK(ncclCommInitAll(comms.data(), n, devices.data()));
  std::vector<std::unique_ptr<Collective>> ranks;
  for (int r = 0; r < n; ++r) {
    auto c = std::make_unique<Comm>();
    c->comm = comms[r];
    WAND_NCCL_CUDA_CHECK(cudaSetDevice(devices[r]));
    WAND_NCCL_CUDA_CHECK(cudaMalloc(&c->scratch, sizeof(float)));
    ranks.push_back(std::unique_ptr<Collective>(new NcclCollective(std::move(c), r, n, devices[r])));
  }
  log::get("sched")->info("nccl group ranks={} version={}", n, NCCL_VERSION_CODE);
  return ranks;
}

NcclCollective::NcclCollective(std::unique_ptr<Comm> comm, int rank, int world, int device)
    : comm_(std::move(comm)), rank_(rank), world_(world), device_(device) {}

NcclCollective::~NcclCollective() = default;

std::string NcclCollective::describe() const {
  return "nccl rank=" + std::to_string(rank_) + "/" + std::to_string(world_) + " device=cuda:" +
         std::to_string(device_);
}

void NcclCollective::check_tensor(const at::Tensor& x, const char* op) const {
  if (!x.defined() || !x.is_cuda() || x.device().index() != device_) {
    throw Error(ErrorCode::kBadRequest, std::string("nccl collective: ") + op + " needs a tensor on cuda:" +
                                            std::to_string(device_) + " (" + describe() + ")");
  }
}

at::Tensor NcclCollective::all_to_all(const at::Tensor& x, int64_t split_dim, int64_t concat_dim) {
  check_tensor(x, "all_to_all");
  const int64_t sd = split_dim < 0 ? split_dim + x.dim() : split_dim;
  WAND_ASSERT(sd >= 0 && sd < x.dim(), "nccl collective: all_to_all split dim out of range");
  if (x.size(sd) % world_ != 0) {
    throw Error(ErrorCode::kBadRequest, "nccl collective: all_to_all split dim " + std::to_string(sd) + " of size " +
                                            std::to_string(x.size(sd)) + " does not divide by world size " +
                                            std::to_string(world_));
  }
  WAND_NCCL_CUDA_CHECK(cudaSetDevice(device_));
  std::vector<at::Tensor> out, in;
  for (const at::Tensor& c : x.split(x.size(sd) / world_, sd)) {
    out.push_back(c.contiguous());
    in.push_back(at::empty(c.sizes(), x.options()));
  }
  const ncclDataType_t dt = nccl_type(x.scalar_type());
  WAND_NCCL_CHECK(ncclGroupStart());
  for (int p = 0; p < world_; ++p) {
    const size_t n = static_cast<size_t>(out[p].numel());
    WAND_NCCL_CHECK(ncclSend(out[p].data_ptr(), n, dt, p, comm_->comm, nccl_stream()));
    WAND_NCCL_CHECK(ncclRecv(in[p].data_ptr(), n, dt, p, comm_->comm, nccl_stream()));
  }
  WAND_NCCL_CHECK(ncclGroupEnd());
  return at::cat(in, concat_dim);
}

at::Tensor NcclCollective::all_gather(const at::Tensor& x, int64_t dim) {
  check_tensor(x, "all_gather");
  WAND_NCCL_CUDA_CHECK(cudaSetDevice(device_));
  at::Tensor src = x.contiguous();
  std::vector<int64_t> shape{world_};
  for (int64_t s : src.sizes()) shape.push_back(s);
  at::Tensor buf = at::empty(shape, src.options());  // [W, ...x]
  WAND_NCCL_CHECK(ncclAllGather(src.data_ptr(), buf.data_ptr(), static_cast<size_t>(src.numel()),
                                nccl_type(src.scalar_type()), comm_->comm, nccl_stream()));
  return at::cat(buf.unbind(0), dim);
}

void NcclCollective::send(const at::Tensor& x, int peer) {
  check_tensor(x, "send");
  if (peer < 0 || peer >= world_ || peer == rank_) {
    throw Error(ErrorCode::kBadRequest, "nccl collective: bad send peer " + std::to_string(peer) + " (" + describe() + ")");
  }
  WAND_NCCL_CUDA_CHECK(cudaSetDevice(device_));
  at::Tensor src = x.contiguous();
  WAND_NCCL_CHECK(ncclSend(src.data_ptr(), static_cast<size_t>(src.numel()), nccl_type(src.scalar_type()), peer,
                           comm_->comm, nccl_stream()));
}

void NcclCollective::recv(at::Tensor& out, int peer) {
  check_tensor(out, "recv");
  if (peer < 0 || peer >= world_ || peer == rank_) {
    throw Error(ErrorCode::kBadRequest, "nccl collective: bad recv peer " + std::to_string(peer) + " (" + describe() + ")");
  }
  if (!out.is_contiguous()) throw Error(ErrorCode::kBadRequest, "nccl collective: recv buffer must be contiguous");
  WAND_NCCL_CUDA_CHECK(cudaSetDevice(device_));
  WAND_NCCL_CHECK(ncclRecv(out.data_ptr(), static_cast<size_t>(out.numel()), nccl_type(out.scalar_type()), peer,
                           comm_->comm, nccl_stream()));
}

void NcclCollective::barrier() {
  WAND_NCCL_CUDA_CHECK(cudaSetDevice(device_));
  WAND_NCCL_CHECK(ncclAllReduce(comm_->scratch, comm_->scratch, 1, ncclFloat32, ncclSum, comm_->comm, nccl_stream()));
  WAND_NCCL_CUDA_CHECK(cudaStreamSynchronize(nccl_stream()));
}

}  // namespace wand::sched
