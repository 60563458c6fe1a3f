#include "model/pretokenizer.h"

#include <string>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "model/unicode_util.h"

namespace infergrid {
namespace {

// llama.cpp's notion of whitespace is Unicode White_Space (it includes U+0085); PCRE2's \s
// with UCP omits U+0085 in some versions, so the patterns spell the class out instead.
#define IG_WS "\\t-\\r \\x{85}\\p{Z}"
#define IG_SPACE "[" IG_WS "]"
#define IG_NOT_SPACE "[^" IG_WS "]"

// GPT-2's split: contractions, letter runs, digit runs, other-symbol runs (each optionally
// led by one space), then whitespace that is not followed by a non-space.
constexpr const char* kGpt2Pattern =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^" IG_WS "\\p{L}\\p{N}]+|" IG_SPACE
    "+(?!" IG_NOT_SPACE ")|" IG_SPACE "+";

// Llama 3 (tiktoken cl100k style). The contractions are case-insensitive, but spelled as
// explicit classes: (?i) under Unicode case folding would also match U+017F and U+212A.
#define IG_LLAMA3_PREFIX                                   \
  "'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD]|" \
  "[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|"
#define IG_LLAMA3_SUFFIX                                                                       \
  "| ?[^" IG_WS "\\p{L}\\p{N}]+[\\r\\n]*|" IG_SPACE "*[\\r\\n]+|" IG_SPACE "+(?!" IG_NOT_SPACE \
  ")|" IG_SPACE "+"

constexpr const char* kLlama3Pattern = IG_LLAMA3_PREFIX "\\p{N}{1,3}" IG_LLAMA3_SUFFIX;
// Qwen2 differs from Llama 3 only in splitting numbers into single digits.
constexpr const char* kQwen2Pattern = IG_LLAMA3_PREFIX "\\p{N}" IG_LLAMA3_SUFFIX;

std::vector<const char*> patterns_for(PreTokenizerType type) {
  switch (type) {
    case PreTokenizerType::kGpt2:
      return {kGpt2Pattern};
    case PreTokenizerType::kLlama3:
      return {kLlama3Pattern};
    case PreTokenizerType::kQwen2:
      return {kQwen2Pattern};
    case PreTokenizerType::kDeepseekCoder:
      // Line breaks, letter runs, punctuation runs, CJK/Hangul runs, then single digits.
      return {"[\\r\\n]", IG_SPACE "?\\p{L}+", IG_SPACE "?\\p{P}+",
              "[\\x{4E00}-\\x{9FA5}\\x{0800}-\\x{4E00}\\x{AC00}-\\x{D7FF}]+", "\\p{N}"};
    case PreTokenizerType::kStarcoder:
      return {"\\p{N}", kGpt2Pattern};
    case PreTokenizerType::kFalcon:
      return {"[\\p{P}\\$\\+<=>\\^~\\|`]+", kGpt2Pattern, "[0-9][0-9][0-9]"};
    case PreTokenizerType::kDefault:
      break;
  }
  return {"[\\p{P}\\$\\+<=>\\^~\\|]+", kGpt2Pattern, "\\p{N}+", "[0-9][0-9][0-9]"};
}

#undef IG_LLAMA3_PREFIX
#undef IG_LLAMA3_SUFFIX
#undef IG_NOT_SPACE
#undef IG_SPACE
#undef IG_WS

struct NameEntry {
  std::string_view name;
  PreTokenizerInfo info;
};

constexpr PreTokenizerInfo kGpt2Info{PreTokenizerType::kGpt2, false, false};
constexpr PreTokenizerInfo kLlama3Info{PreTokenizerType::kLlama3, true, true};
constexpr PreTokenizerInfo kLlama3LikeInfo{PreTokenizerType::kLlama3, false, false};
constexpr PreTokenizerInfo kQwen2Info{PreTokenizerType::kQwen2, false, false};
constexpr PreTokenizerInfo kStarcoderInfo{PreTokenizerType::kStarcoder, false, false};

constexpr NameEntry kNames[] = {
    {"default", {PreTokenizerType::kDefault, false, false}},
    {"gpt-2", kGpt2Info},
    {"gpt2", kGpt2Info},
    {"mpt", kGpt2Info},
    {"olmo", kGpt2Info},
    {"phi-2", kGpt2Info},
    {"jais", kGpt2Info},
    {"roberta-bpe", kGpt2Info},
    {"llama3", kLlama3Info},
    {"llama-v3", kLlama3Info},
    {"llama-bpe", kLlama3Info},
    {"falcon3", kLlama3Info},
    {"pixtral", kLlama3Info},
    {"dbrx", kLlama3LikeInfo},
    {"smaug-bpe", kLlama3LikeInfo},
    {"qwen2", kQwen2Info},
    {"stablelm2", kQwen2Info},
    {"deepseek-r1-qwen", kQwen2Info},
    {"hunyuan", kQwen2Info},
    {"deepseek-coder", {PreTokenizerType::kDeepseekCoder, false, false}},
    {"starcoder", kStarcoderInfo},
    {"refact", kStarcoderInfo},
    {"command-r", kStarcoderInfo},
    {"smollm", kStarcoderInfo},
    {"codeshell", kStarcoderInfo},
    {"exaone", kStarcoderInfo},
    {"falcon", {PreTokenizerType::kFalcon, false, false}},
};

}  // namespace

