// Clock: the time source of the eviction policies, injected so tests control it.
//
//   FakeClock clock;  LruPolicy lru(clock);  clock.advance(1);
//
// Threads: SteadyClock is thread-safe; FakeClock's now()/advance() are atomic.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>

namespace wand::memory {

class Clock {
 public:
  virtual ~Clock() = default;
  // Monotonic ticks (nanoseconds for SteadyClock, whatever the test says for FakeClock).
  virtual std::uint64_t now() const = 0;
};

class SteadyClock : public Clock {
 public:
  std::uint64_t now() const override {
    return static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                          std::chrono::steady_clock::now().time_since_epoch())
                                          .count());
  }
};

class FakeClock : public Clock {
 public:
  std::uint64_t now() const override { return t_.load(); }
  void advance(std::uint64_t ticks = 1) { t_ += ticks; }
  void set(std::uint64_t t) { t_ = t; }

 private:
  std::atomic<std::uint64_t> t_{0};
};

}  // namespace wand::memory
