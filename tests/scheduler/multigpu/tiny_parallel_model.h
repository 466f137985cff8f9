// A tiny t2v DiT with 12 heads (dim 192, head_dim 16), so that 1, 2, 3 and 4
// ranks divide the heads, with random weights written by the model maker.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <vector>

#include <ATen/ATen.h>

#include "model/dit.h"
#include "scheduler/multigpu/collective.h"

namespace wand::test {

constexpr int64_t kTinyTextDim = 32;

// Writes (once per process) and loads the model on `device` in fp32.
std::shared_ptr<model::WanDit> tiny_parallel_dit(at::Device device = at::kCPU);

// The model directory (release layout) of the same geometry with `layers` blocks in
// `dtype`, written once per process per (layers, dtype); removed at exit.
std::filesystem::path tiny_parallel_model_dir(int64_t layers, at::ScalarType dtype = at::kFloat);

// Runs fn(rank) on one thread per rank; rethrows the first failure.
void run_threads(int n, const std::function<void(int)>& fn);

}  // namespace wand::test
