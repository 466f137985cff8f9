#include "model/video.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <memory>
#include <mutex>

#include "common/error.h"
#include "common/image_magic.h"
#include "common/log.h"

#ifdef WAND_HAVE_LIBAV
extern "C" {
#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavformat/avio.h>
#include <libavutil/cpu.h>
#include <libavutil/imgutils.h>
#include <libavutil/opt.h>
#include <libswscale/swscale.h>
}
#endif

namespace wand::model {

namespace {

void check_frames(const VideoFrames& v, const char* what) {
  if (v.frames <= 0 || v.height <= 0 || v.width <= 0) {
    throw Error(ErrorCode::kBadRequest, std::string(what) + ": empty video " + std::to_string(v.frames) +
                                            "x" + std::to_string(v.height) + "x" + std::to_string(v.width));
  }
  const auto want = static_cast<uint64_t>(v.frames) * v.height * v.width * 3;
  if (v.rgb.size() != want) {
    throw Error(ErrorCode::kBadRequest, std::string(what) + ": " + std::to_string(v.rgb.size()) +
                                            " bytes of RGB for " + std::to_string(v.frames) + " frames of " +
                                            std::to_string(v.width) + "x" + std::to_string(v.height) +
                                            " (expected " + std::to_string(want) + ")");
  }
}

// ---- AVI (Note [Lossless video fallback]) -----------------------------------

void put_u32(std::vector<uint8_t>& b, uint32_t v) {
  for (int i = 0; i < 4; ++i) b.push_back(static_cast<uint8_t>(v >> (8 * i)));
}
void put_u16(std::vector<uint8_t>& b, uint16_t v) {
  b.push_back(static_cast<uint8_t>(v));
  b.push_back(static_cast<uint8_t>(v >> 8));
}
void put_cc(std::vector<uint8_t>& b, const char* cc) {
  for (int i = 0; i < 4; ++i) b.push_back(static_cast<uint8_t>(cc[i]));
}
void set_u32(std::vector<uint8_t>& b, size_t at, uint32_t v) {
  for (int i = 0; i < 4; ++i) b[at + i] = static_cast<uint8_t>(v >> (8 * i));
}
uint32_t get_u32(const std::vector<uint8_t>& b, size_t at) {
  if (at + 4 > b.size()) throw Error(ErrorCode::kBadRequest, "avi: truncated at byte " + std::to_string(at));
  uint32_t v = 0;
  for (int i = 3; i >= 0; --i) v = (v << 8) | b[at + i];
  return v;
}
bool cc_is(const std::vector<uint8_t>& b, size_t at, const char* cc) {
  return at + 4 <= b.size() && std::memcmp(b.data() + at, cc, 4) == 0;
}

constexpr uint64_t kAviMaxBytes = 1ull << 30;

}  // namespace

std::vector<uint8_t> encode_avi_rgb(const VideoFrames& v, int fps) {
  check_frames(v, "avi");
  if (fps <= 0) throw Error(ErrorCode::kBadRequest, "avi: fps must be positive");
  const uint32_t row = static_cast<uint32_t>((v.width * 3 + 3) / 4 * 4);
  const uint64_t frame_bytes = static_cast<uint64_t>(row) * v.height;
  if (frame_bytes * v.frames > kAviMaxBytes) {
    throw Error(ErrorCode::kBadRequest, "avi: " + std::to_string(frame_bytes * v.frames) +
                                            " bytes of frames exceed the 1 GiB AVI 1.0 limit");
  }
  std::vector<uint8_t> b;
  b.reserve(static_cast<size_t>(frame_bytes * v.frames + 16 * v.frames + 512));
  put_cc(b, "RIFF");
  put_u32(b, 0);  // patched
  put_cc(b, "AVI ");
  put_cc(b, "LIST");
  const size_t hdrl_size_at = b.size();
  put_u32(b, 0);
  put_cc(b, "hdrl");
  put_cc(b, "avih");
  put_u32(b, 56);
  put_u32(b, static_cast<uint32_t>(1000000 / fps));             // dwMicroSecPerFrame
  put_u32(b, static_cast<uint32_t>(frame_bytes * fps));         // dwMaxBytesPerSec
  put_u32(b, 0);                                                // dwPaddingGranularity
  put_u32(b, 0x10);                                             // AVIF_HASINDEX
  put_u32(b, static_cast<uint32_t>(v.frames));                  // dwTotalFrames
  put_u32(b, 0);                                                // dwInitialFrames
  put_u32(b, 1);                                                // dwStreams
  put_u32(b, static_cast<uint32_t>(frame_bytes));               // dwSuggestedBufferSize
  put_u32(b, static_cast<uint32_t>(v.width));
  put_u32(b, static_cast<uint32_t>(v.height));
  for (int i = 0; i < 4; ++i) put_u32(b, 0);
  put_cc(b, "LIST");
  const size_t strl_size_at = b.size();
  put_u32(b, 0);
  put_cc(b, "strl");
  put_cc(b, "strh");
  put_u32(b, 56);
  put_cc(b, "vids");
  put_cc(b, "DIB ");
  put_u32(b, 0);   // dwFlags
  put_u16(b, 0);   // wPriority
  put_u16(b, 0);   // wLanguage
  put_u32(b, 0);   // dwInitialFrames
  put_u32(b, 1);   // dwScale
  put_u32(b, static_cast<uint32_t>(fps));  // dwRate
  put_u32(b, 0);   // dwStart
  put_u32(b, static_cast<uint32_t>(v.frames));  // dwLength
  put_u32(b, static_cast<uint32_t>(frame_bytes));
  put_u32(b, 0xFFFFFFFFu);  // dwQuality
  put_u32(b, static_cast<uint32_t>(frame_bytes));  // dwSampleSize
  put_u16(b, 0);
  put_u16(b, 0);
  put_u16(b, static_cast<uint16_t>(v.width));
  put_u16(b, static_cast<uint16_t>(v.height));
  put_cc(b, "strf");
  put_u32(b, 40);
  put_u32(b, 40);                                    // biSize
  put_u32(b, static_cast<uint32_t>(v.width));        // biWidth
  put_u32(b, static_cast<uint32_t>(v.height));       // biHeight > 0: bottom-up
  put_u16(b, 1);                                     // biPlanes
  put_u16(b, 24);                                    // biBitCount
  put_u32(b, 0);                                     // BI_RGB
  put_u32(b, static_cast<uint32_t>(frame_bytes));    // biSizeImage
  for (int i = 0; i < 4; ++i) put_u32(b, 0);
  set_u32(b, strl_size_at, static_cast<uint32_t>(b.size() - strl_size_at - 4));
  set_u32(b, hdrl_size_at, static_cast<uint32_t>(b.size() - hdrl_size_at - 4));
  put_cc(b, "LIST");
  const size_t movi_size_at = b.size();
  put_u32(b, 0);
  const size_t movi_at = b.size();
  put_cc(b, "movi");
  std::vector<uint32_t> offsets;
  const size_t frame_px = static_cast<size_t>(v.height * v.width * 3);
  for (int64_t f = 0; f < v.frames; ++f) {
    offsets.push_back(static_cast<uint32_t>(b.size() - movi_at));
    put_cc(b, "00db");
    put_u32(b, static_cast<uint32_t>(frame_bytes));
    const uint8_t* src = v.rgb.data() + f * frame_px;
    for (int64_t y = v.height - 1; y >= 0; --y) {
      const uint8_t* r = src + y * v.width * 3;
      for (int64_t x = 0; x < v.width; ++x) {
        b.push_back(r[3 * x + 2]);
        b.push_back(r[3 * x + 1]);
        b.push_back(r[3 * x + 0]);
      }
      for (uint32_t p = static_cast<uint32_t>(v.width * 3); p < row; ++p) b.push_back(0);
    }
  }
  set_u32(b, movi_size_at, static_cast<uint32_t>(b.size() - movi_size_at - 4));
  put_cc(b, "idx1");
  put_u32(b, static_cast<uint32_t>(16 * v.frames));
  for (uint32_t off : offsets) {
    put_cc(b, "00db");
    put_u32(b, 0x10);  // AVIIF_KEYFRAME
    put_u32(b, off);
    put_u32(b, static_cast<uint32_t>(frame_bytes));
  }
  set_u32(b, 4, static_cast<uint32_t>(b.size() - 8));
  return b;
}

VideoFrames read_avi_rgb(const std::vector<uint8_t>& b, int* fps) {
  if (!cc_is(b, 0, "RIFF") || !cc_is(b, 8, "AVI ")) {
    throw Error(ErrorCode::kBadRequest, "avi: not a RIFF AVI file");
  }
  VideoFrames v;
  size_t movi = 0;
  uint32_t bits = 0, compression = 1;
  // Walk the chunks of RIFF and its LISTs (hdrl, strl, movi).
  std::vector<std::pair<size_t, size_t>> stack{{12, std::min<size_t>(b.size(), 8 + get_u32(b, 4))}};
  while (!stack.empty()) {
    auto& [pos, end] = stack.back();
    if (pos + 8 > end) {
      stack.pop_back();
      continue;
    }
    const size_t at = pos;
    const uint32_t size = get_u32(b, at + 4);
    const size_t next = at + 8 + size + (size & 1);
    if (at + 8 + size > b.size()) throw Error(ErrorCode::kBadRequest, "avi: chunk past the end of the file");
    pos = next;
    if (cc_is(b, at, "LIST")) {
      if (cc_is(b, at + 8, "movi")) {
        movi = at + 8;
      } else {
        stack.push_back({at + 12, at + 8 + size});
      }
    } else if (cc_is(b, at, "avih") && size >= 40) {
      v.frames = get_u32(b, at + 8 + 16);
      if (fps) {
        const uint32_t us = get_u32(b, at + 8);
        *fps = us ? static_cast<int>((1000000 + us / 2) / us) : 0;
      }
    } else if (cc_is(b, at, "strf") && size >= 40) {
      v.width = static_cast<int32_t>(get_u32(b, at + 12));
      v.height = static_cast<int32_t>(get_u32(b, at + 16));
      bits = get_u32(b, at + 20) >> 16;
      compression = get_u32(b, at + 24);
    }
  }
  if (movi == 0 || bits != 24 || compression != 0 || v.width <= 0 || v.height <= 0 || v.frames <= 0) {
    throw Error(ErrorCode::kBadRequest, "avi: not an uncompressed 24-bit AVI written by wand");
  }
  const int64_t row = (v.width * 3 + 3) / 4 * 4;
  const size_t frame_px = static_cast<size_t>(v.height * v.width * 3);
  v.rgb.resize(frame_px * v.frames);
  size_t pos = movi + 4;
  for (int64_t f = 0; f < v.frames; ++f) {
    while (pos + 8 <= b.size() && !cc_is(b, pos, "00db")) pos += 8 + get_u32(b, pos + 4);
    if (pos + 8 > b.size()) throw Error(ErrorCode::kBadRequest, "avi: frame " + std::to_string(f) + " missing");
    const uint32_t size = get_u32(b, pos + 4);
    if (size != row * v.height || pos + 8 + size > b.size()) {
      throw Error(ErrorCode::kBadRequest, "avi: frame " + std::to_string(f) + " has " +
                                              std::to_string(size) + " bytes");
    }
    const uint8_t* src = b.data() + pos + 8;
    uint8_t* dst = v.rgb.data() + f * frame_px;
    for (int64_t y = 0; y < v.height; ++y) {
      const uint8_t* r = src + (v.height - 1 - y) * row;
      for (int64_t x = 0; x < v.width; ++x) {
        dst[(y * v.width + x) * 3 + 0] = r[3 * x + 2];
        dst[(y * v.width + x) * 3 + 1] = r[3 * x + 1];
        dst[(y * v.width + x) * 3 + 2] = r[3 * x + 0];
      }
    }
    pos += 8 + size + (size & 1);
  }
  return v;
}

void write_all(int fd, const std::vector<uint8_t>& bytes, const std::string& what) {
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw Error(ErrorCode::kIo, "write " + what + " to fd " + std::to_string(fd) + ": " +
                                      std::strerror(errno));
    }
    done += static_cast<size_t>(n);
  }
}

