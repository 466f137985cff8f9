#include "ctl/cli.h"

#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <fcntl.h>
#include <unistd.h>

#include "common/error.h"
#include "ctl/client.h"
#include "ctl/exit_codes.h"
#include "ctl/output.h"

namespace wand::ctl {

using nlohmann::json;

namespace {

constexpr const char* kUsage = R"(usage: wanctl [--socket PATH] [--json] COMMAND [ARGS]

Commands:
  generate  --model NAME --prompt TEXT --size WxH --frames N --steps N --seed N -o FILE
            [--negative TEXT] [--image FILE] [--task t2v|i2v|ti2v] [--sampler unipc|dpm++]
            [--guide-scale X[,Y]] [--shift X] [--priority N] [--no-progress]
            submit, follow the job (progress bar on a terminal), write the video to FILE
  submit    (same options as generate, without -o)   print the job id
  ls                       list your jobs (all jobs for admins)
  status ID                show one job
  watch ID                 follow a job's events until it ends
  cancel ID                cancel a queued or running job
  fetch ID -o FILE         write a finished job's video to FILE
  tiers                    memory tiers (budgets / usage)
  plan (generate options)  the placement plan the daemon would use
  models                   the models this daemon serves
  shutdown                 stop the daemon (admins)

Options:
  --socket PATH   the daemon's socket (default: $WAND_SOCKET or /run/wand/wand.sock)
  --wait SECONDS  keep trying to connect while wand starts (scripts), default 0
  --json          machine-readable output (one JSON object; watch prints one per line)

Exit codes:
  0 ok    1 job failed (or daemon error)    2 usage / request rejected
  3 daemon not running or socket not accessible    4 no such job / permission denied
  5 job cancelled    6 no plan (wanctl plan: the job fits no card as configured)
)";

struct Args {
  std::string command;
  std::vector<std::string> positional;
  std::map<std::string, std::vector<std::string>> opts;
  bool json = false;
  bool no_progress = false;
  std::string socket;

  bool has(const std::string& k) const { return opts.count(k) != 0; }
  std::string get(const std::string& k, const std::string& def = "") const {
    auto it = opts.find(k);
    return it == opts.end() ? def : it->second.back();
  }
};

class UsageError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

const std::vector<std::string> kValueOptions = {
    "--socket", "--wait", "--model", "--prompt", "--negative", "--image", "--size", "--frames", "--steps",
    "--seed", "--guide-scale", "--shift", "--sampler", "--priority", "--task", "-o", "--output"};

Args parse(int argc, char** argv) {
  Args a;
  const char* env = std::getenv("WAND_SOCKET");
  a.socket = env && *env ? env : "/run/wand/wand.sock";
  for (int i = 1; i < argc; ++i) {
    std::string s = argv[i];
    if (s == "--json") {
      a.json = true;
    } else if (s == "--no-progress") {
      a.no_progress = true;
    } else if (s == "--help" || s == "-h") {
      a.command = "help";
    } else if (std::find(kValueOptions.begin(), kValueOptions.end(), s) != kValueOptions.end()) {
      if (i + 1 >= argc) throw UsageError(s + " needs a value");
      std::string key = s == "--output" ? "-o" : s;
      a.opts[key].push_back(argv[++i]);
    } else if (s.size() > 2 && s.rfind("--", 0) == 0 && s.find('=') != std::string::npos) {
      std::string key = s.substr(0, s.find('='));
      if (std::find(kValueOptions.begin(), kValueOptions.end(), key) == kValueOptions.end()) {
        throw UsageError("unknown option " + key);
      }
      a.opts[key == "--output" ? "-o" : key].push_back(s.substr(s.find('=') + 1));
    } else if (!s.empty() && s[0] == '-') {
      throw UsageError("unknown option " + s);
    } else if (a.command.empty()) {
      a.command = s;
    } else {
      a.positional.push_back(s);
    }
  }
  if (a.has("--socket")) a.socket = a.get("--socket");
  return a;
}

long long parse_int(const Args& a, const std::string& key, long long lo, long long hi) {
  std::string v = a.get(key);
  char* end = nullptr;
  errno = 0;
  long long x = std::strtoll(v.c_str(), &end, 10);
  if (v.empty() || *end || errno || x < lo || x > hi) {
    throw UsageError(key + ": '" + v + "' is not an integer in [" + std::to_string(lo) + ", " +
                     std::to_string(hi) + "]");
  }
  return x;
}

double parse_double(const std::string& key, const std::string& v) {
  char* end = nullptr;
  double x = std::strtod(v.c_str(), &end);
  if (v.empty() || *end) throw UsageError(key + ": '" + v + "' is not a number");
  return x;
}

std::vector<std::uint8_t> read_client_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw UsageError("cannot read " + path + ": " + std::strerror(errno));
  return std::vector<std::uint8_t>(std::istreambuf_iterator<char>(in), {});
}

