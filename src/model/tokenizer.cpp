// Tokenizer construction (from GGUF or from a TokenizerVocab), special-token handling, decode
// and accessors. The two encoding algorithms live in tokenizer_spm.cpp and tokenizer_bpe.cpp.
#include "model/tokenizer.h"

#include <algorithm>
#include <array>
#include <cstdio>

#include <spdlog/spdlog.h>

#include "model/gguf.h"
#include "model/tool_call_markers.h"
#include "model/unicode_util.h"

namespace infergrid {
namespace {

bool is_tool_call_marker(std::string_view text) {
  static constexpr std::string_view kMarkers[] = {kHermesCallOpen, kHermesCallClose,
                                                  kMistralCallsOpen, kLlamaPythonTag};
  for (std::string_view marker : kMarkers) {
    if (text == marker) return true;
  }
  return false;
}

constexpr std::string_view kSpmSpace = "\xE2\x96\x81";  // U+2581, SentencePiece's space

// Texts of control tokens that end a turn in the chat formats we know (llama.cpp's list).
constexpr std::array<std::string_view, 10> kEndOfTurnTexts = {
    "<|eot_id|>",    "<|eom_id|>",      "<|im_end|>", "<|end|>", "<end_of_turn>",
    "<|endoftext|>", "<|end_of_text|>", "<EOT>",      "_<EOT>",  "<end_of_utterance>",
};

bool is_special_type(TokenType type) {
  return type == TokenType::kControl || type == TokenType::kUserDefined ||
         type == TokenType::kUnknown;
}

// "<0xAB>" -> 0xAB.
std::optional<uint8_t> parse_byte_token(std::string_view text) {
  if (text.size() != 6 || text.substr(0, 3) != "<0x" || text[5] != '>') return std::nullopt;
  unsigned value = 0;
  for (size_t i = 3; i < 5; ++i) {
    const char c = text[i];
    unsigned digit = 0;
    if (c >= '0' && c <= '9') {
      digit = static_cast<unsigned>(c - '0');
    } else if (c >= 'A' && c <= 'F') {
      digit = static_cast<unsigned>(c - 'A' + 10);
    } else if (c >= 'a' && c <= 'f') {
      digit = static_cast<unsigned>(c - 'a' + 10);
    } else {
      return std::nullopt;
    }
    value = value * 16 + digit;
  }
  return static_cast<uint8_t>(value);
}

std::string spm_unescape(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  size_t pos = 0;
  while (pos < text.size()) {
    if (text.substr(pos, kSpmSpace.size()) == kSpmSpace) {
      out.push_back(' ');
      pos += kSpmSpace.size();
    } else {
      out.push_back(text[pos++]);
    }
  }
  return out;
}

// Reverses GPT-2's byte-to-unicode mapping; code points outside it are kept as UTF-8.
std::string byte_level_decode(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  size_t pos = 0;
  while (pos < text.size()) {
    size_t n = 0;
    const std::optional<uint32_t> cp = decode_utf8(text, pos, &n);
    if (!cp) {
      out.push_back(text[pos++]);
      continue;
    }
    if (const std::optional<uint8_t> byte = gpt2_codepoint_to_byte(*cp)) {
      out.push_back(static_cast<char>(*byte));
    } else {
      out.append(text.substr(pos, n));
    }
    pos += n;
  }
  return out;
}

// Reads an optional token id; an out-of-range value is dropped with a warning rather than
// failing the load, as llama.cpp does.
Status read_token_id(const GgufFile& file, std::string_view key, size_t n_vocab, int32_t* id) {
  IG_ASSIGN_OR_RETURN(std::optional<int64_t> value, file.get_int(key));
  if (!value) return Status::ok();
  if (*value < 0 || static_cast<uint64_t>(*value) >= n_vocab) {
    spdlog::warn("tokenizer: {} = {} is outside the vocabulary ({} tokens); ignored", key, *value,
                 n_vocab);
    *id = -1;
    return Status::ok();
  }
  *id = static_cast<int32_t>(*value);
  return Status::ok();
}

}  // namespace

Tokenizer::Tokenizer(TokenizerVocab vocab) : vocab_(std::move(vocab)) {}
Tokenizer::~Tokenizer() = default;

Result<std::unique_ptr<Tokenizer>> Tokenizer::from_gguf(const GgufFile& file) {
  TokenizerVocab vocab;
  IG_ASSIGN_OR_RETURN(std::optional<std::string_view> model,
                      file.get_string("tokenizer.ggml.model"));
  if (!model) {
    return make_error(StatusCode::kNotFound, "{}: no tokenizer (tokenizer.ggml.model missing)",
                      file.path());
  }
  if (*model != "llama" && *model != "gpt2") {
    return make_error(StatusCode::kUnsupported,
                      "{}: tokenizer model '{}' is not supported (supported: llama, gpt2)",
                      file.path(), *model);
  }
  vocab.model = std::string(*model);
  IG_ASSIGN_OR_RETURN(std::optional<std::string_view> pre, file.get_string("tokenizer.ggml.pre"));
  if (pre) vocab.pre = std::string(*pre);

  IG_ASSIGN_OR_RETURN(std::optional<std::vector<std::string_view>> tokens,
                      file.get_string_array("tokenizer.ggml.tokens"));
  if (!tokens || tokens->empty()) {
    return make_error(StatusCode::kCorrupt, "{}: tokenizer.ggml.tokens is missing or empty",
                      file.path());
  }
  vocab.tokens.assign(tokens->begin(), tokens->end());
  const size_t n_vocab = vocab.tokens.size();

  IG_ASSIGN_OR_RETURN(std::optional<std::vector<float>> scores,
                      file.get_float_array("tokenizer.ggml.scores"));
  if (scores) vocab.scores = std::move(*scores);
  IG_ASSIGN_OR_RETURN(std::optional<std::vector<int64_t>> types,
                      file.get_int_array("tokenizer.ggml.token_type"));
  if (types) {
    vocab.types.reserve(types->size());
    for (int64_t t : *types) vocab.types.push_back(static_cast<TokenType>(t));
  }
  IG_ASSIGN_OR_RETURN(std::optional<std::vector<std::string_view>> merges,
                      file.get_string_array("tokenizer.ggml.merges"));
  if (merges) vocab.merges.assign(merges->begin(), merges->end());

  if (vocab.model == "llama") {
    // llama.cpp's defaults for SentencePiece vocabularies that do not name their specials.
    const auto if_present = [&](int32_t id) {
      return id < static_cast<int32_t>(n_vocab) ? id : -1;
    };
    vocab.unk_id = if_present(0);
    vocab.bos_id = if_present(1);
    vocab.eos_id = if_present(2);
  }
  IG_RETURN_IF_ERROR(read_token_id(file, "tokenizer.ggml.bos_token_id", n_vocab, &vocab.bos_id));
  IG_RETURN_IF_ERROR(read_token_id(file, "tokenizer.ggml.eos_token_id", n_vocab, &vocab.eos_id));
  IG_RETURN_IF_ERROR(
      read_token_id(file, "tokenizer.ggml.unknown_token_id", n_vocab, &vocab.unk_id));
  IG_RETURN_IF_ERROR(
      read_token_id(file, "tokenizer.ggml.padding_token_id", n_vocab, &vocab.pad_id));
  IG_RETURN_IF_ERROR(read_token_id(file, "tokenizer.ggml.eot_token_id", n_vocab, &vocab.eot_id));
  IG_RETURN_IF_ERROR(read_token_id(file, "tokenizer.ggml.eom_token_id", n_vocab, &vocab.eom_id));

  IG_ASSIGN_OR_RETURN(vocab.add_bos, file.get_bool("tokenizer.ggml.add_bos_token"));
  IG_ASSIGN_OR_RETURN(vocab.add_eos, file.get_bool("tokenizer.ggml.add_eos_token"));
  IG_ASSIGN_OR_RETURN(vocab.add_space_prefix, file.get_bool("tokenizer.ggml.add_space_prefix"));

  Result<std::unique_ptr<Tokenizer>> tokenizer = create(std::move(vocab));
  if (!tokenizer.is_ok()) return tokenizer.status().with_context(file.path());
  return tokenizer;
}

Result<std::unique_ptr<Tokenizer>> Tokenizer::create(TokenizerVocab vocab) {
  std::unique_ptr<Tokenizer> tokenizer(new Tokenizer(std::move(vocab)));
  IG_RETURN_IF_ERROR(tokenizer->init());
  return tokenizer;
}

Status Tokenizer::init() {
  TokenizerVocab& v = vocab_;
  if (v.model == "llama") {
    kind_ = TokenizerKind::kSpm;
  } else if (v.model == "gpt2") {
    kind_ = TokenizerKind::kBpe;
  } else {
    return make_error(StatusCode::kUnsupported,
                      "tokenizer model '{}' is not supported (supported: llama, gpt2)", v.model);
  }
  const size_t n = v.tokens.size();
  if (n == 0) return make_error(StatusCode::kInvalidArgument, "tokenizer: empty vocabulary");
  if (n > static_cast<size_t>(INT32_MAX)) {
    return make_error(StatusCode::kInvalidArgument, "tokenizer: {} tokens is too many", n);
  }
  if (v.scores.empty()) v.scores.assign(n, 0.0f);
  if (v.scores.size() != n) {
    return make_error(StatusCode::kCorrupt, "tokenizer: {} scores for {} tokens", v.scores.size(),
                      n);
  }
  if (v.types.empty()) v.types.assign(n, TokenType::kNormal);
  if (v.types.size() != n) {
    return make_error(StatusCode::kCorrupt, "tokenizer: {} token types for {} tokens",
                      v.types.size(), n);
  }
  for (TokenType& type : v.types) {
    const auto raw = static_cast<int32_t>(type);
    if (raw < static_cast<int32_t>(TokenType::kNormal) ||
        raw > static_cast<int32_t>(TokenType::kByte)) {
      type = TokenType::kNormal;  // undefined or unknown values behave as ordinary tokens
    }
  }
  for (int32_t* id : {&v.bos_id, &v.eos_id, &v.unk_id, &v.pad_id, &v.eot_id, &v.eom_id}) {
    if (*id < -1 || *id >= static_cast<int32_t>(n)) {
      return make_error(StatusCode::kInvalidArgument,
                        "tokenizer: special token id {} is outside the vocabulary ({} tokens)", *id,
                        n);
    }
  }

  if (kind_ == TokenizerKind::kSpm) {
    add_bos_ = v.add_bos.value_or(true);
    add_space_prefix_ = v.add_space_prefix.value_or(true);
  } else {
    PreTokenizerInfo info;
    if (v.pre.empty()) {
      info = *pre_tokenizer_from_name("default");
    } else if (std::optional<PreTokenizerInfo> known = pre_tokenizer_from_name(v.pre)) {
      info = *known;
    } else {
      spdlog::warn("tokenizer: unknown pre-tokenizer '{}'; using the GPT-2 regex", v.pre);
      info = *pre_tokenizer_from_name("gpt-2");
    }
    ignore_merges_ = info.ignore_merges;
    add_bos_ = v.add_bos.value_or(info.add_bos_by_default);
    IG_ASSIGN_OR_RETURN(pre_tokenizer_, PreTokenizer::create(info.type));

    merge_rank_.reserve(v.merges.size());
    for (size_t i = 0; i < v.merges.size(); ++i) {
      const std::string& merge = v.merges[i];
      // A token may start with a literal space in odd vocabularies, so search from 1.
      const size_t space = merge.find(' ', 1);
      if (space == std::string::npos || space + 1 >= merge.size()) {
        return make_error(StatusCode::kCorrupt, "tokenizer: merge {} ('{}') is not 'left right'", i,
                          merge);
      }
      merge_rank_.emplace(merge, static_cast<int32_t>(i));  // first occurrence wins
    }
  }
  add_eos_ = v.add_eos.value_or(false);

  token_to_id_.reserve(n);
  for (size_t i = 0; i < n; ++i) token_to_id_[v.tokens[i]] = static_cast<int32_t>(i);

  for (size_t i = 0; i < n; ++i) {
    if (is_special_type(v.types[i]) && !v.tokens[i].empty()) {
      special_tokens_.push_back(static_cast<int32_t>(i));
    }
  }
  // Longest first, so "<|im_start|>" wins over a shorter special that is its prefix.
  std::stable_sort(special_tokens_.begin(), special_tokens_.end(), [&](int32_t a, int32_t b) {
    return v.tokens[static_cast<size_t>(a)].size() > v.tokens[static_cast<size_t>(b)].size();
  });

  byte_tokens_.assign(256, -1);
  for (int b = 0; b < 256; ++b) {
    int32_t id = -1;
    if (kind_ == TokenizerKind::kSpm) {
      char hex[8];
      std::snprintf(hex, sizeof(hex), "<0x%02X>", b);
      id = lookup(hex);
      if (id < 0) id = lookup(std::string(1, static_cast<char>(b)));
    } else {
      id = lookup(gpt2_byte_to_utf8(static_cast<uint8_t>(b)));
    }
    byte_tokens_[static_cast<size_t>(b)] = id >= 0 ? id : v.unk_id;
  }

  pieces_.resize(n);
  for (size_t i = 0; i < n; ++i) {
    const std::string& text = v.tokens[i];
    switch (v.types[i]) {
      case TokenType::kNormal:
        pieces_[i] = kind_ == TokenizerKind::kSpm ? spm_unescape(text) : byte_level_decode(text);
        break;
      case TokenType::kByte:
        if (std::optional<uint8_t> byte = parse_byte_token(text)) {
          pieces_[i] = std::string(1, static_cast<char>(*byte));
        } else {
          pieces_[i] = kind_ == TokenizerKind::kSpm ? spm_unescape(text) : byte_level_decode(text);
        }
        break;
      case TokenType::kUserDefined:
        pieces_[i] = text;  // converters store user-defined tokens already decoded
        break;
      default:
        // Control, unknown, unused: rendered only on request; except the markers that open and
        // close tool calls, which are the output's content (the call is parsed from the text,
        // and a grammar must be able to spell them).
        if (v.types[i] == TokenType::kControl && is_tool_call_marker(text)) pieces_[i] = text;
        break;
    }
  }

  for (int32_t id : {v.eos_id, v.eot_id, v.eom_id}) {
    if (id >= 0) eog_ids_.push_back(id);
  }
  for (std::string_view text : kEndOfTurnTexts) {
    const int32_t id = lookup(text);
    if (id >= 0 && (v.types[static_cast<size_t>(id)] == TokenType::kControl ||
                    v.types[static_cast<size_t>(id)] == TokenType::kUserDefined)) {
      eog_ids_.push_back(id);
    }
  }
  std::sort(eog_ids_.begin(), eog_ids_.end());
  eog_ids_.erase(std::unique(eog_ids_.begin(), eog_ids_.end()), eog_ids_.end());
  return Status::ok();
}

int32_t Tokenizer::lookup(std::string_view text) const {
  const auto it = token_to_id_.find(text);
  return it == token_to_id_.end() ? -1 : it->second;
}

PreTokenizerType Tokenizer::pre_tokenizer_type() const {
  return pre_tokenizer_ ? pre_tokenizer_->type() : PreTokenizerType::kDefault;
}

std::vector<Tokenizer::Fragment> Tokenizer::partition_special(std::string_view text,
                                                              bool parse_special) const {
  std::vector<Fragment> fragments;
  if (text.empty()) return fragments;
  fragments.push_back({-1, 0, text.size()});
  std::vector<Fragment> next;
  for (int32_t id : special_tokens_) {
    const TokenType type = vocab_.types[static_cast<size_t>(id)];
    // User-defined tokens are matched even without parse_special, as in HF tokenizers and
    // llama.cpp: they are part of the vocabulary's normalisation, not markup.
    if (!parse_special && type != TokenType::kUserDefined) continue;
    const std::string& special = vocab_.tokens[static_cast<size_t>(id)];
    next.clear();
    for (const Fragment& fragment : fragments) {
      if (fragment.token >= 0) {
        next.push_back(fragment);
        continue;
      }
      const std::string_view raw = text.substr(fragment.offset, fragment.length);
      size_t pos = 0;
      for (size_t match = raw.find(special); match != std::string_view::npos;
           match = raw.find(special, pos)) {
        if (match > pos) next.push_back({-1, fragment.offset + pos, match - pos});
        next.push_back({id, 0, 0});
        pos = match + special.size();
      }
      if (pos < raw.size()) next.push_back({-1, fragment.offset + pos, raw.size() - pos});
    }
    fragments.swap(next);
  }
  return fragments;
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_special,
                                       bool parse_special) const {
  std::vector<int32_t> out;
  if (add_special && add_bos_ && vocab_.bos_id >= 0) out.push_back(vocab_.bos_id);
  const std::vector<Fragment> fragments = partition_special(text, parse_special);
  if (kind_ == TokenizerKind::kSpm) {
    // The space prefix goes on the first text and on text right after a special token,
    // which is where SentencePiece would see the start of a "sentence".
    bool after_special = true;
    std::string escaped;
    for (const Fragment& fragment : fragments) {
      if (fragment.token >= 0) {
        out.push_back(fragment.token);
        after_special = true;
        continue;
      }
      escaped.clear();
      if (add_space_prefix_ && after_special) escaped.append(kSpmSpace);
      for (char c : text.substr(fragment.offset, fragment.length)) {
        if (c == ' ') {
          escaped.append(kSpmSpace);
        } else {
          escaped.push_back(c);
        }
      }
      encode_spm(escaped, out);
      after_special = false;
    }
  } else {
    for (const Fragment& fragment : fragments) {
      if (fragment.token >= 0) {
        out.push_back(fragment.token);
      } else {
        encode_bpe(text.substr(fragment.offset, fragment.length), out);
      }
    }
  }
  if (add_special && add_eos_ && vocab_.eos_id >= 0) out.push_back(vocab_.eos_id);
  return out;
}

std::string Tokenizer::token_to_piece(int32_t id, bool render_special) const {
  if (id < 0 || id >= n_vocab()) return {};
  const size_t index = static_cast<size_t>(id);
  switch (vocab_.types[index]) {
    case TokenType::kNormal:
    case TokenType::kByte:
    case TokenType::kUserDefined:
      return pieces_[index];
    default:
      if (!pieces_[index].empty()) return pieces_[index];  // a tool-call marker
      return render_special ? vocab_.tokens[index] : std::string();
  }
}

std::string Tokenizer::decode(std::span<const int32_t> tokens, bool render_special) const {
  std::string out;
  // The encoder's space prefix sits on the first token after an optional BOS.
  size_t strip_at = tokens.size();
  if (kind_ == TokenizerKind::kSpm && add_space_prefix_ && !tokens.empty()) {
    strip_at = (tokens[0] == vocab_.bos_id && vocab_.bos_id >= 0) ? 1 : 0;
  }
  for (size_t i = 0; i < tokens.size(); ++i) {
    const int32_t id = tokens[i];
    if (id < 0 || id >= n_vocab()) continue;
    const TokenType type = vocab_.types[static_cast<size_t>(id)];
    const bool plain = type == TokenType::kNormal || type == TokenType::kByte ||
                       type == TokenType::kUserDefined || !pieces_[static_cast<size_t>(id)].empty();
    std::string_view piece;
    if (plain) {
      piece = pieces_[static_cast<size_t>(id)];
    } else if (render_special) {
      piece = vocab_.tokens[static_cast<size_t>(id)];
    }
    if (i == strip_at && !piece.empty() && piece.front() == ' ') piece.remove_prefix(1);
    out.append(piece);
  }
  return out;
}

bool Tokenizer::is_eog(int32_t id) const {
  return std::binary_search(eog_ids_.begin(), eog_ids_.end(), id);
}

TokenType Tokenizer::token_type(int32_t id) const {
  if (id < 0 || id >= n_vocab()) return TokenType::kUndefined;
  return vocab_.types[static_cast<size_t>(id)];
}

std::string_view Tokenizer::token_text(int32_t id) const {
  if (id < 0 || id >= n_vocab()) return {};
  return vocab_.tokens[static_cast<size_t>(id)];
}

std::optional<int32_t> Tokenizer::find_token(std::string_view text) const {
  const int32_t id = lookup(text);
  if (id < 0) return std::nullopt;
  return id;
}

std::string StreamingDecoder::push(int32_t token) {
  pending_ += tokenizer_.token_to_piece(token, render_special_);
  const size_t complete = utf8_complete_prefix_length(pending_);
  std::string out = pending_.substr(0, complete);
  pending_.erase(0, complete);
  return out;
}

std::string StreamingDecoder::flush() {
  std::string out;
  out.swap(pending_);
  return out;
}

}  // namespace infergrid