struct PreTokenizer::CompiledRegex {
  pcre2_code* code = nullptr;
  ~CompiledRegex() { pcre2_code_free(code); }
};

std::optional<PreTokenizerInfo> pre_tokenizer_from_name(std::string_view name) {
  for (const NameEntry& entry : kNames) {
    if (entry.name == name) return entry.info;
  }
  return std::nullopt;
}

const char* pre_tokenizer_name(PreTokenizerType type) {
  switch (type) {
    case PreTokenizerType::kDefault:
      return "default";
    case PreTokenizerType::kGpt2:
      return "gpt-2";
    case PreTokenizerType::kLlama3:
      return "llama3";
    case PreTokenizerType::kQwen2:
      return "qwen2";
    case PreTokenizerType::kDeepseekCoder:
      return "deepseek-coder";
    case PreTokenizerType::kStarcoder:
      return "starcoder";
    case PreTokenizerType::kFalcon:
      return "falcon";
  }
  return "unknown";
}

PreTokenizer::PreTokenizer(PreTokenizerType type) : type_(type) {}
PreTokenizer::~PreTokenizer() = default;

Result<std::unique_ptr<PreTokenizer>> PreTokenizer::create(PreTokenizerType type) {
  std::unique_ptr<PreTokenizer> pre(new PreTokenizer(type));
  // MATCH_INVALID_UTF lets arbitrary bytes through: invalid sequences simply never match.
  // DOLLAR_ENDONLY gives `$` the ECMAScript meaning llama.cpp's std::regex has.
  const uint32_t options = PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF | PCRE2_DOLLAR_ENDONLY;
  for (const char* pattern : patterns_for(type)) {
    int error_code = 0;
    PCRE2_SIZE error_offset = 0;
    auto regex = std::make_unique<CompiledRegex>();
    regex->code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern), PCRE2_ZERO_TERMINATED,
                                options, &error_code, &error_offset, nullptr);
    if (regex->code == nullptr) {
      PCRE2_UCHAR message[256];
      pcre2_get_error_message(error_code, message, sizeof(message));
      return make_error(StatusCode::kInternal, "pre-tokenizer {}: regex error at {}: {}",
                        pre_tokenizer_name(type), error_offset,
                        reinterpret_cast<const char*>(message));
    }
    // JIT is an optimisation only; the interpreter gives the same matches if it is missing.
    (void)pcre2_jit_compile(regex->code, PCRE2_JIT_COMPLETE);
    pre->regexes_.push_back(std::move(regex));
  }
  return pre;
}

void PreTokenizer::split(std::string_view text, std::vector<std::string_view>& pieces) const {
  pieces.clear();
  if (text.empty()) return;
  pieces.push_back(text);
  std::vector<std::string_view> next;
  for (const auto& regex : regexes_) {
    pcre2_match_data* match = pcre2_match_data_create_from_pattern(regex->code, nullptr);
    next.clear();
    for (std::string_view piece : pieces) {
      const auto* subject = reinterpret_cast<PCRE2_SPTR>(piece.data());
      size_t emitted = 0;  // end of the last piece pushed
      size_t offset = 0;   // where the next search starts
      while (offset < piece.size()) {
        const int rc = pcre2_match(regex->code, subject, piece.size(), offset, 0, match, nullptr);
        if (rc < 0) break;  // no match (or a match-time error): the rest is one gap
        const PCRE2_SIZE* ovector = pcre2_get_ovector_pointer(match);
        const size_t start = ovector[0];
        const size_t end = ovector[1];
        if (end <= start) {
          // None of our patterns can match empty; guard against looping anyway.
          offset = start + utf8_sequence_length(static_cast<uint8_t>(piece[start]));
          continue;
        }
        if (start > emitted) next.push_back(piece.substr(emitted, start - emitted));
        next.push_back(piece.substr(start, end - start));
        emitted = offset = end;
      }
      if (emitted < piece.size()) next.push_back(piece.substr(emitted));
    }
    pcre2_match_data_free(match);
    pieces.swap(next);
  }
}

}  // namespace infergrid
