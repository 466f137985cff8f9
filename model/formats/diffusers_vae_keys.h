// The Wan VAEs in diffusers' naming (AutoencoderKLWan: the diffusers folder's vae/) <-> the
// release names the VAE reads (Wan2.1_VAE.pth, Wan2.2_VAE.pth; model/vae_config.h).
// LibTorch-free (wand_model_facts).
//
//   diffusers_vae_key("decoder.upsamples.4.shortcut.weight", false);
//       // "decoder.up_blocks.1.resnets.0.conv_shortcut.weight" (Wan2.1 VAE)
//   diffusers_vae_key("encoder.downsamples.1.downsamples.2.resample.1.weight", true);
//       // "encoder.down_blocks.1.downsampler.resample.1.weight" (Wan2.2 VAE)
//
// Note [Diffusers VAE keys]: the reference is diffusers' scripts/convert_wan_to_diffusers.py
// (convert_vae for Wan2.1, convert_vae_22 for Wan2.2) and the module tree of
// src/diffusers/models/autoencoders/autoencoder_kl_wan.py. Only names change: every tensor
// keeps its shape and values. The RMS norms are `gamma` of the same shape on both sides
// ([C,1,1,1] in the 3-D blocks and heads, [C,1,1] in the attention; WanRMS_norm has no bias by
// default, so there is no extra tensor), the attention keeps its fused to_qkv, the causal
// convs keep their 5-D weights. The renames:
//   conv1 / conv2 (the latent 1x1x1 convs)  -> quant_conv / post_quant_conv
//   {encoder,decoder}.conv1                 -> .conv_in;  .head.0.gamma -> .norm_out.gamma;
//   .head.2                                 -> .conv_out
//   .middle.0 / .middle.2 (residual blocks) -> .mid_block.resnets.0 / .1;  .middle.1 -> .mid_block.attentions.0
//   residual block: residual.0.gamma -> norm1.gamma, residual.2 -> conv1, residual.3.gamma ->
//   norm2.gamma, residual.6 -> conv2, shortcut -> conv_shortcut
// Wan2.1 (flat lists): encoder.downsamples.N -> encoder.down_blocks.N (same index);
// decoder.upsamples.N, N = 4B + R -> decoder.up_blocks.B.resnets.R (R < 3) or
// decoder.up_blocks.B.upsamplers.0 (R = 3: each up block is 3 residual blocks + a resample).
// Wan2.2 (nested): encoder.downsamples.X.downsamples.Y -> encoder.down_blocks.X.resnets.Y
// for a residual block, encoder.down_blocks.X.downsampler for the resample; decoder likewise
// with up_blocks.X.resnets.Y / up_blocks.X.upsampler.
// The inverse (file key -> release key) is the table of these over the release key list
// (model/formats/part_sources.h), so a key the release does not have is refused by name.
// Free functions; any thread.
#pragma once

#include <optional>
#include <string>

namespace wand::model::formats {

// The diffusers key of a release VAE key (wan22: the Wan2.2 VAE's nesting); nullopt for a
// name that is not a release VAE key.
std::optional<std::string> diffusers_vae_key(const std::string& release_key, bool wan22);

}  // namespace wand::model::formats
