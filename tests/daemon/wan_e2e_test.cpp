// End to end with the real Wan2.2 pipeline: wand-make-model writes a tiny model
// in the release layout, wand serves it, `wanctl generate` leaves a video file.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <regex>
#include <thread>

#include <gtest/gtest.h>

#include "common/base64.h"
#include "tests/daemon/harness.h"

namespace wand::test {
namespace {

std::string file_bytes(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

TEST(WanEndToEnd, TinyT2vModelGeneratesADeterministicVideo) {
  DaemonFixture d(1);
  auto model = d.dir() / "models" / "tiny-t2v";
  CmdResult mk = run_command({WAND_MAKE_MODEL_EXE, "--preset", "tiny-t2v", "--out", model.string(),
                              "--seed", "1"});
  ASSERT_EQ(mk.exit_code, 0) << mk.err;
  d.start({"--model", "tiny=" + model.string()});
  CmdResult models = d.wanctl({"models", "--json"});
  ASSERT_EQ(models.exit_code, 0) << models.err;
  bool wan = false;
  nlohmann::json list = models.json();
  for (const auto& m : list["models"]) wan = wan || (m["name"] == "tiny" && m["pipeline"] == "wan");
  EXPECT_TRUE(wan) << models.out;

  std::vector<std::string> args = {"generate", "--model", "tiny", "--prompt", "a cat on a surfboard",
                                   "--size", "64x64", "--frames", "5", "--steps", "3", "--seed", "7",
                                   "--json", "-o"};
  auto a = args, b = args;
  a.push_back((d.dir() / "a.video").string());
  b.push_back((d.dir() / "b.video").string());
  CmdResult ra = d.wanctl(a);
  ASSERT_EQ(ra.exit_code, 0) << ra.out << ra.err << d.log();
  EXPECT_EQ(ra.json()["state"], "done");
  CmdResult rb = d.wanctl(b);
  ASSERT_EQ(rb.exit_code, 0) << rb.err;
  std::string va = file_bytes(d.dir() / "a.video");
  EXPECT_GT(va.size(), 100u);
  const std::string vb = file_bytes(d.dir() / "b.video");
  EXPECT_TRUE(va == vb) << "same seed, different bytes: " << va.size() << " vs " << vb.size() << " bytes";
  d.stop();
}

// Note [Checks from the config] (model/generator.cpp): the model's checks answer at submit from
// its config.json, before its first load, with exit 2, and the same way once it is loaded.
TEST(WanEndToEnd, ModelChecksRefuseAtSubmitBeforeAndAfterTheFirstLoad) {
  DaemonFixture d(1);
  auto i2v = d.dir() / "models" / "tiny-i2v";
  auto t2v = d.dir() / "models" / "tiny-t2v";
  for (const auto& [preset, dir] : {std::pair{"tiny-i2v", i2v}, std::pair{"tiny-t2v", t2v}}) {
    CmdResult mk = run_command({WAND_MAKE_MODEL_EXE, "--preset", preset, "--out", dir.string(), "--seed", "1"});
    ASSERT_EQ(mk.exit_code, 0) << mk.err;
  }
  const char png[] = "\x89PNG\r\n\x1a\n\0\0\0\rIHDR";
  std::ofstream(d.dir() / "a.png", std::ios::binary).write(png, sizeof png - 1);
  d.start({"--model", "i2v=" + i2v.string(), "--model", "t2v=" + t2v.string()});
  auto submit = [&](const std::string& model, const std::string& size, const std::string& frames, bool image) {
    std::vector<std::string> a = {"submit", "--model", model, "--prompt", "a cat", "--size", size,
                                  "--frames", frames, "--steps", "2", "--seed", "1"};
    if (image) a.insert(a.end(), {"--image", (d.dir() / "a.png").string()});
    return d.wanctl(a);
  };
  struct Case {
    const char* model;
    const char* size;
    const char* frames;
    bool image;
    const char* says;
  };
  const Case cases[] = {
      {"i2v", "64x64", "5", false, "tiny-i2v is an image-to-video model: pass --image FILE"},
      {"t2v", "64x64", "5", true, "tiny-t2v is a text-to-video model: it takes no --image"},
      {"t2v", "17x64", "5", false, "17 is not a multiple of 16"},
      {"t2v", "64x64", "10", false, "10 is not 4n + 1"},
  };
  std::vector<std::string> before;
  for (const Case& c : cases) {
    CmdResult r = submit(c.model, c.size, c.frames, c.image);
    EXPECT_EQ(r.exit_code, 2) << c.says << ": " << r.out << r.err;
    EXPECT_NE(r.err.find("bad_request"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find(c.says), std::string::npos) << r.err;
    EXPECT_EQ(r.err.find("'t2v' is not supported"), std::string::npos) << "talks about a task never chosen: " << r.err;
    before.push_back(r.err);
  }
  EXPECT_EQ(d.log().find("model load"), std::string::npos) << "refused without loading anything:\n" << d.log();
  EXPECT_EQ(d.wanctl({"ls", "--json"}).json()["jobs"].size(), 0u) << "nothing was queued";

  // `models` shows each model's tasks and sizes (from config.json, nothing loaded).
  nlohmann::json models = d.wanctl({"models", "--json"}).json();
  for (const auto& m : models["models"]) {
    if (m["name"] == "fake") continue;  // the fixture's fake model
    EXPECT_EQ(m["tasks"], nlohmann::json::array({m["name"] == "i2v" ? "i2v" : "t2v"})) << m.dump();
    EXPECT_EQ(m["size_multiple"], 16) << m.dump();
    EXPECT_EQ(m["default_frames"], 81) << m.dump();
    EXPECT_EQ(m["variant"], m["name"] == "i2v" ? "tiny-i2v" : "tiny-t2v") << m.dump();
  }
  CmdResult human = d.wanctl({"models"});
  EXPECT_NE(human.out.find("WxH multiples of 16"), std::string::npos) << human.out;

  // Load the t2v model with one job; its refusals are the same afterwards.
  CmdResult g = d.wanctl({"generate", "--model", "t2v", "--prompt", "a cat", "--size", "64x64", "--frames", "5",
                          "--steps", "2", "--seed", "1", "-o", (d.dir() / "v.video").string()});
  ASSERT_EQ(g.exit_code, 0) << g.err << d.log();
  ASSERT_NE(d.log().find("model load"), std::string::npos);
  for (std::size_t i = 1; i < std::size(cases); ++i) {
    CmdResult r = submit(cases[i].model, cases[i].size, cases[i].frames, cases[i].image);
    EXPECT_EQ(r.exit_code, 2) << r.err;
    EXPECT_EQ(r.err, before[i]) << "the same answer once the model is loaded";
  }
  d.stop();
}

// Issue 15 item 9: a cancel that arrives while the VAE decodes is not ignored: the decode
// checks the job's cancel token between latent frames, so the job ends cancelled before it
// is written (no "writing" stage, no result, no checkpoint left), and the daemon serves the
// next job. 128x128 with 17 frames and one step: the decode (5 latent frames) takes about
// 3 s on the 2-core CI machine, the step 0.5 s, so the cancel lands well inside it.
TEST(WanEndToEnd, ACancelDuringTheVaeDecodeEndsTheJobCancelled) {
  DaemonFixture d(1);
  auto model = d.dir() / "models" / "tiny-t2v";
  CmdResult mk = run_command({WAND_MAKE_MODEL_EXE, "--preset", "tiny-t2v", "--out", model.string(), "--seed", "1"});
  ASSERT_EQ(mk.exit_code, 0) << mk.err;
  d.start({"--model", "tiny=" + model.string()});
  const nlohmann::json job = {{"model", "tiny"}, {"task", "t2v"}, {"prompt", "a cat"}, {"width", 128},
                              {"height", 128},   {"frames", 17},  {"steps", 1},         {"seed", 3}};
  RawClient c(d.socket());
  c.hello();
  nlohmann::json r = c.call({{"type", "submit"}, {"job", job}});
  ASSERT_EQ(r.value("type", ""), "submitted") << r.dump();
  const std::string id = r["id"];
  RawClient w(d.socket());
  w.hello();
  w.send_json({{"type", "watch"}, {"job", id}});
  std::vector<std::string> stages_after_cancel;
  nlohmann::json last;
  bool cancelled = false;
  std::chrono::steady_clock::time_point cancel_at;
  for (;;) {
    auto ev = w.receive();
    ASSERT_TRUE(ev.has_value()) << "watch stream ended\n" << d.log();
    last = (*ev)["job"];
    const std::string state = last.value("state", "");
    const std::string stage = last.value("stage", "");
    if (cancelled && !stage.empty()) stages_after_cancel.push_back(stage);
    if (!cancelled && stage == "decoding") {
      nlohmann::json x = c.call({{"type", "cancel"}, {"job", id}});
      ASSERT_EQ(x.value("type", ""), "cancelled") << x.dump();
      EXPECT_EQ(x.value("pending", false), true) << "the job is running: " << x.dump();
      cancelled = true;
      cancel_at = std::chrono::steady_clock::now();
    }
    if (state == "done" || state == "failed" || state == "cancelled") break;
  }
  ASSERT_TRUE(cancelled) << "no decoding stage was seen: " << last.dump();
  const double stop_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - cancel_at).count();
  std::printf("[ figures ] cancel during the decode: the job ended %.3f s after the cancel\n", stop_s);
  {
    const std::string log = d.log();  // the daemon's view: the cancel, then the end
    const auto c_at = log.find("job cancel id=" + id);
    const auto f_at = log.find("job finished id=" + id);
    ASSERT_NE(c_at, std::string::npos) << log;
    ASSERT_NE(f_at, std::string::npos) << log;
    EXPECT_LT(c_at, f_at) << log;
    std::printf("[ figures ] %s\n[ figures ] %s\n", log.substr(c_at - 24, log.find('\n', c_at) - c_at + 24).c_str(),
                log.substr(f_at - 24, log.find('\n', f_at) - f_at + 24).c_str());
  }
  EXPECT_EQ(last.value("state", ""), "cancelled") << last.dump() << d.log();
  EXPECT_EQ(last.value("result_bytes", 0), 0) << last.dump();
  for (const auto& st : stages_after_cancel) EXPECT_NE(st, "writing") << "the video was written after the cancel";
  nlohmann::json f = c.call({{"type", "fetch"}, {"job", id}});
  EXPECT_EQ(f.value("code", ""), "invalid_state") << "no video to fetch: " << f.dump();
  std::size_t left = 0;
  for (const char* sub : {"results", "checkpoints"}) {
    const auto dir = d.state_dir() / sub;
    if (!std::filesystem::exists(dir)) continue;
    for (const auto& e : std::filesystem::directory_iterator(dir)) {
      ADD_FAILURE() << "left behind: " << e.path();
      ++left;
    }
  }
  EXPECT_EQ(left, 0u);
  // The daemon keeps serving: the next job runs to the end.
  CmdResult g = d.wanctl({"generate", "--model", "tiny", "--prompt", "a dog", "--size", "64x64", "--frames", "5",
                          "--steps", "1", "--seed", "1", "-o", (d.dir() / "next.video").string()});
  EXPECT_EQ(g.exit_code, 0) << g.err << d.log();
  d.stop();
}

// Durability with the real pipeline: SIGKILL while a tiny t2v job is between
// steps, restart, the job resumes from its last checkpoint (latents, sampler
// history, RNG) and its video is bitwise identical to an uninterrupted run.
TEST(WanEndToEnd, SigkillMidJobThenRestartGivesIdenticalVideo) {
  DaemonFixture d(1);
  auto model = d.dir() / "models" / "tiny-t2v";
  CmdResult mk = run_command({WAND_MAKE_MODEL_EXE, "--preset", "tiny-t2v", "--out", model.string(),
                              "--seed", "3"});
  ASSERT_EQ(mk.exit_code, 0) << mk.err;
  const std::vector<std::string> model_arg = {"--model", "tiny=" + model.string()};
  const nlohmann::json spec = {{"model", "tiny"}, {"prompt", "a lighthouse in a storm"},
                               {"width", 128},    {"height", 128},
                               {"frames", 9},     {"steps", 40},
                               {"seed", 11}};
  d.start(model_arg);
  std::string id;
  {
    RawClient c(d.socket());
    c.hello();
    id = c.call({{"type", "submit"}, {"job", spec}})["id"];
  }
  nlohmann::json at = watch_until(d, id, [](const nlohmann::json& j) { return j["step"].get<int>() >= 3; });
  ASSERT_EQ(at["state"], "running") << "the job ended before it could be interrupted: " << at.dump();
  d.kill9();

  d.start(model_arg);
  nlohmann::json done = watch_until(d, id, [](const nlohmann::json&) { return false; });
  ASSERT_EQ(done["state"], "done") << d.log();
  EXPECT_GE(done["resumed_from_step"].get<int>(), 3);  // resumed, not restarted
  EXPECT_LT(done["resumed_from_step"].get<int>(), 40);
  const std::string resumed = fetch(d, id);

  std::string ref_id;
  {
    RawClient c(d.socket());
    c.hello();
    ref_id = c.call({{"type", "submit"}, {"job", spec}})["id"];
  }
  nlohmann::json ref = watch_until(d, ref_id, [](const nlohmann::json&) { return false; });
  ASSERT_EQ(ref["state"], "done") << d.log();
  EXPECT_EQ(ref["resumed_from_step"], -1);
  const std::string uninterrupted = fetch(d, ref_id);
  ASSERT_GT(uninterrupted.size(), 1000u);
  EXPECT_TRUE(resumed == uninterrupted) << "resumed video differs from the uninterrupted one";
  d.stop();
}

// A config whose only content is a memory pool with a CPU device tier of `device_bytes`.
std::filesystem::path write_pool_config(const DaemonFixture& d, const std::string& name, std::uint64_t device_bytes) {
  const nlohmann::json cfg = {
      {"memory",
       {{"host", {{"bytes", "64MiB"}, {"pinned", false}}},
        {"devices", nlohmann::json::array({{{"index", 0}, {"bytes", device_bytes}, {"backend", "cpu"}}})},
        {"io", {{"engine", "psync"}}}}},
      {"executor", {{"pack_dir", (d.dir() / "pack").string()}}}};
  const auto p = d.dir() / name;
  std::ofstream(p) << cfg.dump(2);
  return p;
}

nlohmann::json device_tier(const nlohmann::json& tiers) {
  for (const auto& t : tiers["tiers"]) {
    if (t["kind"] == "device") return t;
  }
  return nullptr;
}

// Issue 6: jobs of Wan models stream their DiT blocks through the daemon's pool when
// the config has a device tier. A tier that cannot hold the streaming minimum (two
// blocks) fails the job with the sizes while the daemon keeps serving; a tier of two
// blocks (the tiny model has four) gives the resident run's video byte for byte, and
// `tiers` reports the pool (measured, device bytes moved in). SIGHUP keeps the pool.
TEST(WanEndToEnd, StreamedThroughTheDevicePoolGivesTheResidentVideo) {
  DaemonFixture d(1);
  auto model = d.dir() / "models" / "tiny-t2v";
  CmdResult mk = run_command({WAND_MAKE_MODEL_EXE, "--preset", "tiny-t2v", "--out", model.string(),
                              "--seed", "1"});
  ASSERT_EQ(mk.exit_code, 0) << mk.err;
  const std::vector<std::string> gen = {"generate", "--model", "tiny", "--prompt", "a cat on a surfboard",
                                        "--size", "64x64", "--frames", "5", "--steps", "3", "--seed", "7",
                                        "--json", "-o"};
  auto with_out = [&](const std::string& f) {
    auto a = gen;
    a.push_back((d.dir() / f).string());
    return a;
  };

  // Resident (no memory section).
  d.start({"--model", "tiny=" + model.string()});
  CmdResult ra = d.wanctl(with_out("resident.video"));
  ASSERT_EQ(ra.exit_code, 0) << ra.out << ra.err << d.log();
  d.stop();
  const std::string resident = file_bytes(d.dir() / "resident.video");
  ASSERT_GT(resident.size(), 100u);

  // A device tier of 8 KiB: below one block. The job fails naming the sizes.
  d.start({"--config", write_pool_config(d, "small.json", 8192).string(), "--model", "tiny=" + model.string()});
  CmdResult rf = d.wanctl(with_out("small.video"));
  EXPECT_NE(rf.exit_code, 0);
  const std::string err = rf.json().value("error", std::string());
  EXPECT_NE(err.find("two blocks"), std::string::npos) << rf.out << rf.err;
  std::smatch m;
  ASSERT_TRUE(std::regex_search(err, m, std::regex("of [0-9.]+ [KMG]?i?B \\(([0-9]+) bytes each")))
      << "no block size in: " << err;
  const std::uint64_t block = std::stoull(m[1].str());
  EXPECT_GT(block, 8192u);
  EXPECT_NE(err.find("(8192 bytes)"), std::string::npos) << err;
  // ... and the daemon keeps serving: a fake job runs, tiers answers from the pool.
  {
    RawClient c(d.socket());
    c.hello();
    const std::string id = c.call({{"type", "submit"}, {"job", fake_job(3, 2)}})["id"];
    EXPECT_EQ(watch_until(d, id, [](const nlohmann::json&) { return false; })["state"], "done");
  }
  CmdResult ts = d.wanctl({"tiers", "--json"});
  ASSERT_EQ(ts.exit_code, 0) << ts.err;
  EXPECT_EQ(ts.json()["source"], "pool");
  d.stop();

  // Two blocks of slots (the model has 2 experts x 2 blocks): streamed, same bytes.
  const std::uint64_t two = (2 * block + 4095) / 4096 * 4096;
  ASSERT_LT(two, 4 * block);
  d.start({"--config", write_pool_config(d, "two.json", two).string(), "--model", "tiny=" + model.string()});
  CmdResult rs = d.wanctl(with_out("streamed.video"));
  ASSERT_EQ(rs.exit_code, 0) << rs.out << rs.err << d.log();
  EXPECT_EQ(rs.json()["state"], "done");
  const std::string streamed = file_bytes(d.dir() / "streamed.video");
  EXPECT_TRUE(streamed == resident) << "streamed " << streamed.size() << " bytes vs resident " << resident.size();
  CmdResult t = d.wanctl({"tiers", "--json"});
  ASSERT_EQ(t.exit_code, 0) << t.err;
  const nlohmann::json tiers = t.json();
  EXPECT_EQ(tiers["source"], "pool");
  EXPECT_EQ(tiers["measured"], true);
  const nlohmann::json dev = device_tier(tiers);
  ASSERT_FALSE(dev.is_null()) << tiers.dump();
  EXPECT_EQ(dev["bytes_capacity"].get<std::uint64_t>(), two);
  EXPECT_GT(dev["bytes_moved_in"].get<std::uint64_t>(), 0u) << dev.dump();

  // SIGHUP with a different memory section: the pool is not rebuilt (restart needed).
  write_pool_config(d, "two.json", 2 * two);
  d.reload();
  CmdResult t2 = d.wanctl({"tiers", "--json"});
  ASSERT_EQ(t2.exit_code, 0) << t2.err;
  EXPECT_EQ(device_tier(t2.json())["bytes_capacity"].get<std::uint64_t>(), two);
  EXPECT_NE(t2.json()["note"].get<std::string>().find("restart"), std::string::npos) << t2.out;
  d.stop();
}

// Issue 15 items 1 and 2, past the submit check (Note [Image bytes only], model/video.cpp):
// bytes that start with the PNG signature pass the sniff at submit, but what follows is an
// ffmpeg concat playlist naming a FIFO and another user's file. The job's decode (the
// real i2v pipeline) hands the bytes to the PNG decoder alone: the job fails as an
// undecodable PNG at once, nothing opens the FIFO (an open() of it would block the worker
// for good: no writer ever comes), the error names no path, and the worker goes on.
// Then the submit check is bypassed altogether: a job whose stored input image
// (<state>/inputs/<id>.img, read back at replay without a check) is a bare playlist naming
// the FIFO; the decoder refuses it the same way, and nothing opens the FIFO.
TEST(WanEndToEnd, APlaylistBehindPngMagicIsDecodedAsPngOnly) {
  DaemonFixture d(1);
  auto model = d.dir() / "models" / "tiny-i2v";
  CmdResult mk = run_command({WAND_MAKE_MODEL_EXE, "--preset", "tiny-i2v", "--out", model.string(), "--seed", "1"});
  ASSERT_EQ(mk.exit_code, 0) << mk.err;
  const auto fifo = d.dir() / "fifo";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0) << std::strerror(errno);
  const auto secret = d.dir() / "secret.bin";
  std::ofstream(secret) << "another user's result";
  d.start({"--model", "i2v=" + model.string()});
  const std::string png_sig("\x89PNG\r\n\x1a\n", 8);
  const std::vector<std::string> payloads = {
      png_sig + "ffconcat version 1.0\nfile " + fifo.string() + "\n",
      png_sig + "ffconcat version 1.0\nfile " + secret.string() + "\n",
  };
  auto wait_end = [&](const std::string& id) {
    nlohmann::json last;
    const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(120);
    while (std::chrono::steady_clock::now() < end) {
      // Nobody may have the FIFO open for reading: a non-blocking open for writing fails
      // with ENXIO while no reader has it (or waits in open() for a writer).
      const int w = ::open(fifo.c_str(), O_WRONLY | O_NONBLOCK | O_CLOEXEC);
      const int werr = errno;
      if (w >= 0) ::close(w);
      EXPECT_TRUE(w < 0 && werr == ENXIO) << "something opened the FIFO for reading";
      RawClient s(d.socket());
      s.hello();
      last = s.call({{"type", "status"}, {"job", id}});
      const std::string st = last.value("state", "");
      if (st == "done" || st == "failed" || st == "cancelled") break;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    EXPECT_EQ(last.value("state", ""), "failed") << last.dump() << d.log();
    const std::string err = last.value("error", "");
    std::printf("[ figures ] job %s: %s\n", id.c_str(), err.c_str());
    EXPECT_NE(err.find("bad_request: image:"), std::string::npos) << err;
    EXPECT_EQ(err.find(d.dir().string()), std::string::npos) << "the error names a path: " << err;
    return err;
  };
  for (const std::string& bytes : payloads) {
    nlohmann::json job = {{"model", "i2v"}, {"task", "i2v"}, {"prompt", "a cat"}, {"width", 64}, {"height", 64},
                          {"frames", 5}, {"steps", 2}, {"seed", 1},
                          {"image_b64", wand::base64_encode(std::vector<std::uint8_t>(bytes.begin(), bytes.end()))}};
    RawClient c(d.socket());
    c.hello();
    nlohmann::json r = c.call({{"type", "submit"}, {"job", job}});
    ASSERT_EQ(r.value("type", ""), "submitted") << "passes the magic check at submit: " << r.dump();
    const std::string err = wait_end(r["id"]);
    EXPECT_NE(err.find("undecodable png"), std::string::npos) << "decoded as a PNG only: " << err;
  }
  d.stop();
  // A job whose stored image is a bare playlist (as a journal from before the submit check
  // could hold): a copy of j-1's accept record, as j-9, with its own input file.
  const auto journal = d.state_dir() / "journal.jsonl";
  std::string first;
  {
    std::ifstream in(journal);
    std::getline(in, first);
  }
  nlohmann::json rec = nlohmann::json::parse(first);
  ASSERT_EQ(rec.value("op", ""), "accept") << first;
  rec["job"]["id"] = "j-9";
  rec["job"]["seq"] = 9;
  rec["job"]["nonce"] = "00000000feedf00d";
  rec["job"]["spec"]["image_file"] = "j-9.img";
  const std::string bare = "ffconcat version 1.0\nfile " + fifo.string() + "\n";
  rec["job"]["spec"]["image_bytes"] = bare.size();
  std::ofstream(d.state_dir() / "inputs" / "j-9.img", std::ios::binary) << bare;
  std::ofstream(journal, std::ios::app) << rec.dump() << "\n";
  d.start({"--model", "i2v=" + model.string()});
  const std::string err = wait_end("j-9");
  EXPECT_NE(err.find("not a PNG, JPEG"), std::string::npos) << "refused before any decoder: " << err;
  d.stop();
}

// Issue 17: a model in the diffusers layout (transformer/, transformer_2/, text_encoder/ in the
// transformers naming, tokenizer/, vae/ in the diffusers naming; no release file) and one of
// ComfyUI single files named by wand-model.json are served beside the same weights in the
// release layout: the same seed gives the same video bytes (the daemon's streamed umT5 reads
// text_encoder/'s shards, or the single umT5 file), and `wanctl plan` plans all three. A CPU
// device tier (1 GiB: the planner asks 0.5 GiB for the tiny model at 64x64x5), so that jobs
// stream (DiT blocks and umT5 layers through the pool) and `wanctl plan` finds a plan.
TEST(WanEndToEnd, DiffusersAndComfyuiLayoutsAreServedAndPlannedLikeTheRelease) {
  DaemonFixture d(1);
  const char* const names[] = {"rel", "dif", "cf"};
  const char* const layouts[] = {"release", "diffusers", "comfyui"};
  std::vector<std::string> start;
  for (int i = 0; i < 3; ++i) {
    const auto dir = d.dir() / "models" / names[i];
    CmdResult mk = run_command({WAND_MAKE_MODEL_EXE, "--preset", "tiny-t2v", "--out", dir.string(), "--seed", "1",
                                "--layout", layouts[i]});
    ASSERT_EQ(mk.exit_code, 0) << mk.err;
    start.insert(start.end(), {"--model", std::string(names[i]) + "=" + dir.string()});
  }
  ASSERT_TRUE(std::filesystem::exists(d.dir() / "models" / "dif" / "text_encoder" / "model.safetensors.index.json"));
  ASSERT_FALSE(std::filesystem::exists(d.dir() / "models" / "dif" / "models_t5_umt5-xxl-enc-bf16.pth"));
  ASSERT_TRUE(std::filesystem::exists(d.dir() / "models" / "cf" / "wand-model.json"));
  start.insert(start.begin(), {"--config", write_pool_config(d, "pool.json", 1u << 30).string()});
  d.start(start);
  std::string bytes[3];
  for (int i = 0; i < 3; ++i) {
    const std::string m = names[i];
    const std::vector<std::string> job = {"--model", m, "--prompt", "a cat on a surfboard", "--size", "64x64",
                                          "--frames", "5", "--steps", "3", "--seed", "7"};
    std::vector<std::string> plan = {"plan"};
    plan.insert(plan.end(), job.begin(), job.end());
    plan.push_back("--json");
    CmdResult p = d.wanctl(plan);
    EXPECT_EQ(p.exit_code, 0) << m << ": " << p.out << p.err;
    if (p.exit_code == 0) EXPECT_EQ(p.json()["available"], true) << m << ": " << p.out;
    std::vector<std::string> gen = {"generate"};
    gen.insert(gen.end(), job.begin(), job.end());
    const auto out = d.dir() / (m + ".video");
    gen.insert(gen.end(), {"--json", "-o", out.string()});
    CmdResult g = d.wanctl(gen);
    ASSERT_EQ(g.exit_code, 0) << m << ": " << g.out << g.err << d.log();
    EXPECT_EQ(g.json()["state"], "done");
    bytes[i] = file_bytes(out);
  }
  EXPECT_GT(bytes[0].size(), 100u);
  EXPECT_TRUE(bytes[0] == bytes[1]) << "diffusers layout gave other bytes: " << bytes[1].size() << " vs "
                                    << bytes[0].size();
  EXPECT_TRUE(bytes[0] == bytes[2]) << "comfyui layout gave other bytes: " << bytes[2].size() << " vs "
                                    << bytes[0].size();
  // The jobs streamed their umT5 from the diffusers shards and the ComfyUI file.
  const std::string log = d.log();
  EXPECT_NE(log.find("t5 stream umT5 " + (d.dir() / "models" / "dif" / "text_encoder").string()), std::string::npos);
  EXPECT_NE(log.find("t5 stream umT5 " + (d.dir() / "models" / "cf" / "umt5_xxl_bf16.safetensors").string()),
            std::string::npos);
  d.stop();
}

}  // namespace
}  // namespace wand::test
