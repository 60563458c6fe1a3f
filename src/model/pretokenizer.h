// Pre-tokenizers for byte-level BPE: split text into the pieces that BPE merges never cross,
// using the same regular expressions llama.cpp applies for each `tokenizer.ggml.pre` name.
//
// A pre-tokenizer is a list of regexes applied in turn: each one splits every piece produced
// by the previous one into its matches and the text between them (both kept), and each regex
// sees only the piece it splits (lookaheads and `$` stop at the piece's end), as in llama.cpp.
// Invariant: the concatenation of the pieces is exactly the input, for any bytes (invalid
// UTF-8 never matches a pattern and so ends up in the in-between text).
#pragma once

#include <memory>
#include <optional>
#include <string_view>
#include <vector>

#include "core/status.h"

namespace infergrid {

enum class PreTokenizerType {
  kDefault,        // llama.cpp's fallback chain for "default" / missing `pre`
  kGpt2,           // "gpt-2", "mpt", "olmo", "phi-2", "jais", "roberta-bpe"
  kLlama3,         // "llama3", "llama-bpe", "llama-v3", "dbrx", "smaug-bpe", "falcon3", "pixtral"
  kQwen2,          // "qwen2", "stablelm2", "deepseek-r1-qwen", "hunyuan"
  kDeepseekCoder,  // "deepseek-coder"
  kStarcoder,      // "starcoder", "refact", "command-r", "smollm", "codeshell", "exaone"
  kFalcon,         // "falcon"
};

struct PreTokenizerInfo {
  PreTokenizerType type = PreTokenizerType::kDefault;
  // Llama 3 style: a piece that is already a whole token skips the merges.
  bool ignore_merges = false;
  // What llama.cpp assumes for add_bos when the GGUF does not say.
  bool add_bos_by_default = false;
};

// nullopt for names we do not know (the caller decides the fallback).
std::optional<PreTokenizerInfo> pre_tokenizer_from_name(std::string_view name);
const char* pre_tokenizer_name(PreTokenizerType type);

class PreTokenizer {
 public:
  static Result<std::unique_ptr<PreTokenizer>> create(PreTokenizerType type);
  ~PreTokenizer();
  PreTokenizer(const PreTokenizer&) = delete;
  PreTokenizer& operator=(const PreTokenizer&) = delete;

  PreTokenizerType type() const { return type_; }

  // Replaces `pieces` with the split of `text` (views into `text`, none empty). Thread-safe.
  void split(std::string_view text, std::vector<std::string_view>& pieces) const;

 private:
  struct CompiledRegex;
  explicit PreTokenizer(PreTokenizerType type);

  PreTokenizerType type_;
  std::vector<std::unique_ptr<CompiledRegex>> regexes_;
};

}  // namespace infergrid
