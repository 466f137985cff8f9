// Video and image I/O for the pipelines: mp4 (H.264 via ffmpeg's libraries,
// byte-identical for identical input), a lossless uncompressed-AVI fallback for
// builds without libav, and image decoding (PNG, JPEG, ... via libav).
//
//   VideoFrames v = video_frames_from_tensor(decoded);   // model/video_frames.h
//   EncodedVideo out = encode_video(v, 16);               // mp4 with libav, else .avi
//   write_all(fd, out.bytes);
//   Image img = decode_image(png_bytes);                  // [H, W, 3] RGB
//
// No LibTorch here. Functions are reentrant (any thread); libav state is per call.
//
// Note [Lossless video fallback]: without libav (the GPU build) videos are
// written as an uncompressed AVI 1.0 file: RIFF 'AVI ', one video stream
// 'vids'/'DIB ', BITMAPINFOHEADER 24-bit BI_RGB, one '00db' chunk per frame
// holding the frame bottom-up in BGR byte order with rows padded to 4 bytes,
// and an 'idx1' index (every frame a key frame). It is exactly lossless, plays
// in ffmpeg/VLC/mpv, and is limited to 1 GiB of frame data (AVI 1.0 RIFF size).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace wand::model {

// Frames [F, H, W, 3] RGB, row-major, uint8.
struct VideoFrames {
  int64_t frames = 0;
  int64_t height = 0;
  int64_t width = 0;
  std::vector<uint8_t> rgb;  // frames * height * width * 3 bytes
};

// One image [H, W, 3] RGB, row-major, uint8.
struct Image {
  int64_t height = 0;
  int64_t width = 0;
  std::vector<uint8_t> rgb;
};

struct Mp4Options {
  int crf = 10;                     // the official save_video: imageio quality 8 -> crf 10
  std::string preset = "medium";    // x264 preset
  int threads = 4;                  // fixed, so the bytes do not depend on the machine
};

struct EncodedVideo {
  std::vector<uint8_t> bytes;
  std::string extension;  // "mp4" or "avi"
  std::string mime;       // "video/mp4" or "video/x-msvideo"
};

// True when built with ffmpeg's libraries (WAND_HAVE_LIBAV).
bool have_libav();

// H.264 (libx264 when present, else the best H.264 / MPEG-4 encoder) in mp4,
// yuv420p, no wall-clock timestamps, bit-exact flags, fixed threading, no x264
// AVX-512 kernels (Note [x264 AVX-512] in video.cpp: same frames, same bytes).
// Throws wand::Error(kConfig) without libav, kBadRequest on odd sizes or no frames.
std::vector<uint8_t> encode_mp4(const VideoFrames& v, int fps, const Mp4Options& opt = {});
// The name of the encoder encode_mp4 uses ("libx264"), or "" without libav.
std::string mp4_encoder_name();

// Lossless fallback (Note [Lossless video fallback]); always available.
std::vector<uint8_t> encode_avi_rgb(const VideoFrames& v, int fps);
// Reads a file written by encode_avi_rgb back (exact); kBadRequest on anything else.
VideoFrames read_avi_rgb(const std::vector<uint8_t>& bytes, int* fps = nullptr);

// mp4 with libav, else the lossless AVI.
EncodedVideo encode_video(const VideoFrames& v, int fps);

// Decodes a video (mp4/mov, AVI, Matroska/WebM) into RGB frames (tests, tools); no
// protocol is allowed, so the bytes cannot make libav open anything.
// Throws kConfig without libav, kBadRequest on undecodable bytes.
VideoFrames decode_video(const std::vector<uint8_t>& bytes);
// Decodes one image to RGB; alpha is dropped. Only PNG, JPEG, WebP, BMP and PPM,
// told by their magic bytes and decoded by that format's libavcodec decoder alone
// (no libavformat: Note [Image bytes only] in video.cpp); anything else, and
// undecodable bytes, throw kBadRequest. Throws kConfig without libav.
Image decode_image(const std::vector<uint8_t>& bytes);
// Encodes an image: "png" (rgb24, lossless) or "jpeg" (yuvj444p, quality 2).
// Throws kConfig without libav.
std::vector<uint8_t> encode_image(const Image& img, const std::string& format = "png");

// Writes every byte to fd (retrying short writes); throws kIo naming `what`.
void write_all(int fd, const std::vector<uint8_t>& bytes, const std::string& what = "video");

}  // namespace wand::model
