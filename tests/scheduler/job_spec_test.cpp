#include <gtest/gtest.h>

#include "common/error.h"
#include "scheduler/job_spec.h"

namespace wand::sched {
namespace {

JobSpec sample() {
  JobSpec s;
  s.task = "i2v";
  s.model = "tiny";
  s.prompt = "a cat";
  s.negative = "blurry";
  s.image = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n', 0, 1, 2, 250, 255};  // a PNG signature
  s.width = 64;
  s.height = 48;
  s.frames = 9;
  s.steps = 5;
  s.seed = 18446744073709551615ull;
  s.guide_scale = {3.0, 4.0};
  s.shift = 5.0;
  s.sampler = "dpm++";
  s.priority = 3;
  s.owner_uid = 1000;
  s.owner_gid = 100;
  return s;
}

TEST(JobSpec, JsonRoundTripKeepsEveryField) {
  JobSpec a = sample();
  JobSpec b = job_spec_from_json(nlohmann::json::parse(job_spec_to_json(a).dump()));
  EXPECT_EQ(b.task, a.task);
  EXPECT_EQ(b.model, a.model);
  EXPECT_EQ(b.prompt, a.prompt);
  EXPECT_EQ(b.negative, a.negative);
  EXPECT_EQ(b.image, a.image);
  EXPECT_EQ(b.width, a.width);
  EXPECT_EQ(b.height, a.height);
  EXPECT_EQ(b.frames, a.frames);
  EXPECT_EQ(b.steps, a.steps);
  EXPECT_EQ(b.seed, a.seed);
  EXPECT_EQ(b.guide_scale, a.guide_scale);
  ASSERT_TRUE(b.shift.has_value());
  EXPECT_EQ(*b.shift, 5.0);
  EXPECT_EQ(b.sampler, a.sampler);
  EXPECT_EQ(b.priority, a.priority);
  EXPECT_EQ(b.owner_uid, a.owner_uid);
  EXPECT_EQ(b.owner_gid, a.owner_gid);
  EXPECT_NO_THROW(validate_job_spec(b));
}

void expect_bad(const JobSpec& s, const std::string& needle) {
  try {
    validate_job_spec(s);
    ADD_FAILURE() << "accepted a spec that should fail on " << needle;
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kBadRequest);
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

TEST(JobSpec, ValidationNamesTheField) {
  JobSpec s = sample();
  s.task = "v2v";
  expect_bad(s, "'task'");
  s = sample();
  s.width = 0;
  expect_bad(s, "'width'");
  s = sample();
  s.steps = 5000;
  expect_bad(s, "'steps'");
  s = sample();
  s.sampler = "heun";
  expect_bad(s, "'sampler'");
  expect_bad(s, "unipc, dpm++, euler");
  s.sampler = "euler";  // the flow-matching Euler sampler (issue 18)
  EXPECT_NO_THROW(validate_job_spec(s));
  s = sample();
  s.image.clear();
  expect_bad(s, "'image'");
  s = sample();
  s.guide_scale = {1, 2, 3};
  expect_bad(s, "'guide_scale'");
  expect_bad(s, "(low noise, high noise)");
  // Note [Image bytes only]: bytes that are no image (here an ffmpeg playlist) are refused.
  s = sample();
  const std::string playlist = "ffconcat version 1.0\nfile /etc/passwd\n";
  s.image.assign(playlist.begin(), playlist.end());
  expect_bad(s, "not a PNG, JPEG");
}

TEST(JobSpec, AnInputImageMustBeAnImageFileByItsMagicBytes) {
  auto bytes = [](const std::string& s) { return std::vector<std::uint8_t>(s.begin(), s.end()); };
  EXPECT_STREQ(image_format(bytes("\x89PNG\r\n\x1a\n....")), "png");
  EXPECT_STREQ(image_format(bytes("\xff\xd8\xff\xe0..JFIF")), "jpeg");
  EXPECT_STREQ(image_format(bytes(std::string("RIFF\x10\0\0\0WEBPVP8 ", 16))), "webp");
  EXPECT_STREQ(image_format(bytes("P6\n2 2\n255\n............")), "ppm");
  EXPECT_STREQ(image_format(bytes("BM" + std::string(40, '\0'))), "bmp");
  EXPECT_EQ(image_format(bytes("ffconcat version 1.0\nfile secret.mp4\n")), nullptr);
  EXPECT_EQ(image_format(bytes("\x89PN")), nullptr);  // a truncated signature
  EXPECT_EQ(image_format(bytes(std::string("RIFF\x10\0\0\0AVI LIST", 16))), nullptr);
  EXPECT_EQ(image_format(bytes("P3\n2 2\n255\n")), nullptr);  // ASCII PPM: not decoded
  EXPECT_EQ(image_format({}), nullptr);

  JobSpec s = sample();
  s.image = bytes("ffconcat version 1.0\nfile secret.mp4\n");
  expect_bad(s, "not a PNG, JPEG");
  expect_bad(s, "66 66 63 6f");  // the first bytes, so the user sees what was sent
}

// The journal's spec is the wire's "job" object (common/job_request.h) and the owner: one
// mapping of the request's fields, not two.
TEST(JobSpec, JournalFormIsTheWireJobAndTheOwner) {
  const JobSpec s = sample();
  nlohmann::json j = job_spec_to_json(s);
  EXPECT_EQ(j.at("owner_uid"), 1000);
  EXPECT_EQ(j.at("owner_gid"), 100);
  j.erase("owner_uid");
  j.erase("owner_gid");
  EXPECT_EQ(j, job_request_to_json(s));

  // The owner is not part of the request: a wire job reads as a spec of owner 0.
  const JobSpec w = job_spec_from_json(job_request_to_json(s));
  EXPECT_EQ(w.owner_uid, 0u);
  EXPECT_EQ(w.owner_gid, 0u);
  EXPECT_EQ(job_request_to_json(w), job_request_to_json(s));
}

TEST(JobSpec, WrongTypesAreRejectedWithTheFieldName) {
  nlohmann::json j = job_spec_to_json(sample());
  j["frames"] = "nine";
  try {
    job_spec_from_json(j);
    FAIL() << "accepted a string for frames";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("'frames'"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace wand::sched
