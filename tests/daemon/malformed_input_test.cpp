// Malformed input: each bad client gets a clear error or a closed connection, and
// another client is served normally afterwards (and meanwhile).
#include <thread>

#include <gtest/gtest.h>

#include "proto/framing.h"
#include "tests/daemon/harness.h"

namespace wand::test {
namespace {

using nlohmann::json;

class MalformedInput : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    daemon_ = new DaemonFixture(1);
    daemon_->start();
  }
  static void TearDownTestSuite() {
    daemon_->stop();
    delete daemon_;
  }
  // A well-behaved client is still served.
  void expect_served() {
    RawClient ok(daemon_->socket());
    EXPECT_EQ(ok.hello()["type"], "hello");
    json r = ok.call({{"type", "list"}});
    EXPECT_EQ(r["type"], "jobs") << r.dump();
  }
  static DaemonFixture* daemon_;
};
DaemonFixture* MalformedInput::daemon_ = nullptr;

TEST_F(MalformedInput, GarbageBytesAreRefusedAndTheConnectionClosed) {
  RawClient c(daemon_->socket());
  c.send_bytes("GET / HTTP/1.1\r\nHost: wand\r\n\r\n");  // "GET " = a 1.2 GB length prefix
  auto r = c.receive();
  ASSERT_TRUE(r);
  EXPECT_EQ((*r)["code"], "frame_too_large");
  EXPECT_FALSE(c.receive().has_value());  // closed
  expect_served();
}

TEST_F(MalformedInput, NonJsonBodyGetsBadFrameAndTheSessionGoesOn) {
  RawClient c(daemon_->socket());
  c.hello();
  c.send_bytes(proto::encode_frame("{not json"));
  auto r = c.receive();
  ASSERT_TRUE(r);
  EXPECT_EQ((*r)["type"], "error");
  EXPECT_EQ((*r)["code"], "bad_frame");
  EXPECT_EQ(c.call({{"type", "list"}})["type"], "jobs");
  c.send_bytes(proto::encode_frame("[1,2,3]"));
  EXPECT_EQ((*c.receive())["code"], "bad_frame");
}

TEST_F(MalformedInput, TenMegabyteMessageIsRefusedBeforeItIsRead) {
  RawClient c(daemon_->socket());
  c.hello();
  std::string big = "{\"type\":\"submit\",\"job\":{\"prompt\":\"" + std::string(10u << 20, 'a') + "\"}}";
  std::thread writer([&] { c.send_bytes(proto::encode_frame(big)); });
  auto r = c.receive();
  writer.join();
  ASSERT_TRUE(r);
  EXPECT_EQ((*r)["code"], "frame_too_large");
  EXPECT_NE((*r)["message"].get<std::string>().find("exceeds the maximum"), std::string::npos);
  expect_served();
}

TEST_F(MalformedInput, TruncatedFramesAndMidMessageDisconnectsAreDropped) {
  {
    RawClient c(daemon_->socket());
    c.hello();
    std::string frame = proto::encode_frame(json{{"type", "list"}}.dump());
    c.send_bytes(frame.substr(0, 2));  // half a header
    c.close_write();
    EXPECT_FALSE(c.receive().has_value());
  }
  {
    RawClient c(daemon_->socket());
    c.hello();
    std::string frame = proto::encode_frame(json{{"type", "status"}, {"job", "j-1"}}.dump());
    c.send_bytes(frame.substr(0, frame.size() - 5));  // header promises more than comes
    c.close_write();
    EXPECT_FALSE(c.receive().has_value());
  }
  {
    // Disconnect mid-message while another client is connected: it keeps being served.
    RawClient other(daemon_->socket());
    other.hello();
    {
      RawClient c(daemon_->socket());
      std::string frame = proto::encode_frame(json{{"type", "hello"}, {"version", 1}}.dump());
      c.send_bytes(frame.substr(0, 7));
    }  // closed here, mid-frame
    EXPECT_EQ(other.call({{"type", "list"}})["type"], "jobs");
  }
  expect_served();
}

TEST_F(MalformedInput, WrongTypesAndMissingFieldsNameTheField) {
  RawClient c(daemon_->socket());
  c.hello();
  json job = fake_job(1);
  job["steps"] = "eight";
  json r = c.call({{"type", "submit"}, {"job", job}});
  EXPECT_EQ(r["code"], "bad_request");
  EXPECT_NE(r["message"].get<std::string>().find("'steps'"), std::string::npos) << r.dump();
  job = fake_job(1);
  job.erase("width");
  r = c.call({{"type", "submit"}, {"job", job}});
  EXPECT_EQ(r["code"], "bad_request");
  EXPECT_NE(r["message"].get<std::string>().find("'width'"), std::string::npos) << r.dump();
  r = c.call({{"type", "status"}, {"job", 42}});
  EXPECT_EQ(r["code"], "bad_request");
  r = c.call({{"type", 7}});
  EXPECT_EQ(r["code"], "bad_request");
  r = c.call({{"type", "teleport"}});
  EXPECT_EQ(r["code"], "bad_request");
  EXPECT_NE(r["message"].get<std::string>().find("teleport"), std::string::npos);
  r = c.call({{"type", "submit"}, {"job", {{"model", "fake"}, {"width", -5}, {"height", 24}, {"frames", 9}, {"steps", 1}}}});
  EXPECT_EQ(r["code"], "bad_request");
  EXPECT_EQ(c.call({{"type", "list"}})["type"], "jobs");  // the session survives all of it
}

TEST_F(MalformedInput, UnknownVersionAndMissingHelloCloseTheConnection) {
  {
    RawClient c(daemon_->socket());
    json r = c.hello(99);
    EXPECT_EQ(r["code"], "unsupported_version");
    EXPECT_NE(r["message"].get<std::string>().find("99"), std::string::npos);
    EXPECT_FALSE(c.receive().has_value());
  }
  {
    RawClient c(daemon_->socket());
    json r = c.call({{"type", "list"}});
    EXPECT_EQ(r["code"], "hello_required");
    EXPECT_FALSE(c.receive().has_value());
  }
  {
    RawClient c(daemon_->socket());
    json r = c.call({{"type", "hello"}, {"version", "one"}});
    EXPECT_EQ(r["code"], "bad_request");
  }
  expect_served();
}

TEST_F(MalformedInput, UnknownJobIdIsNotFound) {
  RawClient c(daemon_->socket());
  c.hello();
  for (const char* type : {"status", "cancel", "watch", "fetch"}) {
    json r = c.call({{"type", type}, {"job", "j-987654"}});
    EXPECT_EQ(r["code"], "not_found") << type << ": " << r.dump();
  }
}

}  // namespace
}  // namespace wand::test
