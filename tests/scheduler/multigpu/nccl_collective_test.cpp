// NcclCollective with the GPUs of this machine (label multigpu;gpu): collectives
// with one rank per visible GPU, and Ulysses on one NCCL rank matching the
// single-device forward on CUDA. Skips without a GPU.
#include <gtest/gtest.h>

#include <cuda_runtime.h>

#include "common/error.h"
#include "scheduler/multigpu/nccl_collective.h"
#include "scheduler/multigpu/ulysses_dit.h"
#include "tests/scheduler/multigpu/tiny_parallel_model.h"

namespace {

using namespace wand;
using sched::Collective;
using sched::NcclCollective;

int visible_gpus() {
  int n = 0;
  if (!at::hasCUDA() || cudaGetDeviceCount(&n) != cudaSuccess) return 0;
  return n;
}

#define SKIP_WITHOUT_GPU()                                     \
  do {                                                         \
    if (visible_gpus() < 1) GTEST_SKIP() << "no CUDA GPU";     \
  } while (0)

TEST(NcclCollective, CollectivesOnEveryVisibleGpu) {
  SKIP_WITHOUT_GPU();
  const int W = visible_gpus();
  std::vector<int> devices;
  for (int d = 0; d < W; ++d) devices.push_back(d);
  auto g = NcclCollective::create_group(devices);
  std::vector<at::Tensor> a2a(W), gathered(W);
  auto rank_tensor = [&](int r) { return at::arange(12 * W, at::kFloat).reshape({2, 2 * W, 3}) + 1000.0 * r; };
  test::run_threads(W, [&](int r) {
    const at::Device dev(at::kCUDA, static_cast<c10::DeviceIndex>(r));
    at::Tensor x = rank_tensor(r).to(dev);
    a2a[r] = g[r]->all_to_all(x, 1, 2).cpu();
    gathered[r] = g[r]->all_gather(x.to(at::kBFloat16), 0).cpu();
    g[r]->barrier();
  });
  for (int r = 0; r < W; ++r) {
    std::vector<at::Tensor> parts, all;
    for (int src = 0; src < W; ++src) {
      parts.push_back(rank_tensor(src).split(2, 1)[r]);
      all.push_back(rank_tensor(src).to(at::kBFloat16));
    }
    EXPECT_TRUE(at::equal(a2a[r], at::cat(parts, 2))) << "all_to_all rank " << r;
    EXPECT_TRUE(at::equal(gathered[r], at::cat(all, 0))) << "all_gather rank " << r;
  }
  EXPECT_THROW(g[0]->all_gather(at::zeros({2}), 0), Error);  // CPU tensor: clear error
  EXPECT_THROW(NcclCollective::create_group({W}), Error);     // no such device
}

TEST(NcclCollective, UlyssesOneRankMatchesSingleDevice) {
  SKIP_WITHOUT_GPU();
  auto dit = test::tiny_parallel_dit(at::Device(at::kCUDA, 0));
  at::manual_seed(5);
  const at::Tensor x = at::randn({16, 5, 10, 2});
  const at::Tensor ctx = at::randn({7, test::kTinyTextDim});
  const at::Tensor t = at::full({1}, 937.0);
  const at::Tensor ref = dit->forward(x, t, ctx, 25).cpu();
  auto g = NcclCollective::create_group({0});
  sched::UlyssesDit u(*dit, *g[0]);
  const at::Tensor got = u.forward(x, t, ctx, 25).cpu();
  const double scale = ref.abs().max().item<double>();
  const double err = (got - ref).abs().max().item<double>();
  EXPECT_LE(err, 1e-5 * scale) << "max abs error " << err;
}

}  // namespace