proto::JobParams job_params(const Args& a) {
  for (const char* k : {"--model", "--size", "--frames", "--steps"}) {
    if (!a.has(k)) throw UsageError(std::string("missing ") + k);
  }
  proto::JobParams p;
  p.model = a.get("--model");
  p.prompt = a.get("--prompt");
  p.negative = a.get("--negative");
  std::string size = a.get("--size");
  auto x = size.find_first_of("xX*");
  if (x == std::string::npos) throw UsageError("--size: expected WxH, got '" + size + "'");
  Args tmp;
  tmp.opts["w"] = {size.substr(0, x)};
  tmp.opts["h"] = {size.substr(x + 1)};
  p.width = static_cast<int>(parse_int(tmp, "w", 1, 1 << 16));
  p.height = static_cast<int>(parse_int(tmp, "h", 1, 1 << 16));
  p.frames = static_cast<int>(parse_int(a, "--frames", 1, 1 << 20));
  p.steps = static_cast<int>(parse_int(a, "--steps", 1, 1 << 20));
  if (a.has("--seed")) {
    std::string v = a.get("--seed");
    char* end = nullptr;
    errno = 0;
    unsigned long long s = std::strtoull(v.c_str(), &end, 10);
    if (v.empty() || *end || errno || v[0] == '-') throw UsageError("--seed: '" + v + "' is not a non-negative integer");
    p.seed = s;
  }
  if (a.has("--image")) {
    p.image = read_client_file(a.get("--image"));  // read with the user's rights
    // Issue 15: base64 in one frame; with the daemon's default max_message_bytes (8 MiB)
    // an image of more than 6 MiB cannot travel (the daemon would close the connection).
    constexpr std::size_t kMaxImage = 6u << 20;
    if (p.image.size() > kMaxImage) {
      throw UsageError("--image " + a.get("--image") + " is " + std::to_string(p.image.size()) +
                       " bytes; the limit is " + std::to_string(kMaxImage) +
                       " bytes (6 MiB: it travels base64 in one frame of at most 8 MiB)");
    }
  }
  p.task = a.has("--task") ? a.get("--task") : (p.image.empty() ? "t2v" : "i2v");
  if (a.has("--sampler")) p.sampler = a.get("--sampler");
  if (a.has("--priority")) p.priority = static_cast<int>(parse_int(a, "--priority", -1000, 1000));
  if (a.has("--shift")) p.shift = parse_double("--shift", a.get("--shift"));
  for (const auto& g : a.opts.count("--guide-scale") ? a.opts.at("--guide-scale") : std::vector<std::string>{}) {
    std::size_t start = 0;
    while (start <= g.size()) {
      auto comma = g.find(',', start);
      std::string part = g.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
      p.guide_scale.push_back(parse_double("--guide-scale", part));
      if (comma == std::string::npos) break;
      start = comma + 1;
    }
  }
  return p;
}

std::string need_id(const Args& a) {
  if (a.positional.size() != 1) throw UsageError(a.command + " needs exactly one job id");
  return a.positional[0];
}

// An ErrorReply ends the command: message on stderr (or JSON), mapped exit code.
int fail(const Args& a, const proto::ErrorReply& e) {
  if (a.json) {
    std::printf("%s\n", proto::response_to_json(e).dump().c_str());
  } else {
    std::fprintf(stderr, "wanctl: %s: %s\n", e.code.c_str(), e.message.c_str());
  }
  return exit_code_for_error(e.code);
}

