#include "model/video_frames.h"

#include <cstring>
#include <sstream>

#include "common/error.h"

namespace wand::model {

VideoFrames video_frames_from_tensor(const at::Tensor& video) {
  if (video.dim() != 4 || video.size(0) != 3) {
    std::ostringstream o;
    o << "video frames: expected [3, F, H, W], got " << video.sizes();
    throw Error(ErrorCode::kBadRequest, o.str());
  }
  at::Tensor x = video.to(at::kCPU, at::kFloat).clamp(-1.0, 1.0);
  x = x.sub(-1.0).div(2.0).mul(255.0).to(at::kByte);  // truncation, as tensor.type(torch.uint8)
  x = x.permute({1, 2, 3, 0}).contiguous();            // [F, H, W, 3]
  VideoFrames v;
  v.frames = x.size(0);
  v.height = x.size(1);
  v.width = x.size(2);
  v.rgb.resize(static_cast<size_t>(x.numel()));
  std::memcpy(v.rgb.data(), x.data_ptr<uint8_t>(), v.rgb.size());
  return v;
}

at::Tensor video_frames_to_tensor(const VideoFrames& v) {
  at::Tensor t = at::empty({v.frames, v.height, v.width, 3}, at::TensorOptions().dtype(at::kByte));
  if (static_cast<size_t>(t.numel()) != v.rgb.size()) {
    throw Error(ErrorCode::kBadRequest, "video frames: buffer does not match its shape");
  }
  std::memcpy(t.data_ptr<uint8_t>(), v.rgb.data(), v.rgb.size());
  return t;
}

at::Tensor image_to_tensor(const Image& img) {
  if (img.rgb.size() != static_cast<size_t>(img.height * img.width * 3) || img.height <= 0) {
    throw Error(ErrorCode::kBadRequest, "image: buffer does not match its shape");
  }
  at::Tensor t = at::empty({img.height, img.width, 3}, at::TensorOptions().dtype(at::kByte));
  std::memcpy(t.data_ptr<uint8_t>(), img.rgb.data(), img.rgb.size());
  return t.permute({2, 0, 1}).to(at::kFloat).div(255.0).sub(0.5).div(0.5).contiguous();
}

}  // namespace wand::model
