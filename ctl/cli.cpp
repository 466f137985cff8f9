#include "ctl/cli.h"

#include <algorithm>
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
#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include "common/error.h"
#include "ctl/client.h"
#include "ctl/exit_codes.h"
#include "ctl/output.h"
#include "proto/error_codes.h"
#include "proto/version.h"

namespace wand::ctl {

using nlohmann::json;

namespace {

constexpr const char* kUsage = R"(usage: wanctl [--socket PATH] [--json] [--wait SECONDS] COMMAND [ARGS]
       wanctl COMMAND --help | wanctl --version

Commands:
  generate  --model NAME --prompt TEXT --size WxH --frames N --steps N --seed N -o FILE
            [--negative TEXT] [--image FILE] [--task t2v|i2v|ti2v] [--sampler unipc|dpm++|euler]
            [--guide-scale X[,Y]] [--shift X] [--lora NAME[:S][@high|@low]]... [--priority N] [--no-progress]
            submit, follow the job (progress line on a terminal), write the video to FILE
  submit    (same options as generate, without -o)   print the job id
  ls                       list your jobs (all jobs for admins)
  status ID                show one job
  watch ID                 follow a job's events until it ends
  cancel ID                cancel a queued or running job
  fetch ID -o FILE         write a finished job's video to FILE (- : standard output)
  tiers                    memory tiers (budgets / usage)
  plan (generate options)  the placement plan the daemon would use
  models                   the models this daemon serves, with their tasks and sizes
  shutdown                 stop the daemon (admins)

Options:
  --socket PATH   the daemon's socket (default: $WAND_SOCKET or /run/wand/wand.sock)
  --wait SECONDS  keep trying to connect while wand starts (scripts), default 0
  --json          machine-readable output (one JSON object; watch prints one per line);
                  errors are {"type":"error","code":...,"message":...}, one code per cause

Exit codes:
  0 ok    1 job failed (or daemon error)    2 usage / request rejected
  3 daemon not running or socket not accessible    4 no such job / permission denied
  5 job cancelled    6 no plan (wanctl plan: the job fits no card as configured)
  130 interrupted (Ctrl-C; the job goes on)
  141 the reader of the output went away (`| head`): killed by SIGPIPE, silently, as cat
)";

constexpr const char* kJobOptions = R"(
Job options:
  --model NAME         a model from `wanctl models` (which lists its tasks and sizes)
  --prompt TEXT        what to generate;  --negative TEXT: what to avoid (default: the model's)
  --size WxH           width x height (also W*H); multiples of the model's size step. For
                       i2v-A14B and ti2v with an image, W x H is the area: the video follows
                       the image's aspect (`wanctl status` shows the real size)
  --frames N           4n + 1 frames (81 = 5 s at 16 fps)
  --steps N            denoising steps
  --seed N             the seed (same seed, same request: the same video)
  --image FILE         the input image (PNG, JPEG, BMP, WebP or binary PPM) of an
                       image-to-video model; read by wanctl with your rights
  --task T             t2v | i2v | ti2v (default: i2v with --image, else t2v)
  --sampler S          unipc (default) | dpm++ | euler (first order: few-step distilled models)
  --guide-scale X[,Y]  classifier-free guidance (one value, or low-noise,high-noise);
                       1: the conditional branch alone, one DiT forward a step
  --shift X            the sampler's shift (default: the model's)
  --lora NAME[:S][@high|@low]
                       apply a LoRA the daemon serves (`wanctl models` lists them) at
                       strength S (default 1) to both experts, or only the high- / low-noise
                       one; several allowed. Replaces the model's default of that name
                       (strength 0 switches a default off)
  --priority N         larger runs first (-1000..1000, default 0)
)";

struct CommandHelp {
  const char* name;
  const char* usage;
  const char* text;
  bool job_options;
};