template <class T>
const T* as(const proto::Response& r) {
  return std::get_if<T>(&r);
}

[[noreturn]] void unexpected(const proto::Response& r) {
  throw ClientError(kExitNoDaemon, std::string("unexpected response '") + proto::response_type(r) + "'");
}

int exit_for_state(const std::string& state) {
  if (state == "failed") return kExitJobFailed;
  if (state == "cancelled") return kExitCancelled;
  return kExitOk;
}

// Writes a finished job's video into fd (opened by wanctl with the user's rights).
int fetch_into(Client& c, const Args& a, const std::string& id, int fd, const std::string& path,
               proto::FetchEnd* end_out) {
  c.send(proto::Fetch{id});
  for (;;) {
    proto::Response r = c.receive();
    if (auto* e = as<proto::ErrorReply>(r)) return fail(a, *e);
    if (auto* ch = as<proto::FetchChunk>(r)) {
      std::size_t off = 0;
      while (off < ch->data.size()) {
        ssize_t n = ::pwrite(fd, ch->data.data() + off, ch->data.size() - off,
                             static_cast<off_t>(ch->offset + off));
        if (n < 0) {
          if (errno == EINTR) continue;
          std::fprintf(stderr, "wanctl: write %s: %s\n", path.c_str(), std::strerror(errno));
          return kExitJobFailed;
        }
        off += static_cast<std::size_t>(n);
      }
      continue;
    }
    if (auto* end = as<proto::FetchEnd>(r)) {
      if (::ftruncate(fd, static_cast<off_t>(end->bytes)) != 0 || ::fsync(fd) != 0) {
        std::fprintf(stderr, "wanctl: finish %s: %s\n", path.c_str(), std::strerror(errno));
        return kExitJobFailed;
      }
      if (end_out) *end_out = *end;
      return kExitOk;
    }
    unexpected(r);
  }
}

// Opens (or creates) the output with the user's own rights, without truncating:
// an existing file is only replaced once the video has arrived (fetch_into
// truncates to the final size). *created tells whether to remove it on failure.
int open_output(const std::string& path, bool* created) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  *created = fd >= 0;
  if (fd < 0 && errno == EEXIST) fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) throw UsageError("cannot write " + path + ": " + std::strerror(errno));
  return fd;
}

// Reconnects after the daemon went away (a restart: jobs are durable), for up
// to 60 s. Returns false when it does not come back.
bool reconnect(Client& c) {
  const std::string path = c.path();
  for (int i = 0; i < 120; ++i) {
    try {
      c = Client::connect(path);
      return true;
    } catch (const ClientError&) {
      ::usleep(500 * 1000);
    }
  }
  return false;
}

// Follows a job until it is terminal; returns its last JobInfo. Survives a
// daemon restart: it reconnects and watches again.
proto::JobInfo follow(Client& c, const Args& a, const std::string& id, bool progress, bool print_events) {
  c.send(proto::Watch{id});
  proto::JobInfo last;
  for (;;) {
    proto::Response r;
    try {
      r = c.receive();
    } catch (const ClientError& e) {
      if (e.exit_code() != kExitNoDaemon) throw;
      if (!a.json) std::fprintf(stderr, "\nwanctl: lost wand (%s); reconnecting\n", e.what());
      if (!reconnect(c)) throw;
      c.send(proto::Watch{id});
      continue;
    }
    if (auto* e = as<proto::ErrorReply>(r)) {
      throw ClientError(exit_code_for_error(e->code), e->code + ": " + e->message);
    }
    auto* ev = as<proto::JobEvent>(r);
    if (!ev) unexpected(r);
    last = ev->job;
    if (print_events) {
      if (a.json) {
        std::printf("%s\n", proto::response_to_json(*ev).dump().c_str());
      } else {
        std::printf("%s\n", event_line(*ev).c_str());
      }
      std::fflush(stdout);
    }
    if (progress) draw_progress(stderr, last);
    if (last.state == "done" || last.state == "failed" || last.state == "cancelled") break;
  }
  if (progress) std::fputc('\n', stderr);
  return last;
}

