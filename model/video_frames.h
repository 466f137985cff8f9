// Conversions between decoder tensors and the uint8 RGB frames of model/video.h.
//
//   VideoFrames v = video_frames_from_tensor(vae.decode(z));  // [3, F, H, W] in [-1, 1]
//   at::Tensor img = image_to_tensor(decode_image(bytes));    // [3, H, W] in [-1, 1]
//
// Free functions, any thread.
#pragma once

#include <ATen/ATen.h>

#include "model/video.h"

namespace wand::model {

// [3, F, H, W] (any float dtype/device) -> uint8 frames exactly as the official
// save_video: clamp to [-1, 1], u = (x - (-1)) / (1 - (-1)) as two fp32 ops,
// u * 255, truncation to uint8.
VideoFrames video_frames_from_tensor(const at::Tensor& video);
// uint8 frames -> [F, H, W, 3] uint8 tensor (a copy).
at::Tensor video_frames_to_tensor(const VideoFrames& v);
// RGB image -> [3, H, W] fp32 in [-1, 1]: (x / 255 - 0.5) / 0.5, as the ti2v pipeline.
at::Tensor image_to_tensor(const Image& img);

}  // namespace wand::model