const CommandHelp kCommands[] = {
    {"generate", "generate JOB-OPTIONS -o FILE [--no-progress]",
     "Submits a job, follows it and writes the video to FILE (-o - : standard output).\n"
     "On a terminal a progress line shows what the job does: loading, encoding,\n"
     "step k/n with s/step and ETA, switching expert, decoding, writing; with stderr not a\n"
     "terminal (a log, a pipe) one plain line per stage and step instead.\n"
     "Ctrl-C stops wanctl, not the job: it prints how to watch, fetch or cancel it (exit 130).\n"
     "If wand restarts meanwhile, the job is durable: wanctl reconnects and follows it again.\n",
     true},
    {"submit", "submit JOB-OPTIONS", "Submits a job and prints its id (--json: {\"id\": ...}).\n", true},
    {"ls", "ls", "Lists your jobs (every user's for admins). Also: list.\n", false},
    {"list", "list", "Lists your jobs (every user's for admins). Also: ls.\n", false},
    {"status", "status ID",
     "Shows one job: state and stage, steps, speed, the card or card group it ran on,\n"
     "and once done the video's real size and the result file.\n",
     false},
    {"watch", "watch ID", "Prints the job's events until it ends (--json: one object per line).\n", false},
    {"cancel", "cancel ID", "Cancels a queued job, or stops a running one at the next block boundary.\n", false},
    {"fetch", "fetch ID -o FILE", "Writes a finished job's video to FILE (-o - : standard output).\n", false},
    {"tiers", "tiers",
     "The memory tiers: capacity (configured: reserved when wand started), used, pinned,\n"
     "bytes moved and GB/s since the previous `tiers` (measured).\n",
     false},
    {"plan", "plan JOB-OPTIONS", "The placement plan the daemon would use for the job (no job is submitted).\n", true},
    {"models", "models", "The models this daemon serves: variant, tasks, size step and defaults.\n", false},
    {"shutdown", "shutdown", "Stops the daemon (admins). Queued and running jobs resume at the next start.\n", false},
};

const CommandHelp* find_command(const std::string& name) {
  for (const auto& c : kCommands) {
    if (name == c.name) return &c;
  }
  return nullptr;
}

void print_command_help(std::FILE* out, const CommandHelp& c) {
  std::fprintf(out, "usage: wanctl [--socket PATH] [--json] %s\n\n%s", c.usage, c.text);
  if (c.job_options) std::fputs(kJobOptions, out);
}

// Levenshtein distance, for "did you mean".
std::size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<std::size_t> row(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    std::size_t diag = row[0];
    row[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      const std::size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diag = up;
    }
  }
  return row[b.size()];
}

// "unknown command 'stauts' (did you mean 'status'?)": the closest command within two
// edits, or the one the word starts (a prefix of three or more letters).
std::string unknown_command(const std::string& word) {
  std::string best;
  std::size_t best_d = 3;
  for (const auto& c : kCommands) {
    const std::string name = c.name;
    std::size_t d = edit_distance(word, name);
    if (word.size() >= 3 && name.rfind(word, 0) == 0) d = 1;
    if (d < best_d) {
      best_d = d;
      best = name;
    }
  }
  std::string msg = "unknown command '" + word + "'";
  if (!best.empty()) msg += " (did you mean '" + best + "'?)";
  return msg;
}

// What the Ctrl-C handler (Note [Interrupting generate]) and end_by_closed_pipe need, prepared
// before they can run: they only call write/unlink/_exit (async-signal-safe).
struct InterruptNote {
  char message[768] = {0};
  std::size_t message_len = 0;
  char json[256] = {0};
  std::size_t json_len = 0;
  char unlink_path[4096] = {0};
};
InterruptNote g_interrupt;

// Note [Closed output pipe]: `wanctl fetch j-3 -o - | head -c 10`, `wanctl ls | head -1`: the
// reader went away, which is how a pipe says "enough", not a failure to report. wanctl then
// ends as cat or yes do: killed by SIGPIPE, silently (the shell shows status 141; with
// `set -o pipefail` the pipeline fails as it does with cat). SIGPIPE itself stays ignored for
// the rest of the run (a daemon that closes the socket is an error to report, exit 3, not a
// silent death), so each write to standard output or standard error checks for EPIPE and
// calls end_by_closed_pipe(); Go's runtime treats fds 1 and 2 the same way.
[[noreturn]] void end_by_closed_pipe() {
  // generate: the output file it created holds no video, or only part of one (as on Ctrl-C).
  if (g_interrupt.unlink_path[0]) ::unlink(g_interrupt.unlink_path);
  std::signal(SIGPIPE, SIG_DFL);
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGPIPE);
  ::sigprocmask(SIG_UNBLOCK, &set, nullptr);
  ::raise(SIGPIPE);
  ::_exit(128 + SIGPIPE);  // not reached
}