#ifdef WAND_HAVE_LIBAV

namespace {

std::string av_err(int e) {
  char buf[AV_ERROR_MAX_STRING_SIZE] = {0};
  av_strerror(e, buf, sizeof(buf));
  return buf;
}

void check_av(int rc, const std::string& what) {
  if (rc < 0) throw Error(ErrorCode::kInternal, "libav " + what + ": " + av_err(rc));
}

// Growable in-memory output with seek (the mp4 muxer rewrites moov sizes).
struct MemSink {
  std::vector<uint8_t> data;
  int64_t pos = 0;
};

int sink_write(void* opaque, uint8_t* buf, int n) {  // FFmpeg 5.x: uint8_t*; 6.1+: const uint8_t*
  auto* s = static_cast<MemSink*>(opaque);
  const auto end = static_cast<size_t>(s->pos + n);
  if (end > s->data.size()) s->data.resize(end);
  std::memcpy(s->data.data() + s->pos, buf, static_cast<size_t>(n));
  s->pos += n;
  return n;
}

int64_t sink_seek(void* opaque, int64_t off, int whence) {
  auto* s = static_cast<MemSink*>(opaque);
  whence &= ~AVSEEK_FORCE;
  if (whence == AVSEEK_SIZE) return static_cast<int64_t>(s->data.size());
  int64_t p = whence == SEEK_SET ? off : whence == SEEK_CUR ? s->pos + off : static_cast<int64_t>(s->data.size()) + off;
  if (p < 0) return -1;
  s->pos = p;
  return p;
}

struct MemSource {
  const uint8_t* data;
  int64_t size;
  int64_t pos = 0;
};

int source_read(void* opaque, uint8_t* buf, int n) {
  auto* s = static_cast<MemSource*>(opaque);
  const int64_t left = s->size - s->pos;
  if (left <= 0) return AVERROR_EOF;
  const int k = static_cast<int>(std::min<int64_t>(left, n));
  std::memcpy(buf, s->data + s->pos, static_cast<size_t>(k));
  s->pos += k;
  return k;
}

int64_t source_seek(void* opaque, int64_t off, int whence) {
  auto* s = static_cast<MemSource*>(opaque);
  whence &= ~AVSEEK_FORCE;
  if (whence == AVSEEK_SIZE) return s->size;
  int64_t p = whence == SEEK_SET ? off : whence == SEEK_CUR ? s->pos + off : s->size + off;
  if (p < 0 || p > s->size) return -1;
  s->pos = p;
  return p;
}

struct AvioDeleter {
  void operator()(AVIOContext* c) const {
    if (c) {
      av_freep(&c->buffer);
      avio_context_free(&c);
    }
  }
};
struct FrameDeleter {
  void operator()(AVFrame* f) const { av_frame_free(&f); }
};
struct PacketDeleter {
  void operator()(AVPacket* p) const { av_packet_free(&p); }
};
struct CodecDeleter {
  void operator()(AVCodecContext* c) const { avcodec_free_context(&c); }
};
struct SwsDeleter {
  void operator()(SwsContext* c) const { sws_freeContext(c); }
};
using AvioPtr = std::unique_ptr<AVIOContext, AvioDeleter>;
using FramePtr = std::unique_ptr<AVFrame, FrameDeleter>;
using PacketPtr = std::unique_ptr<AVPacket, PacketDeleter>;
using CodecPtr = std::unique_ptr<AVCodecContext, CodecDeleter>;
using SwsPtr = std::unique_ptr<SwsContext, SwsDeleter>;

constexpr int kIoBuffer = 1 << 16;
constexpr int kSwsFlags = SWS_BICUBIC | SWS_ACCURATE_RND | SWS_FULL_CHR_H_INT | SWS_BITEXACT;

// libx264 and swscale log statistics at info level on every encode.
void quiet_libav() {
  static std::once_flag once;
  std::call_once(once, [] { av_log_set_level(AV_LOG_ERROR); });
}

// Note [x264 AVX-512]: libx264 0.164 (Debian 12's libx264-164, used through
// libavcodec 59) does not give the same bytes for the same frames when it runs
// its AVX-512 kernels: on an AVX-512 CPU (cpu capabilities "... AVX2 AVX512"),
// the tiny t2v frames of seeds 13 and 14 (64x64, 5 frames, crf 10, medium)
// encoded 6 times in one process gave 2-3 different streams, with 1 or 4
// threads alike, while the YUV planes handed to x264 hashed identically every
// time; seed 11's frames happened to be stable. With "asm=" naming the same
// capabilities minus AVX512 (or any non-AVX-512 set, or under valgrind, which
// hides AVX-512) every encode was identical. So on a CPU with AVX-512, x264 is
// given exactly what it detects there less AVX512 (every AVX-512 CPU has these):
// same frames, same bytes; the cost is a little encode speed. Checked by
// tests/model/determinism_test.cpp.
std::string x264_asm_without_avx512() {
  const int f = av_get_cpu_flags();
  const int need = AV_CPU_FLAG_AVX512 | AV_CPU_FLAG_AVX2 | AV_CPU_FLAG_FMA3 | AV_CPU_FLAG_BMI2;
  if ((f & need) != need) return "";
  return "MMX2,SSE2Fast,SSSE3,SSE4.2,AVX,FMA3,BMI2,AVX2";
}

const AVCodec* find_mp4_encoder() {
  for (const char* name : {"libx264", "libopenh264", "h264_v4l2m2m"}) {
    if (const AVCodec* c = avcodec_find_encoder_by_name(name)) return c;
  }
  return avcodec_find_encoder(AV_CODEC_ID_MPEG4);
}

FramePtr rgb_frame(const uint8_t* rgb, int w, int h) {
  FramePtr f(av_frame_alloc());
  f->format = AV_PIX_FMT_RGB24;
  f->width = w;
  f->height = h;
  check_av(av_frame_get_buffer(f.get(), 0), "frame buffer");
  for (int y = 0; y < h; ++y) std::memcpy(f->data[0] + y * f->linesize[0], rgb + y * w * 3, static_cast<size_t>(w) * 3);
  return f;
}

// Sends `frame` (nullptr: flush) and muxes every packet that comes out.
void encode_and_mux(AVCodecContext* cc, AVFrame* frame, AVFormatContext* oc, AVStream* st) {
  check_av(avcodec_send_frame(cc, frame), "send frame");
  PacketPtr pkt(av_packet_alloc());
  for (;;) {
    const int rc = avcodec_receive_packet(cc, pkt.get());
    if (rc == AVERROR(EAGAIN) || rc == AVERROR_EOF) return;
    check_av(rc, "receive packet");
    // One frame per packet: without a duration the mp4 edit list would end
    // at the last frame's start and players would drop that frame.
    if (pkt->duration <= 0) pkt->duration = 1;
    av_packet_rescale_ts(pkt.get(), cc->time_base, st->time_base);
    pkt->stream_index = st->index;
    check_av(av_interleaved_write_frame(oc, pkt.get()), "write packet");
  }
}

// Opens `bytes` as an input, decodes its first video stream and calls
// on_frame(AVFrame*) for every decoded frame.
template <class F>
void decode_all(const std::vector<uint8_t>& bytes, const char* what, F&& on_frame) {
  if (bytes.empty()) throw Error(ErrorCode::kBadRequest, std::string(what) + ": no bytes");
  quiet_libav();
  MemSource src{bytes.data(), static_cast<int64_t>(bytes.size())};
  auto* buf = static_cast<uint8_t*>(av_malloc(kIoBuffer));
  AvioPtr avio(avio_alloc_context(buf, kIoBuffer, 0, &src, source_read, nullptr, source_seek));
  AVFormatContext* ic = avformat_alloc_context();
  ic->pb = avio.get();
  ic->flags |= AVFMT_FLAG_CUSTOM_IO;
  // As Note [Image bytes only] says for images: the bytes are read from memory and
  // may open nothing else (no protocol at all: a concat playlist or an HLS list
  // fails), and only the video containers the tests and tools read are probed.
  AVDictionary* opts = nullptr;
  av_dict_set(&opts, "protocol_whitelist", "none", 0);
  av_dict_set(&opts, "format_whitelist", "mov,mp4,m4a,3gp,3g2,mj2,avi,matroska,webm", 0);
  int rc = avformat_open_input(&ic, nullptr, nullptr, &opts);
  av_dict_free(&opts);
  if (rc < 0) {
    throw Error(ErrorCode::kBadRequest, std::string(what) + ": not a recognised format (" + av_err(rc) + ")");
  }
  struct InputCloser {
    AVFormatContext** ic;
    ~InputCloser() { avformat_close_input(ic); }
  } closer{&ic};
  rc = avformat_find_stream_info(ic, nullptr);
  if (rc < 0) throw Error(ErrorCode::kBadRequest, std::string(what) + ": " + av_err(rc));
  const AVCodec* dec = nullptr;
  const int si = av_find_best_stream(ic, AVMEDIA_TYPE_VIDEO, -1, -1, &dec, 0);
  if (si < 0 || !dec) throw Error(ErrorCode::kBadRequest, std::string(what) + ": no video/image stream");
  CodecPtr dc(avcodec_alloc_context3(dec));
  check_av(avcodec_parameters_to_context(dc.get(), ic->streams[si]->codecpar), "decoder parameters");
  dc->thread_count = 1;
  rc = avcodec_open2(dc.get(), dec, nullptr);
  if (rc < 0) throw Error(ErrorCode::kBadRequest, std::string(what) + ": cannot open decoder: " + av_err(rc));
  PacketPtr pkt(av_packet_alloc());
  FramePtr frame(av_frame_alloc());
  auto drain = [&]() {
    for (;;) {
      const int r = avcodec_receive_frame(dc.get(), frame.get());
      if (r == AVERROR(EAGAIN) || r == AVERROR_EOF) return;
      if (r < 0) throw Error(ErrorCode::kBadRequest, std::string(what) + ": decode: " + av_err(r));
      on_frame(frame.get());
      av_frame_unref(frame.get());
    }
  };
  while ((rc = av_read_frame(ic, pkt.get())) >= 0) {
    if (pkt->stream_index == si) {
      for (;;) {
        const int s = avcodec_send_packet(dc.get(), pkt.get());
        if (s == AVERROR(EAGAIN)) {  // decoder full: take frames out, then resend
          drain();
          continue;
        }
        if (s < 0) {
          av_packet_unref(pkt.get());
          throw Error(ErrorCode::kBadRequest, std::string(what) + ": decode: " + av_err(s));
        }
        break;
      }
      drain();
    }
    av_packet_unref(pkt.get());
  }
  avcodec_send_packet(dc.get(), nullptr);
  drain();
}

// Converts a decoded frame to packed RGB24 (bit-exact swscale flags).
void frame_to_rgb(const AVFrame* f, uint8_t* dst) {
  SwsPtr sws(sws_getContext(f->width, f->height, static_cast<AVPixelFormat>(f->format), f->width, f->height,
                            AV_PIX_FMT_RGB24, kSwsFlags, nullptr, nullptr, nullptr));
  if (!sws) throw Error(ErrorCode::kBadRequest, "image: unsupported pixel format");
  uint8_t* planes[4] = {dst, nullptr, nullptr, nullptr};
  int strides[4] = {f->width * 3, 0, 0, 0};
  sws_scale(sws.get(), f->data, f->linesize, 0, f->height, planes, strides);
}

}  // namespace

