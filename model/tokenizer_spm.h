// SentencePiece model files (spiece.model, a serialized ModelProto) read and
// written without libsentencepiece (see model/CMakeLists.txt: its builtin
// protobuf clashes with LibTorch's at load time), plus a small deterministic
// unigram vocabulary builder for the tiny checkpoints wand-make-model writes.
//
//   SpmModel m = SpmModel::read("google/umt5-xxl/spiece.model");
//   m.pieces[1].piece == "</s>";
//   SpmModel t = SpmModel::build_unigram(corpus_lines, 384);   // pad 0, eos 1, unk 2
//   t.write(dir / "spiece.model");
//
// Only the fields the encoder needs are kept (pieces, the trainer ids and
// byte_fallback, the normalizer's charsmap and whitespace flags). A plain
// value; any thread.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace wand::model {

struct SpmPiece {
  enum class Type { kNormal = 1, kUnknown = 2, kControl = 3, kUserDefined = 4, kUnused = 5, kByte = 6 };
  std::string piece;  // UTF-8, whitespace as U+2581
  float score = 0;
  Type type = Type::kNormal;
};

struct SpmModel {
  std::vector<SpmPiece> pieces;  // id = index
  int model_type = 1;            // 1 unigram (the only one encoded here)
  int unk_id = 0, bos_id = 1, eos_id = 2, pad_id = -1;  // proto defaults
  bool byte_fallback = false;
  // normalizer_spec
  std::string normalizer_name;
  std::string precompiled_charsmap;  // darts-clone trie + replacement strings
  bool add_dummy_prefix = true;
  bool remove_extra_whitespaces = true;
  bool escape_whitespaces = true;

  // Throws wand::Error(kNotFound) when the file is absent, kModelFormat
  // (naming the file and field) when it is not a ModelProto.
  static SpmModel read(const std::string& path);
  static SpmModel parse(const std::string& bytes, const std::string& context);
  std::string serialize() const;
  void write(const std::string& path) const;

  // A unigram model over `lines` with `vocab_size` pieces (more if the lines
  // hold more distinct characters, fewer if they hold fewer substrings):
  // <pad>=0, </s>=1, <unk>=2, every character, then the substrings (up to 6
  // code points, no inner U+2581) ranked by count x (length - 1); scores are
  // log relative frequencies. Not sentencepiece's EM trainer (see t5_part.cpp).
  // Deterministic for the same input.
  static SpmModel build_unigram(const std::vector<std::string>& lines, int vocab_size);
};

}  // namespace wand::model