int cmd_submit_like(Client& c, const Args& a, bool generate) {
  int out_fd = -1;
  std::string out_path;
  if (generate) {
    if (!a.has("-o")) throw UsageError("generate needs -o FILE");
    out_path = a.get("-o");
  }
  proto::JobParams p = job_params(a);
  bool created = false;
  if (generate) out_fd = open_output(out_path, &created);  // ours, with our rights, before submitting
  struct Closer {
    int fd;
    ~Closer() {
      if (fd >= 0) ::close(fd);
    }
  } closer{out_fd};
  proto::Response r = c.call(proto::Submit{p});
  if (auto* e = as<proto::ErrorReply>(r)) {
    if (generate && created) ::unlink(out_path.c_str());
    return fail(a, *e);
  }
  auto* s = as<proto::Submitted>(r);
  if (!s) unexpected(r);
  if (!generate) {
    if (a.json) {
      std::printf("%s\n", json{{"id", s->id}}.dump().c_str());
    } else {
      std::printf("%s\n", s->id.c_str());
    }
    return kExitOk;
  }
  bool progress = !a.json && !a.no_progress && ::isatty(STDERR_FILENO);
  if (!a.json && !progress) std::fprintf(stderr, "submitted %s\n", s->id.c_str());
  proto::JobInfo last = follow(c, a, s->id, progress, false);
  int rc = exit_for_state(last.state);
  if (rc != kExitOk) {
    if (created) ::unlink(out_path.c_str());
    if (a.json) {
      std::printf("%s\n", json(last).dump().c_str());
    } else {
      std::fprintf(stderr, "wanctl: job %s %s%s\n", last.id.c_str(), last.state.c_str(),
                   last.error.empty() ? "" : (": " + last.error).c_str());
    }
    return rc;
  }
  proto::FetchEnd end;
  rc = fetch_into(c, a, s->id, out_fd, out_path, &end);
  if (rc != kExitOk) {
    if (created) ::unlink(out_path.c_str());
    return rc;
  }
  if (a.json) {
    json j = last;
    j["output"] = out_path;
    j["output_bytes"] = end.bytes;
    std::printf("%s\n", j.dump().c_str());
  } else {
    std::printf("%s: %s written (%s, %s)\n", last.id.c_str(), out_path.c_str(), end.format.c_str(),
                format_bytes(end.bytes).c_str());
  }
  return kExitOk;
}

