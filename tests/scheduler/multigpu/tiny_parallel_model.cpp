#include "tests/scheduler/multigpu/tiny_parallel_model.h"

#include <cstdlib>
#include <map>
#include <utility>
#include <exception>
#include <mutex>
#include <thread>
#include <unistd.h>

#include "model/checkpoint.h"
#include "model/make_model/make_model.h"

namespace wand::test {

namespace fs = std::filesystem;

std::shared_ptr<model::WanDit> tiny_parallel_dit(at::Device device) {
  static std::mutex mu;
  static fs::path dir;
  std::lock_guard<std::mutex> lk(mu);
  if (dir.empty()) {
    dir = fs::temp_directory_path() / ("wand_multigpu_tiny_" + std::to_string(::getpid()));
    fs::remove_all(dir);
    model::WanConfig cfg = model::WanConfig::from_preset("tiny-t2v", kTinyTextDim);
    cfg.dim = 192;
    cfg.num_heads = 12;
    cfg.ffn_dim = 256;
    cfg.num_layers = 2;
    cfg.text_len = 16;
    model::make::write_dit_expert(dir, cfg, at::kFloat, /*seed=*/11, /*max_shard_bytes=*/0);
    std::atexit([] { fs::remove_all(dir); });
  }
  model::CheckpointDir ck(dir);
  return std::make_shared<model::WanDit>(model::WanDit::load(ck, model::RunDtype::kFloat32, device));
}

std::filesystem::path tiny_parallel_model_dir(int64_t layers, at::ScalarType dtype) {
  static std::mutex mu;
  static std::map<std::pair<int64_t, int>, fs::path> dirs;
  std::lock_guard<std::mutex> lk(mu);
  auto& dir = dirs[{layers, static_cast<int>(dtype)}];
  if (dir.empty()) {
    dir = fs::temp_directory_path() / ("wand_multigpu_tiny_" + std::to_string(::getpid()) + "_" +
                                       std::to_string(layers) + "_" + std::to_string(static_cast<int>(dtype)));
    fs::remove_all(dir);
    model::WanConfig cfg = model::WanConfig::from_preset("tiny-t2v", kTinyTextDim);
    cfg.dim = 192;
    cfg.num_heads = 12;
    cfg.ffn_dim = 256;
    cfg.num_layers = layers;
    cfg.text_len = 16;
    model::make::write_dit_expert(dir, cfg, dtype, /*seed=*/11, /*max_shard_bytes=*/0);
    static bool registered = false;
    if (!registered) {
      registered = true;
      std::atexit([] {
        std::lock_guard<std::mutex> l(mu);
        for (auto& [_, d] : dirs) fs::remove_all(d);
      });
    }
  }
  return dir;
}

void run_threads(int n, const std::function<void(int)>& fn) {
  std::vector<std::exception_ptr> errs(n);
  std::vector<std::thread> threads;
  for (int r = 0; r < n; ++r) {
    threads.emplace_back([&, r] {
      try {
        fn(r);
      } catch (...) {
        errs[r] = std::current_exception();
      }
    });
  }
  for (auto& t : threads) t.join();
  for (auto& e : errs) {
    if (e) std::rethrow_exception(e);
  }
}

}  // namespace wand::test