bool have_libav() { return true; }


std::string mp4_encoder_name() {
  const AVCodec* c = find_mp4_encoder();
  return c ? c->name : "";
}

std::vector<uint8_t> encode_mp4(const VideoFrames& v, int fps, const Mp4Options& opt) {
  check_frames(v, "mp4");
  quiet_libav();
  if (v.width % 2 || v.height % 2) {
    throw Error(ErrorCode::kBadRequest, "mp4: yuv420p needs even sizes, got " + std::to_string(v.width) + "x" +
                                            std::to_string(v.height));
  }
  if (fps <= 0) throw Error(ErrorCode::kBadRequest, "mp4: fps must be positive");
  const AVCodec* codec = find_mp4_encoder();
  if (!codec) throw Error(ErrorCode::kConfig, "mp4: libavcodec has no H.264 or MPEG-4 encoder");
  const AVOutputFormat* ofmt = av_guess_format("mp4", nullptr, nullptr);
  if (!ofmt) throw Error(ErrorCode::kConfig, "mp4: libavformat has no mp4 muxer");

  MemSink sink;
  auto* buf = static_cast<uint8_t*>(av_malloc(kIoBuffer));
  AvioPtr avio(avio_alloc_context(buf, kIoBuffer, 1, &sink, nullptr, sink_write, sink_seek));
  AVFormatContext* oc = nullptr;
  check_av(avformat_alloc_output_context2(&oc, ofmt, nullptr, nullptr), "mp4 context");
  std::unique_ptr<AVFormatContext, void (*)(AVFormatContext*)> oc_guard(oc, avformat_free_context);
  oc->pb = avio.get();
  oc->flags |= AVFMT_FLAG_CUSTOM_IO | AVFMT_FLAG_BITEXACT;

  AVStream* st = avformat_new_stream(oc, nullptr);
  if (!st) throw Error(ErrorCode::kInternal, "mp4: cannot add a stream");
  CodecPtr cc(avcodec_alloc_context3(codec));
  cc->width = static_cast<int>(v.width);
  cc->height = static_cast<int>(v.height);
  cc->pix_fmt = AV_PIX_FMT_YUV420P;
  cc->time_base = AVRational{1, fps};
  cc->framerate = AVRational{fps, 1};
  cc->thread_count = opt.threads;
  cc->flags |= AV_CODEC_FLAG_BITEXACT;
  if (oc->oformat->flags & AVFMT_GLOBALHEADER) cc->flags |= AV_CODEC_FLAG_GLOBAL_HEADER;
  AVDictionary* copts = nullptr;
  if (std::string(codec->name) == "libx264") {
    av_dict_set(&copts, "crf", std::to_string(opt.crf).c_str(), 0);
    av_dict_set(&copts, "preset", opt.preset.c_str(), 0);
    const std::string cpu = x264_asm_without_avx512();  // Note [x264 AVX-512]
    if (!cpu.empty()) av_dict_set(&copts, "x264-params", ("asm=" + cpu).c_str(), 0);
  } else {
    cc->bit_rate = 0;
    cc->global_quality = FF_QP2LAMBDA * 2;
    cc->flags |= AV_CODEC_FLAG_QSCALE;
  }
  const int rc = avcodec_open2(cc.get(), codec, &copts);
  av_dict_free(&copts);
  check_av(rc, std::string("open encoder ") + codec->name);
  check_av(avcodec_parameters_from_context(st->codecpar, cc.get()), "stream parameters");
  st->time_base = cc->time_base;
  check_av(avformat_write_header(oc, nullptr), "mp4 header");

  SwsPtr sws(sws_getContext(cc->width, cc->height, AV_PIX_FMT_RGB24, cc->width, cc->height, AV_PIX_FMT_YUV420P,
                            SWS_BICUBIC | SWS_ACCURATE_RND | SWS_BITEXACT, nullptr, nullptr, nullptr));
  if (!sws) throw Error(ErrorCode::kInternal, "mp4: swscale context");
  FramePtr yuv(av_frame_alloc());
  yuv->format = AV_PIX_FMT_YUV420P;
  yuv->width = cc->width;
  yuv->height = cc->height;
  check_av(av_frame_get_buffer(yuv.get(), 0), "frame buffer");
  const size_t frame_px = static_cast<size_t>(v.width * v.height * 3);
  for (int64_t f = 0; f < v.frames; ++f) {
    check_av(av_frame_make_writable(yuv.get()), "frame writable");
    const uint8_t* src[4] = {v.rgb.data() + f * frame_px, nullptr, nullptr, nullptr};
    const int src_stride[4] = {static_cast<int>(v.width * 3), 0, 0, 0};
    sws_scale(sws.get(), src, src_stride, 0, cc->height, yuv->data, yuv->linesize);
    yuv->pts = f;
    encode_and_mux(cc.get(), yuv.get(), oc, st);
  }
  encode_and_mux(cc.get(), nullptr, oc, st);
  check_av(av_write_trailer(oc), "mp4 trailer");
  avio_flush(avio.get());
  return std::move(sink.data);
}