int run(const Args& a) {
  if (a.command.empty() || a.command == "help") {
    std::fputs(kUsage, a.command.empty() ? stderr : stdout);
    return a.command.empty() ? kExitUsage : kExitOk;
  }
  static const char* kCommands[] = {"generate", "submit", "ls", "list", "status", "watch", "cancel",
                                    "fetch", "tiers", "plan", "models", "shutdown"};
  bool known = false;
  for (const char* k : kCommands) known = known || a.command == k;
  if (!known) throw UsageError("unknown command '" + a.command + "'");
  if (a.command == "fetch" && !a.has("-o")) throw UsageError("fetch needs -o FILE");

  long long wait_s = a.has("--wait") ? parse_int(a, "--wait", 0, 3600) : 0;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(wait_s);
  std::optional<Client> conn;
  while (!conn) {
    try {
      conn.emplace(Client::connect(a.socket));
    } catch (const ClientError& e) {
      if (e.exit_code() != kExitNoDaemon || std::chrono::steady_clock::now() >= deadline) throw;
      ::usleep(100 * 1000);
    }
  }
  Client& c = *conn;
  const std::string& cmd = a.command;
  if (cmd == "generate" || cmd == "submit") return cmd_submit_like(c, a, cmd == "generate");
  if (cmd == "ls" || cmd == "list") {
    proto::Response r = c.call(proto::ListJobs{});
    if (auto* e = as<proto::ErrorReply>(r)) return fail(a, *e);
    auto* l = as<proto::JobList>(r);
    if (!l) unexpected(r);
    if (a.json) {
      std::printf("%s\n", proto::response_to_json(r).dump().c_str());
    } else {
      print_job_table(stdout, *l);
    }
    return kExitOk;
  }
  if (cmd == "status") {
    proto::Response r = c.call(proto::GetStatus{need_id(a)});
    if (auto* e = as<proto::ErrorReply>(r)) return fail(a, *e);
    auto* j = as<proto::JobInfo>(r);
    if (!j) unexpected(r);
    if (a.json) {
      std::printf("%s\n", json(*j).dump().c_str());
    } else {
      print_job(stdout, *j);
    }
    return kExitOk;
  }
  if (cmd == "watch") {
    proto::JobInfo last = follow(c, a, need_id(a), false, true);
    return exit_for_state(last.state);
  }
  if (cmd == "cancel") {
    proto::Response r = c.call(proto::Cancel{need_id(a)});
    if (auto* e = as<proto::ErrorReply>(r)) return fail(a, *e);
    auto* x = as<proto::CancelResult>(r);
    if (!x) unexpected(r);
    if (a.json) {
      std::printf("%s\n", proto::response_to_json(r).dump().c_str());
    } else if (x->pending) {
      std::printf("%s: cancelling (stops at the next block boundary)\n", x->id.c_str());
    } else {
      std::printf("%s: %s\n", x->id.c_str(), x->state.c_str());
    }
    return kExitOk;
  }
  if (cmd == "fetch") {
    std::string id = need_id(a);
    std::string path = a.get("-o");
    bool created = false;
    int fd = open_output(path, &created);
    proto::FetchEnd end;
    int rc = fetch_into(c, a, id, fd, path, &end);
    ::close(fd);
    if (rc != kExitOk) {
      if (created) ::unlink(path.c_str());
      return rc;
    }
    if (a.json) {
      std::printf("%s\n", json{{"id", id}, {"output", path}, {"bytes", end.bytes}, {"format", end.format}}.dump().c_str());
    } else {
      std::printf("%s: %s written (%s, %s)\n", id.c_str(), path.c_str(), end.format.c_str(),
                  format_bytes(end.bytes).c_str());
    }
    return kExitOk;
  }
  if (cmd == "tiers" || cmd == "models" || cmd == "plan" || cmd == "shutdown") {
    proto::Request req;
    if (cmd == "tiers") req = proto::GetTiers{};
    if (cmd == "models") req = proto::ListModels{};
    if (cmd == "plan") req = proto::GetPlan{job_params(a)};
    if (cmd == "shutdown") req = proto::Shutdown{};
    proto::Response r = c.call(req);
    if (auto* e = as<proto::ErrorReply>(r)) return fail(a, *e);
    if (a.json) {
      std::printf("%s\n", proto::response_to_json(r).dump().c_str());
    } else if (auto* t = as<proto::TiersReport>(r)) {
      print_tiers(stdout, *t);
    } else if (auto* m = as<proto::ModelList>(r)) {
      print_models(stdout, *m);
    } else if (auto* p = as<proto::PlanReport>(r)) {
      print_plan(stdout, *p);
    } else if (as<proto::ShutdownAck>(r)) {
      std::printf("wand is shutting down\n");
    } else {
      unexpected(r);
    }
    if (auto* p = as<proto::PlanReport>(r)) return plan_exit_code(*p);  // kExitNoPlan when nothing fits
    return kExitOk;
  }
  throw UsageError("unknown command '" + cmd + "'");
}

}  // namespace

int run_wanctl(int argc, char** argv) {
  std::signal(SIGPIPE, SIG_IGN);  // a closed socket is an error to report, not a silent death (exit 141)
  Args a;
  try {
    a = parse(argc, argv);
    return run(a);
  } catch (const UsageError& e) {
    std::fprintf(stderr, "wanctl: %s (see wanctl --help)\n", e.what());
    return kExitUsage;
  } catch (const ClientError& e) {
    if (a.json) {
      std::printf("%s\n", json{{"type", "error"}, {"code", "client"}, {"message", e.what()}}.dump().c_str());
    }
    std::fprintf(stderr, "wanctl: %s\n", e.what());
    return e.exit_code();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "wanctl: %s\n", e.what());
    return kExitJobFailed;
  }
}

}  // namespace wand::ctl