// Flushes f (stdout or stderr); a reader that went away ends wanctl (Note [Closed output pipe]).
// An earlier write may have failed already (the error flag stays, errno moved on): then the
// pipe itself says whether its reader is gone (POLLERR on the write end of a pipe without
// readers).
void flush_or_end(std::FILE* f) {
  errno = 0;
  if (std::fflush(f) != 0 && errno == EPIPE) end_by_closed_pipe();
  if (std::ferror(f)) {
    pollfd p{::fileno(f), POLLOUT, 0};
    if (::poll(&p, 1, 0) == 1 && (p.revents & POLLERR)) end_by_closed_pipe();
  }
}

struct Args {
  std::string command;
  std::vector<std::string> positional;
  std::map<std::string, std::vector<std::string>> opts;
  bool json = false;
  bool no_progress = false;
  bool help = false;     // --help / -h (with a command: that command's help)
  bool version = false;  // --version
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
    "--seed", "--guide-scale", "--shift", "--sampler", "--priority", "--task", "-o", "--output", "--lora"};

// "unknown option --promt (did you mean --prompt?)".
std::string unknown_option(const std::string& opt) {
  std::vector<std::string> all = kValueOptions;
  all.insert(all.end(), {"--json", "--no-progress", "--help", "--version"});
  std::string best;
  std::size_t best_d = 3;
  for (const auto& o : all) {
    const std::size_t d = edit_distance(opt, o);
    if (d < best_d) {
      best_d = d;
      best = o;
    }
  }
  return "unknown option " + opt + (best.empty() ? "" : " (did you mean " + best + "?)");
}

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
      a.help = true;
    } else if (s == "--version") {
      a.version = true;
    } else if (std::find(kValueOptions.begin(), kValueOptions.end(), s) != kValueOptions.end()) {
      if (i + 1 >= argc) throw UsageError(s + " needs a value");
      std::string key = s == "--output" ? "-o" : s;
      a.opts[key].push_back(argv[++i]);
    } else if (s.size() > 2 && s.rfind("--", 0) == 0 && s.find('=') != std::string::npos) {
      std::string key = s.substr(0, s.find('='));
      if (std::find(kValueOptions.begin(), kValueOptions.end(), key) == kValueOptions.end()) {
        throw UsageError(unknown_option(key));
      }
      a.opts[key == "--output" ? "-o" : key].push_back(s.substr(s.find('=') + 1));
    } else if (!s.empty() && s[0] == '-') {
      throw UsageError(unknown_option(s));
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
  if (a.has("--image")) p.image = read_client_file(a.get("--image"));  // read with the user's rights
  p.task = a.has("--task") ? a.get("--task") : (p.image.empty() ? "t2v" : "i2v");
  if (a.has("--sampler")) p.sampler = a.get("--sampler");
  if (a.has("--priority")) p.priority = static_cast<int>(parse_int(a, "--priority", -1000, 1000));
  if (a.has("--shift")) p.shift = parse_double("--shift", a.get("--shift"));
  for (const auto& l : a.opts.count("--lora") ? a.opts.at("--lora") : std::vector<std::string>{}) {
    try {
      p.loras.push_back(parse_lora_ref(l, "--lora"));
    } catch (const Error& e) {
      throw UsageError(e.what());
    }
  }
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

// Issue 15 item 9: a request travels in one frame, and the daemon closes a connection whose
// frame is larger than its max_message_bytes (8 MiB unless configured otherwise). The image
// is in the frame base64 (4/3 of its bytes), so an image of more than about 6 MiB cannot
// travel: say so, with the sizes, instead of sending 8 MiB that the daemon drops.
constexpr std::size_t kMaxRequestBytes = 8u << 20;  // the daemon's default max_message_bytes

void check_request_size(const Args& a, const proto::Request& r, const proto::JobParams& job) {
  const std::size_t bytes = proto::request_to_json(r).dump().size();
  if (bytes <= kMaxRequestBytes) return;
  const std::string total = "the request would be " + std::to_string(bytes) + " bytes, more than the " +
                            std::to_string(kMaxRequestBytes) + " (8 MiB) a request to wand may have";
  if (job.image.empty()) throw UsageError(total);
  throw UsageError("--image " + a.get("--image") + " is " + std::to_string(job.image.size()) + " bytes: " + total +
                   "; the image travels base64 (4/3 of its size), so at most about 6 MiB: send a smaller "
                   "file (a JPEG, or fewer pixels)");
}

std::string need_id(const Args& a) {
  if (a.positional.size() != 1) throw UsageError(a.command + " needs exactly one job id");
  return a.positional[0];
}

// Prints an error as Note [One code per cause] (ctl/client.h) says: --json: one JSON object
// on stdout; else "wanctl: MESSAGE" on stderr (the daemon's code is shown in front of its
// message, wanctl's own codes are not: the message says it).
void print_error(const Args& a, const std::string& code, const std::string& message, bool daemon_code) {
  if (a.json) {
    std::printf("%s\n", json{{"type", "error"}, {"code", code}, {"message", message}}.dump().c_str());
    flush_or_end(stdout);
  }
  if (!a.json || !daemon_code) {
    std::fprintf(stderr, "wanctl: %s%s\n", daemon_code ? (code + ": ").c_str() : "", message.c_str());
    flush_or_end(stderr);
  }
}

// An ErrorReply ends the command: message on stderr (or JSON), mapped exit code.
int fail(const Args& a, const proto::ErrorReply& e) {
  print_error(a, e.code, e.message, true);
  return exit_code_for_error(e.code);
}

template <class T>
const T* as(const proto::Response& r) {
  return std::get_if<T>(&r);
}

[[noreturn]] void unexpected(const proto::Response& r) {
  throw ClientError(kExitNoDaemon, kErrProtocol, std::string("unexpected response '") + proto::response_type(r) + "'");
}

int exit_for_state(const std::string& state) {
  if (state == "failed") return kExitJobFailed;
  if (state == "cancelled") return kExitCancelled;
  return kExitOk;
}

// Where a video goes: a file opened with the user's own rights, or standard output (-o -).
struct Output {
  std::string path;      // "-": standard output
  int fd = -1;
  bool created = false;  // we created the file: remove it on failure
  bool to_stdout() const { return path == "-"; }
  std::string name() const { return to_stdout() ? "standard output" : path; }
  ~Output() {
    if (fd >= 0 && !to_stdout()) ::close(fd);
  }
  // Failure: a file we created goes away (an existing file is left as it was).
  void discard() {
    if (created && !to_stdout()) ::unlink(path.c_str());
  }
};

// Opens (or creates) the output with the user's own rights, without truncating:
// an existing file is only replaced once the video has arrived (fetch_into
// truncates to the final size). Output::created tells whether to remove it on failure.
void open_output(const Args& a, const std::string& path, Output& out) {
  out.path = path;
  if (out.to_stdout()) {
    if (a.json) throw UsageError("-o - writes the video to standard output: it cannot carry --json too");
    out.fd = STDOUT_FILENO;
    return;
  }
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  out.created = fd >= 0;
  if (fd < 0 && errno == EEXIST) fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) throw UsageError("cannot write " + path + ": " + std::strerror(errno));
  out.fd = fd;
}

