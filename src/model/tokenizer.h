// Tokenizer: text <-> token ids for the two vocabulary kinds GGUF files carry, matching
// llama.cpp's output id for id:
//  - "llama" (SentencePiece style, SPM): spaces escaped to U+2581, an optional leading space,
//    score-driven bigram merges, `<0xXX>` byte tokens for anything the vocabulary lacks;
//  - "gpt2" (byte-level BPE): regex pre-tokenization (see pretokenizer.h), GPT-2's
//    byte-to-unicode mapping, merges applied lowest rank first.
// Special tokens (control, user-defined, unknown) are cut out of the text before either
// algorithm runs: user-defined ones always, control and unknown ones only on request.
//
// Invariants: a Tokenizer is immutable after construction, so one instance may be shared by
// any number of threads; every id it returns is in [0, n_vocab()). Byte-level BPE round-trips
// any byte string exactly; SPM round-trips any text when the vocabulary has all 256 byte
// tokens (decode drops the leading space that encode adds).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "core/status.h"
#include "model/pretokenizer.h"

namespace infergrid {

class GgufFile;

// Values of `tokenizer.ggml.token_type` (llama.cpp's llama_token_type).
enum class TokenType : int32_t {
  kUndefined = 0,
  kNormal = 1,
  kUnknown = 2,
  kControl = 3,
  kUserDefined = 4,
  kUnused = 5,
  kByte = 6,
};

enum class TokenizerKind { kSpm, kBpe };

// Everything a tokenizer is built from; mirrors the `tokenizer.ggml.*` GGUF keys so that a
// vocabulary can be made in memory (tests, the model synthesizer) and written to a file.
struct TokenizerVocab {
  std::string model = "gpt2";  // tokenizer.ggml.model: "llama" (SPM) or "gpt2" (BPE)
  std::string pre;             // tokenizer.ggml.pre (BPE); empty = "default"
  std::vector<std::string> tokens;
  std::vector<float> scores;        // SPM merge priorities; empty = all 0
  std::vector<TokenType> types;     // empty = all normal
  std::vector<std::string> merges;  // BPE, "left right", rank = position
  int32_t bos_id = -1;              // -1 = none
  int32_t eos_id = -1;
  int32_t unk_id = -1;
  int32_t pad_id = -1;
  int32_t eot_id = -1;
  int32_t eom_id = -1;
  // nullopt = llama.cpp's default for the model (SPM: BOS yes, space prefix yes; BPE: BOS
  // only for Llama 3 style; EOS never).
  std::optional<bool> add_bos;
  std::optional<bool> add_eos;
  std::optional<bool> add_space_prefix;
};

class Tokenizer {
 public:
  // Reads the `tokenizer.ggml.*` keys. Unknown `model` -> kUnsupported; unknown `pre` ->
  // GPT-2 pre-tokenizer with a warning.
  static Result<std::unique_ptr<Tokenizer>> from_gguf(const GgufFile& file);
  static Result<std::unique_ptr<Tokenizer>> create(TokenizerVocab vocab);
  ~Tokenizer();
  Tokenizer(const Tokenizer&) = delete;
  Tokenizer& operator=(const Tokenizer&) = delete;

  // add_special: prepend BOS / append EOS where the vocabulary asks for them.
  // parse_special: also recognise control-token texts (e.g. "<|im_start|>") in `text`.
  std::vector<int32_t> encode(std::string_view text, bool add_special, bool parse_special) const;

  // Concatenated pieces; SPM drops the one space its encoder prefixed (after a leading BOS).
  // Out-of-range ids decode to nothing.
  std::string decode(std::span<const int32_t> tokens, bool render_special = false) const;
  // The bytes one token stands for (may be part of a UTF-8 character). Control, unknown and
  // unused tokens are empty unless render_special, which gives their text; the control tokens
  // that mark tool calls (<tool_call>, </tool_call>, [TOOL_CALLS], <|python_tag|>) always give
  // theirs, since the call is read from the output text.
  std::string token_to_piece(int32_t id, bool render_special = false) const;

  TokenizerKind kind() const { return kind_; }
  PreTokenizerType pre_tokenizer_type() const;
  const TokenizerVocab& vocab() const { return vocab_; }
  int32_t n_vocab() const { return static_cast<int32_t>(vocab_.tokens.size()); }
  int32_t bos_id() const { return vocab_.bos_id; }
  int32_t eos_id() const { return vocab_.eos_id; }
  int32_t eot_id() const { return vocab_.eot_id; }
  int32_t unk_id() const { return vocab_.unk_id; }
  int32_t pad_id() const { return vocab_.pad_id; }
  bool add_bos() const { return add_bos_; }
  bool add_eos() const { return add_eos_; }
  bool add_space_prefix() const { return add_space_prefix_; }
  // End of generation: EOS, EOT, EOM and end-of-turn control tokens such as "<|im_end|>".
  bool is_eog(int32_t id) const;
  const std::vector<int32_t>& eog_ids() const { return eog_ids_; }
  TokenType token_type(int32_t id) const;
  std::string_view token_text(int32_t id) const;  // empty for out-of-range ids
  std::optional<int32_t> find_token(std::string_view text) const;

 private:
  struct StringHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  using StringMap = std::unordered_map<std::string, int32_t, StringHash, std::equal_to<>>;

  // A run of raw text or one special token, after cutting special tokens out of the input.
  struct Fragment {
    int32_t token = -1;  // >= 0: a special token; -1: raw text
    size_t offset = 0;
    size_t length = 0;
  };

  explicit Tokenizer(TokenizerVocab vocab);
  Status init();
  std::vector<Fragment> partition_special(std::string_view text, bool parse_special) const;
  void encode_spm(std::string_view text, std::vector<int32_t>& out) const;
  void encode_bpe(std::string_view text, std::vector<int32_t>& out) const;
  void encode_bpe_word(std::string_view encoded, std::vector<int32_t>& out) const;
  int32_t lookup(std::string_view text) const;

  TokenizerVocab vocab_;
  TokenizerKind kind_ = TokenizerKind::kBpe;
  bool add_bos_ = false;
  bool add_eos_ = false;
  bool add_space_prefix_ = false;
  bool ignore_merges_ = false;
  std::unique_ptr<PreTokenizer> pre_tokenizer_;  // BPE only
  StringMap token_to_id_;
  StringMap merge_rank_;                 // "left right" -> rank (BPE)
  std::vector<int32_t> special_tokens_;  // longest text first
  std::vector<int32_t> byte_tokens_;     // byte -> token for fallback, -1 = none
  std::vector<std::string> pieces_;      // token_to_piece(id, false), precomputed
  std::vector<int32_t> eog_ids_;         // sorted
};

// Turns a stream of generated tokens into text without ever emitting half a UTF-8 character:
// bytes of a multi-byte character split across tokens are held until it is complete.
// Pieces are appended as-is (no SPM leading-space removal: generated text continues a prompt).
class StreamingDecoder {
 public:
  explicit StreamingDecoder(const Tokenizer& tokenizer, bool render_special = false)
      : tokenizer_(tokenizer), render_special_(render_special) {}

  // The text that became complete with this token (possibly empty).
  std::string push(int32_t token);
  // Whatever is still held (an incomplete sequence at the end of generation), then resets.
  std::string flush();

 private:
  const Tokenizer& tokenizer_;
  bool render_special_;
  std::string pending_;
};

}  // namespace infergrid