VideoFrames decode_video(const std::vector<uint8_t>& bytes) {
  VideoFrames v;
  decode_all(bytes, "video", [&](const AVFrame* f) {
    if (v.frames == 0) {
      v.width = f->width;
      v.height = f->height;
    } else if (f->width != v.width || f->height != v.height) {
      throw Error(ErrorCode::kBadRequest, "video: frame size changes mid-stream");
    }
    const size_t n = static_cast<size_t>(v.width * v.height * 3);
    v.rgb.resize(v.rgb.size() + n);
    frame_to_rgb(f, v.rgb.data() + v.rgb.size() - n);
    ++v.frames;
  });
  if (v.frames == 0) throw Error(ErrorCode::kBadRequest, "video: no frames decoded");
  return v;
}

// Note [Image bytes only]: client image bytes (i2v `image_b64`) are decoded with
// libavcodec alone, never libavformat. libavformat probes what it is given: bytes
// that read as an ffmpeg concat playlist ("ffconcat version 1.0\nfile x") make it
// open the named path (relative, absolute, file:, http:, a FIFO) with the
// daemon's rights, which both leaked other users' files into a job's input image
// and blocked the worker in open() on a FIFO (issue 15, items 1 and 2). So the
// format is sniffed from the magic bytes (common/image_magic.h: PNG, JPEG, WebP,
// BMP, PPM), anything else is bad_request before any library sees it, and the
// bytes go as one packet to that format's decoder, chosen by codec id: a decoder
// reads only the packet, has no protocols and opens no file, so decoding depends
// on nothing outside the request and cannot block. The error text says only that
// the bytes are no accepted image (never what a path would be). max_pixels bounds
// what a header can make the decoder allocate.
Image decode_image(const std::vector<uint8_t>& bytes) {
  if (bytes.empty()) throw Error(ErrorCode::kBadRequest, "image: no bytes");
  const ImageFormat fmt = sniff_image_format(bytes.data(), bytes.size());
  AVCodecID id = AV_CODEC_ID_NONE;
  switch (fmt) {
    case ImageFormat::kPng: id = AV_CODEC_ID_PNG; break;
    case ImageFormat::kJpeg: id = AV_CODEC_ID_MJPEG; break;
    case ImageFormat::kWebp: id = AV_CODEC_ID_WEBP; break;
    case ImageFormat::kBmp: id = AV_CODEC_ID_BMP; break;
    case ImageFormat::kPpm: id = AV_CODEC_ID_PPM; break;
    case ImageFormat::kUnknown: throw Error(ErrorCode::kBadRequest, std::string("image: ") + kImageFormatsText);
  }
  if (bytes.size() > static_cast<size_t>(INT32_MAX - AV_INPUT_BUFFER_PADDING_SIZE)) {
    throw Error(ErrorCode::kBadRequest, "image: " + std::to_string(bytes.size()) + " bytes is too large");
  }
  quiet_libav();
  const char* name = image_format_name(fmt);
  const AVCodec* dec = avcodec_find_decoder(id);
  if (!dec) throw Error(ErrorCode::kConfig, std::string("image: libavcodec has no ") + name + " decoder");
  CodecPtr dc(avcodec_alloc_context3(dec));
  if (!dc) throw Error(ErrorCode::kOutOfMemory, "image: cannot allocate a decoder");
  dc->thread_count = 1;
  dc->max_pixels = int64_t{16384} * 16384;
  int rc = avcodec_open2(dc.get(), dec, nullptr);
  if (rc < 0) throw Error(ErrorCode::kBadRequest, std::string("image: cannot open the ") + name + " decoder: " + av_err(rc));
  PacketPtr pkt(av_packet_alloc());
  check_av(av_new_packet(pkt.get(), static_cast<int>(bytes.size())), "image packet");
  std::memcpy(pkt->data, bytes.data(), bytes.size());
  pkt->flags |= AV_PKT_FLAG_KEY;
  rc = avcodec_send_packet(dc.get(), pkt.get());
  if (rc < 0) throw Error(ErrorCode::kBadRequest, std::string("image: undecodable ") + name + " (" + av_err(rc) + ")");
  avcodec_send_packet(dc.get(), nullptr);  // flush: the one picture comes out now
  FramePtr frame(av_frame_alloc());
  rc = avcodec_receive_frame(dc.get(), frame.get());
  if (rc < 0) throw Error(ErrorCode::kBadRequest, std::string("image: undecodable ") + name + " (" + av_err(rc) + ")");
  const AVFrame* f = frame.get();
  if (f->width <= 0 || f->height <= 0 || f->width > 16384 || f->height > 16384) {
    throw Error(ErrorCode::kBadRequest, "image: size " + std::to_string(f->width) + "x" +
                                            std::to_string(f->height) + " out of range");
  }
  Image img;
  img.width = f->width;
  img.height = f->height;
  img.rgb.resize(static_cast<size_t>(img.width * img.height * 3));
  frame_to_rgb(f, img.rgb.data());
  return img;
}