// Writes a finished job's video into out: positioned writes into a file (then truncated
// to the final size and fsync'ed), plain sequential writes to standard output (a pipe).
int fetch_into(Client& c, const Args& a, const std::string& id, Output& out, proto::FetchEnd* end_out) {
  c.send(proto::Fetch{id});
  std::uint64_t written = 0;  // standard output: the bytes written so far
  auto io_error = [&](const char* what) {
    print_error(a, kErrIo, std::string(what) + " " + out.name() + ": " + std::strerror(errno), false);
    return kExitJobFailed;
  };
  for (;;) {
    proto::Response r = c.receive();
    if (auto* e = as<proto::ErrorReply>(r)) return fail(a, *e);
    if (auto* ch = as<proto::FetchChunk>(r)) {
      if (out.to_stdout() && ch->offset != written) {
        throw ClientError(kExitNoDaemon, kErrProtocol, "wand sent chunk offset " + std::to_string(ch->offset) +
                                                           " after " + std::to_string(written) + " bytes");
      }
      std::size_t off = 0;
      while (off < ch->data.size()) {
        ssize_t n = out.to_stdout() ? ::write(out.fd, ch->data.data() + off, ch->data.size() - off)
                                    : ::pwrite(out.fd, ch->data.data() + off, ch->data.size() - off,
                                               static_cast<off_t>(ch->offset + off));
        if (n < 0) {
          if (errno == EINTR) continue;
          if (errno == EPIPE && out.to_stdout()) end_by_closed_pipe();  // Note [Closed output pipe]
          return io_error("write");
        }
        off += static_cast<std::size_t>(n);
      }
      written += ch->data.size();
      continue;
    }
    if (auto* end = as<proto::FetchEnd>(r)) {
      if (!out.to_stdout() && (::ftruncate(out.fd, static_cast<off_t>(end->bytes)) != 0 || ::fsync(out.fd) != 0)) {
        return io_error("finish");
      }
      if (end_out) *end_out = *end;
      return kExitOk;
    }
    unexpected(r);
  }
}

