// Test harness for the daemon integration tests: starts the built `wand`
// executable on a temporary socket and state directory, waits for its sd_notify
// READY=1 (a NOTIFY_SOCKET the test owns), runs the built `wanctl`, and speaks the
// protocol raw for malformed-input tests.
//
//   DaemonFixture d;                       // temp dir with a fake model "fake"
//   d.start();                             // wand --socket ... --state-dir ... --model fake=...
//   CmdResult r = d.wanctl({"ls", "--json"});
//   RawClient c(d.socket()); c.hello(); nlohmann::json j = c.call({{"type","list"}});
//   d.kill9(); d.start();                  // crash and restart
#pragma once

#include <functional>

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <sys/types.h>

namespace wand::test {

struct CmdResult {
  int exit_code = -1;
  std::string out;
  std::string err;
  nlohmann::json json() const;  // stdout parsed (last line); fails the test if not JSON
};

// Runs argv[0] with argv, capturing stdout and stderr.
CmdResult run_command(const std::vector<std::string>& argv);

class DaemonFixture {
 public:
  // step_ms: the fake model's time per step.
  explicit DaemonFixture(int step_ms = 10);
  ~DaemonFixture();

  // Starts wand and waits for READY=1 (fails the test after 20 s).
  void start(const std::vector<std::string>& extra_args = {});
  // Starts wand with a listening socket it inherits (systemd socket activation:
  // LISTEN_FDS=1, LISTEN_PID, the socket as fd 3) and no --socket flag.
  void start_socket_activated(int listen_fd, const std::vector<std::string>& extra_args = {});
  // SIGHUP, then waits for the READY=1 wand sends once the reload is done.
  void reload();
  void stop();   // SIGTERM and wait; the exit status must be 0
  void kill9();  // SIGKILL and wait
  bool running() const { return pid_ > 0; }
  pid_t pid() const { return pid_; }

  CmdResult wanctl(std::vector<std::string> args) const;
  const std::filesystem::path& dir() const { return dir_; }
  std::string socket() const { return (dir_ / "run" / "wand.sock").string(); }
  std::filesystem::path state_dir() const { return dir_ / "state"; }
  std::string log() const;  // the daemon's stderr so far
  // Every sd_notify datagram received so far ("READY=1\nSTATUS=...").
  std::vector<std::string> notifications() const;

  // Writes another fake model dir and returns it.
  std::filesystem::path make_fake_model(const std::string& name, int step_ms) const;

 private:
  std::filesystem::path dir_;
  void launch(std::vector<std::string> argv, int listen_fd);
  void wait_ready(int ready_before);
  int ready_count() const;

  pid_t pid_ = -1;
  // The NOTIFY_SOCKET wand reports to, drained by notify_thread_ (an undrained
  // datagram queue would block wand's sd_notify calls).
  int notify_fd_ = -1;
  std::thread notify_thread_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  int ready_count_ = 0;                    // guarded by mu_
  std::vector<std::string> notifications_;  // guarded by mu_
  bool stop_notify_ = false;               // guarded by mu_
};

// A raw protocol client (blocking): frames out, frames in.
class RawClient {
 public:
  explicit RawClient(const std::string& socket_path);
  ~RawClient();
  void send_bytes(const std::string& bytes);
  void send_json(const nlohmann::json& j);
  // nullopt when the daemon closed the connection.
  std::optional<nlohmann::json> receive();
  nlohmann::json call(const nlohmann::json& j);
  nlohmann::json hello(int version = 1);
  void close_write();
  int fd() const { return fd_; }

 private:
  int fd_ = -1;
};

// A fresh job request for the fake model.
nlohmann::json fake_job(std::uint64_t seed, int steps = 8, int priority = 0);

// `wanctl fetch ID` into the fixture's dir; returns the file's bytes.
std::string fetch(DaemonFixture& d, const std::string& id);
// Follows a job's events (watch) until pred(job) holds or the job ends; returns that job.
nlohmann::json watch_until(DaemonFixture& d, const std::string& id,
                           const std::function<bool(const nlohmann::json&)>& pred);

}  // namespace wand::test
