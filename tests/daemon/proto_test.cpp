// proto/: the checked-in example messages still decode, and framing / base64 /
// typed fields behave.
#include <fstream>
#include <unistd.h>

#include <gtest/gtest.h>

#include "common/base64.h"
#include "common/error.h"
#include "proto/framing.h"
#include "proto/hello.h"
#include "proto/requests.h"
#include "proto/responses.h"

namespace wand::proto {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

TEST(ProtoV1, CheckedInExamplesDecodeAndRoundTrip) {
  int requests = 0, responses = 0, hellos = 0;
  for (const auto& e : fs::directory_iterator(fs::path(WAND_SOURCE_DIR) / "tests/data/proto_v1")) {
    SCOPED_TRACE(e.path().string());
    std::ifstream in(e.path());
    json j = json::parse(in);
    std::string name = e.path().filename().string();
    if (name.rfind("request_", 0) == 0) {
      Request r = request_from_json(j);
      EXPECT_EQ(j["type"], request_type(r));
      EXPECT_EQ(request_to_json(request_from_json(request_to_json(r))), request_to_json(r));
      ++requests;
    } else if (name.rfind("response_", 0) == 0) {
      Response r = response_from_json(j);
      EXPECT_EQ(j["type"], response_type(r));
      EXPECT_EQ(response_to_json(response_from_json(response_to_json(r))), response_to_json(r));
      ++responses;
    } else if (name.rfind("hello_", 0) == 0) {
      Hello h = j.get<Hello>();
      EXPECT_EQ(h.version, 1);
      ++hellos;
    } else {
      ADD_FAILURE() << "unexpected file " << name;
    }
  }
  EXPECT_EQ(requests, 11);  // every request type, i2v submit included
  EXPECT_EQ(responses, 12);
  EXPECT_EQ(hellos, 2);
}

// The wire stays as docs/protocol.md writes it: every checked-in request encodes back to what
// the file says (the job's fields from common/job_request.h), and a model's traits travel as
// the optional fields of a `models` entry.
TEST(ProtoV1, CheckedInRequestsEncodeAsWritten) {
  int requests = 0;
  for (const auto& e : fs::directory_iterator(fs::path(WAND_SOURCE_DIR) / "tests/data/proto_v1")) {
    const std::string name = e.path().filename().string();
    if (name.rfind("request_", 0) != 0) continue;
    SCOPED_TRACE(name);
    std::ifstream in(e.path());
    const json j = json::parse(in);
    // Every member of the file comes back with its value (a member the file leaves out comes
    // back as its default).
    const json out = request_to_json(request_from_json(j));
    json with_file = out;
    with_file.merge_patch(j);
    EXPECT_EQ(with_file, out);
    ++requests;
  }
  EXPECT_EQ(requests, 11);
}

TEST(ProtoV1, ModelEntriesCarryTheTraits) {
  ModelInfo m;
  m.name = "t2v";
  m.pipeline = "wan";
  const ModelTraits t{"ti2v-5B", {"ti2v", "t2v", "i2v"}, 32, 1280, 704, 121, 50, 24};
  static_cast<ModelTraits&>(m) = t;
  const json j = response_to_json(ModelList{{m}});
  EXPECT_EQ(j, json::parse(R"({"type": "models", "models": [{"name": "t2v", "dir": "", "pipeline": "wan",
      "variant": "ti2v-5B", "tasks": ["ti2v", "t2v", "i2v"], "size_multiple": 32, "default_width": 1280,
      "default_height": 704, "default_frames": 121, "default_steps": 50, "fps": 24}]})"));
  const auto back = std::get<ModelList>(response_from_json(j)).models.at(0);
  EXPECT_EQ(back.variant, t.variant);
  EXPECT_EQ(back.tasks, t.tasks);
  EXPECT_EQ(back.default_height, 704);
  EXPECT_EQ(back.fps, 24);
  EXPECT_EQ(back.name, "t2v");
}

TEST(ProtoV1, SubmitCarriesTheImageBytes) {
  std::ifstream in(fs::path(WAND_SOURCE_DIR) / "tests/data/proto_v1/request_submit_i2v.json");
  Request r = request_from_json(json::parse(in));
  const auto& s = std::get<Submit>(r);
  EXPECT_EQ(s.job.image, (std::vector<std::uint8_t>{0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'}));
}

TEST(Framing, RoundTripThroughAPipeAndLimits) {
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  write_frame(fds[1], R"({"type":"list"})");
  write_frame(fds[1], std::string(300, 'x'));
  ::close(fds[1]);
  EXPECT_EQ(*read_frame(fds[0], 1024), R"({"type":"list"})");
  EXPECT_THROW(read_frame(fds[0], 100), Error);  // over the maximum
  ::close(fds[0]);

  ASSERT_EQ(::pipe(fds), 0);
  std::string f = encode_frame("hello");
  ASSERT_EQ(::write(fds[1], f.data(), f.size() - 2), static_cast<ssize_t>(f.size() - 2));
  ::close(fds[1]);
  try {
    read_frame(fds[0], 1024);
    FAIL() << "accepted a truncated frame";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("truncated"), std::string::npos);
  }
  ::close(fds[0]);

  unsigned char h[4] = {0x01, 0x02, 0x03, 0x04};
  EXPECT_EQ(decode_frame_length(h), 0x01020304u);
  EXPECT_EQ(encode_frame("ab").substr(0, 4), std::string("\0\0\0\2", 4));
}

TEST(Base64, RoundTripsEveryLengthAndRejectsGarbage) {
  std::vector<std::uint8_t> v;
  for (int n = 0; n < 20; ++n) {
    EXPECT_EQ(base64_decode(base64_encode(v)), v);
    v.push_back(static_cast<std::uint8_t>(n * 37 + 5));
  }
  EXPECT_EQ(base64_encode(std::vector<std::uint8_t>{'M', 'a', 'n'}), "TWFu");
  EXPECT_THROW(base64_decode("abc"), Error);
  EXPECT_THROW(base64_decode("ab!d"), Error);
  EXPECT_THROW(base64_decode("a=bc"), Error);
}

TEST(Requests, WrongTypesNameTheField) {
  try {
    request_from_json({{"type", "cancel"}, {"job", 5}});
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("'job'"), std::string::npos) << e.what();
  }
  EXPECT_THROW(request_from_json({{"type", "submit"}, {"job", {{"model", "m"}, {"width", 1.5}}}}), Error);
  EXPECT_THROW(request_from_json(json::array()), Error);
  EXPECT_THROW(request_from_json({{"type", "submit"}, {"job", {{"model", "m"}, {"width", 8}, {"height", 8},
                                                                {"frames", 1}, {"steps", 1}, {"seed", -1}}}}),
               Error);
}

}  // namespace
}  // namespace wand::proto