// Note [Interrupting generate]: Ctrl-C while `generate` follows a job stops wanctl, never the
// job (it is journaled and keeps running in wand). The handler says so, with the commands
// to use next, removes the output file wanctl created (nothing has been written to it yet, or
// only part of the video), and exits 130 (128 + SIGINT; SIGTERM: 143). Everything it needs
// is prepared before the handler is installed, so it only calls write/unlink/_exit
// (async-signal-safe; g_interrupt above).
extern "C" void on_interrupt(int sig) {
  if (g_interrupt.unlink_path[0]) ::unlink(g_interrupt.unlink_path);
  if (g_interrupt.json_len) (void)!::write(STDOUT_FILENO, g_interrupt.json, g_interrupt.json_len);
  (void)!::write(STDERR_FILENO, g_interrupt.message, g_interrupt.message_len);
  ::_exit(128 + sig);
}

void arm_interrupt(const Args& a, const std::string& id, const Output& out, bool progress) {
  // On a terminal the progress line is ended first; piped, the message is a line of its own.
  const std::string msg = std::string(progress ? "\n" : "") + "wanctl: interrupted; " + id + " continues; `wanctl watch " + id + "` / `wanctl cancel " +
                          id + "` (then `wanctl fetch " + id + " -o FILE`)\n";
  std::snprintf(g_interrupt.message, sizeof g_interrupt.message, "%s", msg.c_str());
  g_interrupt.message_len = std::strlen(g_interrupt.message);
  if (a.json) {
    const std::string j = json{{"type", "error"}, {"code", kErrInterrupted}, {"id", id},
                               {"message", id + " continues in wand; wanctl stopped following it"}}
                              .dump() +
                          "\n";
    std::snprintf(g_interrupt.json, sizeof g_interrupt.json, "%s", j.c_str());
    g_interrupt.json_len = std::strlen(g_interrupt.json);
  }
  if (out.created && out.path.size() < sizeof g_interrupt.unlink_path) {
    std::snprintf(g_interrupt.unlink_path, sizeof g_interrupt.unlink_path, "%s", out.path.c_str());
  }
  struct sigaction sa {};
  sa.sa_handler = on_interrupt;
  sigemptyset(&sa.sa_mask);
  ::sigaction(SIGINT, &sa, nullptr);
  ::sigaction(SIGTERM, &sa, nullptr);
}

