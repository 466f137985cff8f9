#include "tests/daemon/harness.h"

#include <cerrno>
#include <csignal>
#include <cstring>
#include <fstream>
#include <sstream>

#include <fcntl.h>
#include <poll.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include "proto/framing.h"

extern char** environ;

namespace wand::test {

namespace fs = std::filesystem;
using nlohmann::json;

json CmdResult::json() const {
  std::string last;
  std::istringstream in(out);
  for (std::string line; std::getline(in, line);) {
    if (!line.empty()) last = line;
  }
  auto j = nlohmann::json::parse(last, nullptr, false);
  EXPECT_FALSE(j.is_discarded()) << "not JSON: " << out << " / stderr: " << err;
  return j;
}

namespace {

std::string drain(int fd) {
  std::string s;
  char buf[4096];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    s.append(buf, n);
  }
  return s;
}

}  // namespace

CmdResult run_command(const std::vector<std::string>& argv) {
  int out[2], err[2];
  EXPECT_EQ(::pipe2(out, O_CLOEXEC), 0);
  EXPECT_EQ(::pipe2(err, O_CLOEXEC), 0);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, out[1], 1);
  posix_spawn_file_actions_adddup2(&fa, err[1], 2);
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = -1;
  int rc = posix_spawn(&pid, args[0], &fa, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  ::close(out[1]);
  ::close(err[1]);
  CmdResult r;
  if (rc != 0) {
    ADD_FAILURE() << "spawn " << argv[0] << ": " << std::strerror(rc);
    ::close(out[0]);
    ::close(err[0]);
    return r;
  }
  // stderr is small; read stdout fully first, then stderr (both pipes have 64 KiB buffers).
  r.out = drain(out[0]);
  r.err = drain(err[0]);
  ::close(out[0]);
  ::close(err[0]);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return r;
}

DaemonFixture::DaemonFixture(int step_ms) {
  std::string tmpl = (fs::temp_directory_path() / "wand-daemon-XXXXXX").string();
  dir_ = ::mkdtemp(tmpl.data());
  fs::create_directories(dir_ / "run");
  make_fake_model("fake", step_ms);
  notify_fd_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, (dir_ / "notify.sock").c_str(), sizeof addr.sun_path - 1);
  EXPECT_EQ(::bind(notify_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0) << std::strerror(errno);
  notify_thread_ = std::thread([this] {
    for (;;) {
      {
        std::lock_guard<std::mutex> lock(mu_);
        if (stop_notify_) return;
      }
      pollfd p{notify_fd_, POLLIN, 0};
      if (::poll(&p, 1, 100) <= 0) continue;
      char buf[4096];
      ssize_t got = ::recv(notify_fd_, buf, sizeof buf, 0);
      if (got <= 0) continue;
      std::string msg(buf, got);
      std::lock_guard<std::mutex> lock(mu_);
      notifications_.push_back(msg);
      if (msg.find("READY=1") != std::string::npos) ++ready_count_;
      cv_.notify_all();
    }
  });
}

DaemonFixture::~DaemonFixture() {
  if (pid_ > 0) kill9();
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_notify_ = true;
  }
  notify_thread_.join();
  ::close(notify_fd_);
  std::error_code ec;
  fs::remove_all(dir_, ec);
}

std::vector<std::string> DaemonFixture::notifications() const {
  std::lock_guard<std::mutex> lock(mu_);
  return notifications_;
}

int DaemonFixture::ready_count() const {
  std::lock_guard<std::mutex> lock(mu_);
  return ready_count_;
}

fs::path DaemonFixture::make_fake_model(const std::string& name, int step_ms) const {
  fs::path m = dir_ / "models" / name;
  fs::create_directories(m);
  std::ofstream(m / "wand-fake-model.json") << "{\"step_ms\": " << step_ms << ", \"blocks\": 4}";
  return m;
}

std::string DaemonFixture::log() const {
  std::ifstream in(dir_ / "wand.log");
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void DaemonFixture::start(const std::vector<std::string>& extra) {
  std::vector<std::string> argv = {WAND_EXE, "--socket", socket(), "--state-dir",
                                   state_dir().string(), "--model",
                                   "fake=" + (dir_ / "models" / "fake").string()};
  argv.insert(argv.end(), extra.begin(), extra.end());
  launch(argv, -1);
}

void DaemonFixture::start_socket_activated(int listen_fd, const std::vector<std::string>& extra) {
  std::vector<std::string> argv = {WAND_EXE, "--state-dir", state_dir().string(), "--model",
                                   "fake=" + (dir_ / "models" / "fake").string()};
  argv.insert(argv.end(), extra.begin(), extra.end());
  launch(argv, listen_fd);
}

void DaemonFixture::launch(std::vector<std::string> argv, int listen_fd) {
  ASSERT_LT(pid_, 0) << "already running";
  std::string log_path = (dir_ / "wand.log").string();
  std::string notify_env = "NOTIFY_SOCKET=" + (dir_ / "notify.sock").string();
  int before = ready_count();
  pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    int fd = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd >= 0) {
      ::dup2(fd, 2);
      ::dup2(fd, 1);
    }
    ::putenv(const_cast<char*>(notify_env.c_str()));
    if (listen_fd >= 0) {
      if (listen_fd == 3) {
        ::fcntl(3, F_SETFD, 0);  // dup2 onto itself would keep FD_CLOEXEC
      } else {
        ::dup2(listen_fd, 3);  // dup2 clears FD_CLOEXEC on the copy
      }
      ::setenv("LISTEN_FDS", "1", 1);
      ::setenv("LISTEN_PID", std::to_string(::getpid()).c_str(), 1);
    }
    std::vector<char*> args;
    for (auto& a : argv) args.push_back(a.data());
    args.push_back(nullptr);
    ::execv(args[0], args.data());
    ::_exit(127);
  }
  pid_ = pid;
  wait_ready(before);
}

