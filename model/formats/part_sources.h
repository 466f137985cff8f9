// Opens a model's text encoder and VAE (formats::PartFiles from model_layout.h) as one
// TensorSource under the release names, whatever the layout stored them as: the release
// .pth as it is, text_encoder/ (transformers naming) and vae/ (diffusers naming) through a
// RenamedSource, which keeps each tensor's file path and byte offset (the streamed umT5
// reads byte ranges of the shards directly).
//
//   const formats::ModelLayout l = formats::detect_model_layout(dir);
//   std::unique_ptr<TensorSource> t5 = open_part(l.text_encoder());   // T5Encoder::load / T5Stream
//   std::unique_ptr<TensorSource> vae = open_part(l.vae("t2v"));       // VaeConfig::from_checkpoint, Vae
//
// Checked at open (Note [Diffusers VAE keys], Note [umT5 transformers keys]): a file key the
// map does not know fails naming the file and the key; for the VAE also a missing release
// key (named in the diffusers naming) and, through VaeConfig::from_checkpoint, a misshapen one
// (naming the file's key and the file). The stored dtype of each tensor is the file's
// (TensorInfo::dtype): the one place a reader learns it.
// Returns an owning source; any thread afterwards (TensorSource is immutable).
#pragma once

#include <memory>

#include "model/formats/model_layout.h"
#include "model/tensor_source.h"

namespace wand::model {

std::unique_ptr<TensorSource> open_part(const formats::PartFiles& part);

}  // namespace wand::model
