// Video and image I/O: mp4 determinism and round trip through libav, the
// lossless AVI fallback, image decode of PNG/JPEG bytes, and the exact
// tensor -> uint8 conversion of the official save_video.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>

#include "common/error.h"
#include "model/video.h"
#include "model/video_frames.h"

namespace {

using namespace wand::model;

// A smooth moving gradient with a sharp square: compressible but not trivial.
VideoFrames test_video(int64_t frames, int64_t h, int64_t w) {
  VideoFrames v;
  v.frames = frames;
  v.height = h;
  v.width = w;
  v.rgb.resize(static_cast<size_t>(frames * h * w * 3));
  for (int64_t f = 0; f < frames; ++f) {
    for (int64_t y = 0; y < h; ++y) {
      for (int64_t x = 0; x < w; ++x) {
        uint8_t* p = &v.rgb[((f * h + y) * w + x) * 3];
        p[0] = static_cast<uint8_t>((x * 255) / (w - 1));
        p[1] = static_cast<uint8_t>((y * 255) / (h - 1));
        p[2] = static_cast<uint8_t>((f * 37) % 256);
        const bool square = x >= 8 + 2 * f && x < 24 + 2 * f && y >= 8 && y < 24;
        if (square) p[0] = p[1] = p[2] = 250;
      }
    }
  }
  return v;
}

double mean_abs_diff(const std::vector<uint8_t>& a, const std::vector<uint8_t>& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += std::abs(static_cast<int>(a[i]) - static_cast<int>(b[i]));
  return s / static_cast<double>(a.size());
}

TEST(Video, Mp4IsByteIdenticalAndDecodesBack) {
  if (!have_libav()) GTEST_SKIP() << "built without libav";
  const VideoFrames v = test_video(9, 64, 96);
  const auto a = encode_mp4(v, 16);
  const auto b = encode_mp4(v, 16);
  ASSERT_GT(a.size(), 100u);
  EXPECT_EQ(a, b) << "two encodes of the same frames differ";
  // No wall-clock creation time: the mvhd box carries 0.
  const std::string bytes(a.begin(), a.end());
  EXPECT_EQ(bytes.find("Lavf"), std::string::npos) << "encoder tag present despite bitexact";
  std::printf("mp4 encoder=%s bytes=%zu\n", mp4_encoder_name().c_str(), a.size());

  const VideoFrames d = decode_video(a);
  EXPECT_EQ(d.frames, v.frames);
  EXPECT_EQ(d.height, v.height);
  EXPECT_EQ(d.width, v.width);
  ASSERT_EQ(d.rgb.size(), v.rgb.size());
  const double mad = mean_abs_diff(d.rgb, v.rgb);
  std::printf("mp4 round trip mean abs diff=%.3f (of 255)\n", mad);
  EXPECT_LT(mad, 4.0);  // crf 10 with 4:2:0 chroma: close, not exact

  // A different video gives different bytes (the test can fail).
  VideoFrames v2 = v;
  v2.rgb[0] ^= 0xFF;
  v2.rgb[1000] ^= 0xFF;
  EXPECT_NE(encode_mp4(v2, 16), a);
}

TEST(Video, Mp4RejectsBadInput) {
  if (!have_libav()) GTEST_SKIP() << "built without libav";
  VideoFrames odd = test_video(1, 33, 32);
  EXPECT_THROW(encode_mp4(odd, 16), wand::Error);
  VideoFrames short_buf = test_video(2, 32, 32);
  short_buf.rgb.resize(100);
  EXPECT_THROW(encode_mp4(short_buf, 16), wand::Error);
  EXPECT_THROW(decode_video(std::vector<uint8_t>{1, 2, 3, 4}), wand::Error);
}

TEST(Video, AviFallbackIsLossless) {
  const VideoFrames v = test_video(5, 30, 46);  // odd row bytes: exercises the 4-byte row padding
  const auto bytes = encode_avi_rgb(v, 24);
  int fps = 0;
  const VideoFrames back = read_avi_rgb(bytes, &fps);
  EXPECT_EQ(fps, 24);
  EXPECT_EQ(back.frames, v.frames);
  EXPECT_EQ(back.height, v.height);
  EXPECT_EQ(back.width, v.width);
  EXPECT_EQ(back.rgb, v.rgb);
  EXPECT_EQ(encode_avi_rgb(v, 24), bytes);
  if (have_libav()) {
    // Players read it too: libav's AVI demuxer + rawvideo decoder give the same pixels.
    const VideoFrames d = decode_video(bytes);
    EXPECT_EQ(d.frames, v.frames);
    EXPECT_EQ(d.rgb, v.rgb);
  }
  std::vector<uint8_t> truncated(bytes.begin(), bytes.begin() + static_cast<long>(bytes.size() / 2));
  EXPECT_THROW(read_avi_rgb(truncated), wand::Error);
}

TEST(Video, EncodeVideoPicksTheAvailableFormat) {
  const VideoFrames v = test_video(1, 16, 16);
  const EncodedVideo e = encode_video(v, 16);
  EXPECT_EQ(e.extension, have_libav() ? "mp4" : "avi");
  EXPECT_FALSE(e.bytes.empty());
}

TEST(Image, DecodesPngExactlyAndJpegApproximately) {
  if (!have_libav()) {
    EXPECT_THROW(decode_image(std::vector<uint8_t>{0x89, 'P', 'N', 'G'}), wand::Error);
    GTEST_SKIP() << "built without libav";
  }
  const VideoFrames v = test_video(1, 40, 56);
  Image img{v.height, v.width, v.rgb};
  const auto png = encode_image(img, "png");
  ASSERT_GT(png.size(), 8u);
  EXPECT_EQ(png[1], 'P');
  const Image back = decode_image(png);
  EXPECT_EQ(back.height, img.height);
  EXPECT_EQ(back.width, img.width);
  EXPECT_EQ(back.rgb, img.rgb);

  const auto jpg = encode_image(img, "jpeg");
  ASSERT_GT(jpg.size(), 2u);
  EXPECT_EQ(jpg[0], 0xFF);
  EXPECT_EQ(jpg[1], 0xD8);
  const Image j = decode_image(jpg);
  EXPECT_EQ(j.height, img.height);
  EXPECT_EQ(j.width, img.width);
  const double mad = mean_abs_diff(j.rgb, img.rgb);
  std::printf("jpeg round trip mean abs diff=%.3f\n", mad);
  EXPECT_LT(mad, 6.0);

  EXPECT_THROW(decode_image(std::vector<uint8_t>{}), wand::Error);
  std::vector<uint8_t> garbage(300, 0x5A);
  EXPECT_THROW(decode_image(garbage), wand::Error);
}

TEST(VideoFrames, ConversionMatchesSaveVideo) {
  // Values chosen around truncation boundaries; expected bytes from the fp32 chain.
  at::Tensor x = at::tensor({-2.0f, -1.0f, -0.5f, 0.0f, 0.003921569f, 0.5f, 0.99f, 1.0f, 3.0f}).view({1, 9, 1, 1});
  x = x.expand({3, 9, 1, 1}).contiguous();
  const VideoFrames v = video_frames_from_tensor(x);
  ASSERT_EQ(v.frames, 9);
  for (int64_t f = 0; f < 9; ++f) {
    const float xv = std::min(1.0f, std::max(-1.0f, x[0][f][0][0].item<float>()));
    const float u = (xv - (-1.0f)) / 2.0f;
    const auto want = static_cast<uint8_t>(u * 255.0f);
    EXPECT_EQ(v.rgb[f * 3], want) << "frame " << f;
  }
  EXPECT_EQ(v.rgb[0], 0);
  EXPECT_EQ(v.rgb[3 * 3], 127);  // 0 -> 127.5 -> 127 (truncation, not rounding)
  EXPECT_EQ(v.rgb[8 * 3], 255);
  EXPECT_THROW(video_frames_from_tensor(at::zeros({4, 1, 2, 2})), wand::Error);
}

}  // namespace
