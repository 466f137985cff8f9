// Which image format a byte string is, from its first bytes only (no library, no
// I/O). The daemon decodes client image bytes only in a format named here, with
// that format's decoder alone (Note [Image bytes only], model/video.cpp).
//
//   ImageFormat f = sniff_image_format(bytes.data(), bytes.size());
//   if (f == ImageFormat::kUnknown) throw Error(kBadRequest, "image: " + std::string(kImageFormatsText));
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace wand {

enum class ImageFormat { kUnknown, kPng, kJpeg, kWebp, kBmp, kPpm };

inline const char* image_format_name(ImageFormat f) {
  switch (f) {
    case ImageFormat::kPng: return "png";
    case ImageFormat::kJpeg: return "jpeg";
    case ImageFormat::kWebp: return "webp";
    case ImageFormat::kBmp: return "bmp";
    case ImageFormat::kPpm: return "ppm";
    default: return "unknown";
  }
}

// The message for bytes of no accepted format. It says nothing of the bytes (they
// are the client's own) and never what they might name.
constexpr const char* kImageFormatsText = "not a PNG, JPEG, WebP, BMP or binary PPM (P6) image";

inline ImageFormat sniff_image_format(const std::uint8_t* b, std::size_t n) {
  static const std::uint8_t kPngSig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  if (n >= 8 && std::memcmp(b, kPngSig, 8) == 0) return ImageFormat::kPng;
  if (n >= 3 && b[0] == 0xff && b[1] == 0xd8 && b[2] == 0xff) return ImageFormat::kJpeg;
  if (n >= 12 && std::memcmp(b, "RIFF", 4) == 0 && std::memcmp(b + 8, "WEBP", 4) == 0) return ImageFormat::kWebp;
  // BITMAPFILEHEADER ("BM") followed by a BITMAPINFOHEADER-family size (12..124).
  if (n >= 18 && b[0] == 'B' && b[1] == 'M') {
    const std::uint32_t hs = b[14] | (b[15] << 8) | (b[16] << 16) | (static_cast<std::uint32_t>(b[17]) << 24);
    if (hs >= 12 && hs <= 124) return ImageFormat::kBmp;
  }
  if (n >= 3 && b[0] == 'P' && b[1] == '6' && (b[2] == ' ' || b[2] == '\n' || b[2] == '\t' || b[2] == '\r')) {
    return ImageFormat::kPpm;
  }
  return ImageFormat::kUnknown;
}

}  // namespace wand