void DaemonFixture::reload() {
  ASSERT_GT(pid_, 0);
  int before = ready_count();
  ::kill(pid_, SIGHUP);
  wait_ready(before);
}

void DaemonFixture::wait_ready(int before) {
  // READY=1 comes once the socket listens, and again after each reload.
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  std::unique_lock<std::mutex> lock(mu_);
  while (ready_count_ <= before) {
    ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "wand did not become ready; log:\n" << log();
    cv_.wait_for(lock, std::chrono::milliseconds(100));
    int status = 0;
    if (ready_count_ <= before && ::waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      FAIL() << "wand exited during start-up; log:\n" << log();
    }
  }
}

void DaemonFixture::stop() {
  ASSERT_GT(pid_, 0);
  ::kill(pid_, SIGTERM);
  int status = 0;
  ASSERT_EQ(::waitpid(pid_, &status, 0), pid_);
  pid_ = -1;
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "status " << status << "\n" << log();
}

void DaemonFixture::kill9() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGKILL);
  int status = 0;
  ::waitpid(pid_, &status, 0);
  pid_ = -1;
}

CmdResult DaemonFixture::wanctl(std::vector<std::string> args) const {
  args.insert(args.begin(), {WANCTL_EXE, "--socket", socket()});
  return run_command(args);
}

RawClient::RawClient(const std::string& path) {
  fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
  if (::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ADD_FAILURE() << "connect " << path << ": " << std::strerror(errno);
  }
  timeval tv{30, 0};  // a hung daemon fails the test instead of hanging it
  ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
}

RawClient::~RawClient() {
  if (fd_ >= 0) ::close(fd_);
}

void RawClient::send_bytes(const std::string& bytes) {
  std::size_t off = 0;
  while (off < bytes.size()) {
    ssize_t n = ::send(fd_, bytes.data() + off, bytes.size() - off, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;  // the daemon may close on us: that is what some tests expect
    off += n;
  }
}

void RawClient::send_json(const json& j) { send_bytes(proto::encode_frame(j.dump())); }

std::optional<json> RawClient::receive() {
  try {
    auto body = proto::read_frame(fd_, 64u << 20);
    if (!body) return std::nullopt;
    return json::parse(*body);
  } catch (const std::exception&) {
    return std::nullopt;  // reset or truncated: treated as closed
  }
}

json RawClient::call(const json& j) {
  send_json(j);
  auto r = receive();
  EXPECT_TRUE(r.has_value()) << "no answer to " << j.dump();
  return r.value_or(json());
}

json RawClient::hello(int version) {
  return call({{"type", "hello"}, {"version", version}, {"capabilities", json::array()}, {"agent", "test"}});
}

void RawClient::close_write() { ::shutdown(fd_, SHUT_WR); }

json fake_job(std::uint64_t seed, int steps, int priority) {
  return {{"model", "fake"}, {"prompt", "a red kite"}, {"width", 32}, {"height", 24},
          {"frames", 9},     {"steps", steps},         {"seed", seed}, {"priority", priority}};
}

std::string fetch(DaemonFixture& d, const std::string& id) {
  auto out = d.dir() / (id + ".out");
  CmdResult f = d.wanctl({"fetch", id, "-o", out.string()});
  EXPECT_EQ(f.exit_code, 0) << f.err;
  std::ifstream in(out, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

json watch_until(DaemonFixture& d, const std::string& id, const std::function<bool(const json&)>& pred) {
  RawClient w(d.socket());
  w.hello();
  w.send_json({{"type", "watch"}, {"job", id}});
  for (;;) {
    auto ev = w.receive();
    if (!ev) {
      ADD_FAILURE() << "watch stream ended";
      return {};
    }
    const json& job = (*ev)["job"];
    if (pred(job) || job["state"] == "done" || job["state"] == "failed" || job["state"] == "cancelled") {
      return job;
    }
  }
}

}  // namespace wand::test