void disarm_interrupt() {
  g_interrupt.unlink_path[0] = 0;  // the video is written (or discarded): nothing to remove
  struct sigaction sa {};
  sa.sa_handler = SIG_DFL;
  sigemptyset(&sa.sa_mask);
  ::sigaction(SIGINT, &sa, nullptr);
  ::sigaction(SIGTERM, &sa, nullptr);
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

// How `generate` shows a job's progress on stderr: not at all (--json, --no-progress), a line
// redrawn in place (a terminal: Note [Progress redraw]) or plain log lines (anything else:
// Note [Piped progress]).
enum class Progress { kNone, kBar, kLines };

// Follows a job until it is terminal; returns its last JobInfo. Survives a
// daemon restart: it reconnects and watches again.
proto::JobInfo follow(Client& c, const Args& a, const std::string& id, Progress progress, bool print_events) {
  c.send(proto::Watch{id});
  proto::JobInfo last;
  ProgressDrawer drawer;  // Note [Progress redraw]
  ProgressLog lines;      // Note [Piped progress]
  for (;;) {
    proto::Response r;
    try {
      r = c.receive();
    } catch (const ClientError& e) {
      if (e.exit_code() != kExitNoDaemon) throw;
      // The job is journaled: a restarted wand resumes it from its last checkpointed step.
      if (!a.json) {
        std::fprintf(stderr, "%swanctl: lost the connection to wand (%s); %s is durable and goes on when wand "
                             "is back; reconnecting (up to 60 s)\n", drawer.drawn() ? "\n" : "", e.what(), id.c_str());
        drawer.reset();  // the next progress line starts on a fresh row
      }
      if (!reconnect(c)) {
        throw ClientError(kExitNoDaemon, kErrConnectionLost,
                          "wand did not come back within 60 s; " + id + " is kept and runs when wand starts again: `wanctl watch " +
                              id + "`");
      }
      c.send(proto::Watch{id});
      continue;
    }
    if (auto* e = as<proto::ErrorReply>(r)) {
      throw ClientError(exit_code_for_error(e->code), e->code, e->message);  // the daemon's code, unchanged
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
      flush_or_end(stdout);
    }
    if (progress == Progress::kBar) {
      std::fputs(drawer.redraw(last, terminal_columns(STDERR_FILENO)).c_str(), stderr);
      flush_or_end(stderr);
    } else if (progress == Progress::kLines) {
      const std::string line = lines.next(last);
      if (!line.empty()) {
        std::fputs(line.c_str(), stderr);
        flush_or_end(stderr);
      }
    }
    if (last.state == "done" || last.state == "failed" || last.state == "cancelled") break;
  }
  if (drawer.drawn()) std::fputc('\n', stderr);
  return last;
}

int cmd_submit_like(Client& c, const Args& a, bool generate) {
  if (generate && !a.has("-o")) throw UsageError("generate needs -o FILE (or -o - for standard output)");
  const proto::JobParams params = job_params(a);
  const proto::Request submit = proto::Submit{params};
  check_request_size(a, submit, params);
  Output out;
  if (generate) open_output(a, a.get("-o"), out);  // ours, with our rights, before submitting
  proto::Response r = c.call(submit);
  if (auto* e = as<proto::ErrorReply>(r)) {
    out.discard();
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
  const bool bar = !a.json && !a.no_progress && ::isatty(STDERR_FILENO);
  const Progress progress = bar ? Progress::kBar : !a.json && !a.no_progress ? Progress::kLines : Progress::kNone;
  arm_interrupt(a, s->id, out, bar);  // Note [Interrupting generate]
  if (!a.json && !bar) {
    std::fprintf(stderr, "submitted %s\n", s->id.c_str());
    flush_or_end(stderr);
  }
  proto::JobInfo last;
  try {
    last = follow(c, a, s->id, progress, false);
  } catch (...) {
    out.discard();
    throw;
  }
  int rc = exit_for_state(last.state);
  if (rc != kExitOk) {
    disarm_interrupt();
    out.discard();
    if (a.json) {
      std::printf("%s\n", json(last).dump().c_str());
    } else {
      std::fprintf(stderr, "wanctl: job %s %s%s\n", last.id.c_str(), last.state.c_str(),
                   last.error.empty() ? "" : (": " + last.error).c_str());
    }
    return rc;
  }
  proto::FetchEnd end;
  rc = fetch_into(c, a, s->id, out, &end);
  disarm_interrupt();
  if (rc != kExitOk) {
    out.discard();
    return rc;
  }
  if (a.json) {
    json j = last;
    j["output"] = out.path;
    j["output_bytes"] = end.bytes;
    std::printf("%s\n", j.dump().c_str());
  } else {
    // With -o - the video is on stdout: the summary goes to stderr.
    std::fprintf(out.to_stdout() ? stderr : stdout, "%s: %s written (%s, %s%s)\n", last.id.c_str(),
                 out.name().c_str(), end.format.c_str(), format_bytes(end.bytes).c_str(),
                 video_size(last).empty() ? "" : (", " + video_size(last)).c_str());
  }
  return kExitOk;
}

int run(const Args& a) {
  if (a.version) {
    if (a.json) {  // the same facts as the text, as one object (like every --json answer)
      std::printf("%s\n", json{{"program", "wanctl"}, {"version", proto::wand_version()},
                               {"protocol", proto::kProtocolVersion}}
                               .dump()
                               .c_str());
    } else {
      std::printf("wanctl %s (protocol %d)\n", proto::wand_version(), proto::kProtocolVersion);
    }
    return kExitOk;
  }
  if (a.command.empty()) {
    std::fputs(kUsage, a.help ? stdout : stderr);
    return a.help ? kExitOk : kExitUsage;
  }
  if (a.command == "help") {  // `wanctl help [COMMAND]`
    if (a.positional.empty()) {
      std::fputs(kUsage, stdout);
      return kExitOk;
    }
    const CommandHelp* c = find_command(a.positional[0]);
    if (!c) throw UsageError(unknown_command(a.positional[0]));
    print_command_help(stdout, *c);
    return kExitOk;
  }
  const CommandHelp* known = find_command(a.command);
  if (!known) throw UsageError(unknown_command(a.command));
  if (a.help) {
    print_command_help(stdout, *known);
    return kExitOk;
  }
  if (a.command == "fetch" && !a.has("-o")) throw UsageError("fetch needs -o FILE (or -o - for standard output)");

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
    proto::JobInfo last = follow(c, a, need_id(a), Progress::kNone, true);
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
    Output out;
    open_output(a, a.get("-o"), out);
    proto::FetchEnd end;
    int rc = fetch_into(c, a, id, out, &end);
    if (rc != kExitOk) {
      out.discard();
      return rc;
    }
    if (a.json) {
      std::printf("%s\n", json{{"id", id}, {"output", out.path}, {"bytes", end.bytes}, {"format", end.format}}.dump().c_str());
    } else if (!out.to_stdout()) {
      std::printf("%s: %s written (%s, %s)\n", id.c_str(), out.path.c_str(), end.format.c_str(),
                  format_bytes(end.bytes).c_str());
    }
    return kExitOk;
  }
  if (cmd == "tiers" || cmd == "models" || cmd == "plan" || cmd == "shutdown") {
    proto::Request req;
    if (cmd == "tiers") req = proto::GetTiers{};
    if (cmd == "models") req = proto::ListModels{};
    if (cmd == "plan") {
      const proto::JobParams params = job_params(a);
      req = proto::GetPlan{params};
      check_request_size(a, req, params);
    }
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
  throw UsageError(unknown_command(cmd));
}

}  // namespace

int run_wanctl(int argc, char** argv) {
  std::signal(SIGPIPE, SIG_IGN);  // a closed socket is an error to report, not a silent death (exit 141)
  Args a;
  // --json is known before parsing ends: a usage error is printed as JSON too.
  for (int i = 1; i < argc; ++i) a.json = a.json || std::strcmp(argv[i], "--json") == 0;
  try {
    a = parse(argc, argv);
    const int rc = run(a);
    flush_or_end(stdout);  // Note [Closed output pipe]: the last buffered lines too
    flush_or_end(stderr);
    return rc;
  } catch (const UsageError& e) {
    print_error(a, kErrUsage, std::string(e.what()) + (a.json ? "" : " (see wanctl --help)"), false);
    return kExitUsage;
  } catch (const ClientError& e) {
    const char* own[] = {kErrUsage, kErrNotRunning, kErrNoAccess, kErrConnectionLost, kErrProtocol, kErrIo};
    const bool daemon_code = std::none_of(std::begin(own), std::end(own), [&](const char* c) { return e.code() == c; });
    print_error(a, e.code(), e.what(), daemon_code);
    return e.exit_code();
  } catch (const std::exception& e) {
    print_error(a, proto::errc::kInternal, e.what(), false);
    return kExitJobFailed;
  }
}

}  // namespace wand::ctl