std::vector<uint8_t> encode_image(const Image& img, const std::string& format) {
  if (img.width <= 0 || img.height <= 0 || img.rgb.size() != static_cast<size_t>(img.width * img.height * 3)) {
    throw Error(ErrorCode::kBadRequest, "image: bad RGB buffer");
  }
  quiet_libav();
  const bool png = format == "png";
  if (!png && format != "jpeg") throw Error(ErrorCode::kBadRequest, "image: unknown format " + format);
  const AVCodec* codec = avcodec_find_encoder(png ? AV_CODEC_ID_PNG : AV_CODEC_ID_MJPEG);
  if (!codec) throw Error(ErrorCode::kConfig, "image: libavcodec has no " + format + " encoder");
  CodecPtr cc(avcodec_alloc_context3(codec));
  cc->width = static_cast<int>(img.width);
  cc->height = static_cast<int>(img.height);
  cc->pix_fmt = png ? AV_PIX_FMT_RGB24 : AV_PIX_FMT_YUVJ444P;
  cc->time_base = AVRational{1, 1};
  cc->flags |= AV_CODEC_FLAG_BITEXACT;
  if (!png) {
    cc->flags |= AV_CODEC_FLAG_QSCALE;
    cc->global_quality = FF_QP2LAMBDA * 2;
  }
  check_av(avcodec_open2(cc.get(), codec, nullptr), "open image encoder");
  FramePtr src = rgb_frame(img.rgb.data(), cc->width, cc->height);
  FramePtr frame;
  if (png) {
    frame = std::move(src);
  } else {
    frame.reset(av_frame_alloc());
    frame->format = cc->pix_fmt;
    frame->width = cc->width;
    frame->height = cc->height;
    check_av(av_frame_get_buffer(frame.get(), 0), "frame buffer");
    SwsPtr sws(sws_getContext(cc->width, cc->height, AV_PIX_FMT_RGB24, cc->width, cc->height, cc->pix_fmt,
                              SWS_BICUBIC | SWS_ACCURATE_RND | SWS_BITEXACT, nullptr, nullptr, nullptr));
    sws_scale(sws.get(), src->data, src->linesize, 0, cc->height, frame->data, frame->linesize);
  }
  frame->pts = 0;
  check_av(avcodec_send_frame(cc.get(), frame.get()), "send image");
  check_av(avcodec_send_frame(cc.get(), nullptr), "flush image");
  std::vector<uint8_t> out;
  PacketPtr pkt(av_packet_alloc());
  for (;;) {
    const int rc = avcodec_receive_packet(cc.get(), pkt.get());
    if (rc == AVERROR(EAGAIN) || rc == AVERROR_EOF) break;
    check_av(rc, "receive image");
    out.insert(out.end(), pkt->data, pkt->data + pkt->size);
    av_packet_unref(pkt.get());
  }
  return out;
}

