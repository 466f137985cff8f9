// 100 concurrent clients polling status while a job runs: no errors; p50/p99
// status latency printed (and recorded as test properties).
#include <algorithm>
#include <atomic>
#include <chrono>
#include <thread>

#include <gtest/gtest.h>

#include "tests/daemon/harness.h"

namespace wand::test {
namespace {

using nlohmann::json;

TEST(Concurrency, HundredClientsPollStatusWhileAJobRuns) {
  constexpr int kClients = 100;
  constexpr int kPolls = 30;
  DaemonFixture d(10);
  d.start();
  std::string id;
  {
    RawClient c(d.socket());
    c.hello();
    id = c.call({{"type", "submit"}, {"job", fake_job(9, 200)}})["id"];
    c.send_json({{"type", "watch"}, {"job", id}});  // start polling once it runs
    for (;;) {
      auto ev = c.receive();
      ASSERT_TRUE(ev);
      if ((*ev)["job"]["state"] == "running") break;
    }
  }
  std::vector<std::vector<double>> lat(kClients);
  std::atomic<int> errors{0};
  std::atomic<int> running_seen{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < kClients; ++i) {
    threads.emplace_back([&, i] {
      RawClient c(d.socket());
      if (c.hello()["type"] != "hello") {
        ++errors;
        return;
      }
      for (int k = 0; k < kPolls; ++k) {
        auto t0 = std::chrono::steady_clock::now();
        json r = c.call({{"type", "status"}, {"job", id}});
        auto t1 = std::chrono::steady_clock::now();
        if (r["type"] != "job" || r["id"] != id) {
          ++errors;
          continue;
        }
        if (r["state"] == "running") ++running_seen;
        lat[i].push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
      }
    });
  }
  for (auto& t : threads) t.join();
  std::vector<double> all;
  for (auto& v : lat) all.insert(all.end(), v.begin(), v.end());
  ASSERT_EQ(errors.load(), 0);
  ASSERT_EQ(all.size(), static_cast<std::size_t>(kClients * kPolls));
  EXPECT_GT(running_seen.load(), 0) << "the job should be running while clients poll";
  std::sort(all.begin(), all.end());
  double p50 = all[all.size() / 2];
  double p99 = all[static_cast<std::size_t>(all.size() * 0.99)];
  std::printf("status latency over %zu requests from %d clients: p50 %.3f ms, p99 %.3f ms, max %.3f ms\n",
              all.size(), kClients, p50, p99, all.back());
  RecordProperty("status_p50_ms", std::to_string(p50));
  RecordProperty("status_p99_ms", std::to_string(p99));
  // The job kept making progress meanwhile.
  RawClient c(d.socket());
  c.hello();
  EXPECT_GT(c.call({{"type", "status"}, {"job", id}})["step"].get<int>(), 0);
  c.call({{"type", "cancel"}, {"job", id}});
  d.stop();
}

}  // namespace
}  // namespace wand::test