#else  // !WAND_HAVE_LIBAV

bool have_libav() { return false; }
std::string mp4_encoder_name() { return ""; }

std::vector<uint8_t> encode_mp4(const VideoFrames&, int, const Mp4Options&) {
  throw Error(ErrorCode::kConfig, "mp4: built without ffmpeg's libraries (use encode_video: lossless AVI)");
}
VideoFrames decode_video(const std::vector<uint8_t>&) {
  throw Error(ErrorCode::kConfig, "video decode: built without ffmpeg's libraries");
}
Image decode_image(const std::vector<uint8_t>&) {
  throw Error(ErrorCode::kConfig, "image decode: built without ffmpeg's libraries; send raw RGB instead");
}
std::vector<uint8_t> encode_image(const Image&, const std::string&) {
  throw Error(ErrorCode::kConfig, "image encode: built without ffmpeg's libraries");
}

#endif

EncodedVideo encode_video(const VideoFrames& v, int fps) {
  EncodedVideo out;
  if (have_libav()) {
    out.bytes = encode_mp4(v, fps);
    out.extension = "mp4";
    out.mime = "video/mp4";
  } else {
    out.bytes = encode_avi_rgb(v, fps);
    out.extension = "avi";
    out.mime = "video/x-msvideo";
  }
  return out;
}

}  // namespace wand::model
