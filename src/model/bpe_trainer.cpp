// Byte-level BPE training. Words (pre-tokenizer pieces) are counted once and kept as symbol-id
// sequences; pair counts are maintained incrementally, and each merge rewrites only the words
// that contain the merged pair (found through a pair -> words index), so the cost of a merge is
// proportional to where the pair occurs rather than to the corpus size.
#include "model/bpe_trainer.h"

#include <algorithm>
#include <unordered_map>

#include "model/unicode_util.h"

namespace infergrid {
namespace {

constexpr int kMaxVocabSize = 1 << 20;

uint64_t pair_key(int32_t left, int32_t right) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) | static_cast<uint32_t>(right);
}

struct Word {
  std::vector<int32_t> symbols;
  int64_t count = 0;
  int64_t last_merge = -1;  // merge step that last rewrote this word (dedupes the index)
};

struct Training {
  std::vector<std::string> token_bytes;  // raw bytes of each token
  std::vector<std::string> merges;       // byte-level spelling, "left right"
  std::vector<bool> merge_added_token;   // false when the merged text already was a token
};

Result<Training> train(std::string_view corpus, int n_merges, PreTokenizerType pre) {
  if (n_merges < 0) {
    return make_error(StatusCode::kInvalidArgument, "BPE training: n_merges {} < 0", n_merges);
  }
  IG_ASSIGN_OR_RETURN(std::unique_ptr<PreTokenizer> pre_tokenizer, PreTokenizer::create(pre));
  std::vector<std::string_view> pieces;
  pre_tokenizer->split(corpus, pieces);

  Training t;
  std::unordered_map<std::string, int32_t> token_id;
  std::vector<int32_t> byte_id(256);
  for (int rank = 0; rank < 256; ++rank) {
    const uint8_t byte = gpt2_byte_at_rank(rank);
    byte_id[byte] = rank;
    t.token_bytes.emplace_back(1, static_cast<char>(byte));
    token_id.emplace(t.token_bytes.back(), rank);
  }

  std::unordered_map<std::string_view, int64_t> word_counts;
  for (std::string_view piece : pieces) ++word_counts[piece];
  std::vector<Word> words;
  words.reserve(word_counts.size());
  for (const auto& [text, count] : word_counts) {
    if (text.size() < 2) continue;  // a single byte can never take part in a merge
    Word word;
    word.count = count;
    for (char c : text) word.symbols.push_back(byte_id[static_cast<uint8_t>(c)]);
    words.push_back(std::move(word));
  }

  std::unordered_map<uint64_t, int64_t> pair_counts;
  std::unordered_map<uint64_t, std::vector<int32_t>> pair_words;
  const auto add_pairs = [&](int32_t word_index, int64_t sign) {
    const Word& word = words[static_cast<size_t>(word_index)];
    for (size_t i = 1; i < word.symbols.size(); ++i) {
      const uint64_t key = pair_key(word.symbols[i - 1], word.symbols[i]);
      int64_t& count = pair_counts[key];
      count += sign * word.count;
      if (count == 0) pair_counts.erase(key);
      if (sign > 0) pair_words[key].push_back(word_index);
    }
  };
  for (size_t i = 0; i < words.size(); ++i) add_pairs(static_cast<int32_t>(i), +1);

  for (int step = 0; step < n_merges; ++step) {
    uint64_t best = 0;
    int64_t best_count = 0;
    for (const auto& [key, count] : pair_counts) {
      if (count < best_count) continue;
      if (count == best_count) {
        // Ties go to the lexicographically smallest (left, right), independent of hash order.
        const auto l = static_cast<size_t>(key >> 32), r = static_cast<size_t>(key & 0xFFFFFFFF);
        const auto bl = static_cast<size_t>(best >> 32),
                   br = static_cast<size_t>(best & 0xFFFFFFFF);
        const int order = t.token_bytes[l].compare(t.token_bytes[bl]);
        if (order > 0 || (order == 0 && t.token_bytes[r] >= t.token_bytes[br])) continue;
      }
      best = key;
      best_count = count;
    }
    if (best_count <= 0) break;  // no pair left anywhere

    const auto left = static_cast<int32_t>(best >> 32);
    const auto right = static_cast<int32_t>(best & 0xFFFFFFFF);
    const std::string merged =
        t.token_bytes[static_cast<size_t>(left)] + t.token_bytes[static_cast<size_t>(right)];
    t.merges.push_back(gpt2_encode_bytes(t.token_bytes[static_cast<size_t>(left)]) + " " +
                       gpt2_encode_bytes(t.token_bytes[static_cast<size_t>(right)]));
    const auto [it, added] = token_id.emplace(merged, static_cast<int32_t>(t.token_bytes.size()));
    if (added) t.token_bytes.push_back(merged);
    t.merge_added_token.push_back(added);
    const int32_t merged_id = it->second;

    std::vector<int32_t> affected = std::move(pair_words[best]);
    pair_words.erase(best);
    for (int32_t word_index : affected) {
      Word& word = words[static_cast<size_t>(word_index)];
      if (word.last_merge == step) continue;
      word.last_merge = step;
      add_pairs(word_index, -1);
      std::vector<int32_t> rewritten;
      rewritten.reserve(word.symbols.size());
      for (size_t i = 0; i < word.symbols.size(); ++i) {
        if (i + 1 < word.symbols.size() && word.symbols[i] == left &&
            word.symbols[i + 1] == right) {
          rewritten.push_back(merged_id);
          ++i;
        } else {
          rewritten.push_back(word.symbols[i]);
        }
      }
      word.symbols.swap(rewritten);
      add_pairs(word_index, +1);
    }
  }
  return t;
}

}  // namespace

Result<BpeTrainingResult> train_byte_level_bpe(std::string_view corpus, int n_merges,
                                               PreTokenizerType pre) {
  IG_ASSIGN_OR_RETURN(Training t, train(corpus, n_merges, pre));
  BpeTrainingResult result;
  result.tokens.reserve(t.token_bytes.size());
  for (const std::string& bytes : t.token_bytes) result.tokens.push_back(gpt2_encode_bytes(bytes));
  result.merges = std::move(t.merges);
  return result;
}

const std::vector<std::string>& default_bpe_special_tokens() {
  static const std::vector<std::string> kSpecials = {
      "<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>",
      "<|eot_id|>",        "<|im_start|>",    "<|im_end|>",
  };
  return kSpecials;
}

Result<TokenizerVocab> train_bpe_vocab(std::string_view corpus, const BpeVocabSpec& spec) {
  const int min_size = 256 + static_cast<int>(spec.specials.size());
  if (spec.vocab_size < min_size || spec.vocab_size > kMaxVocabSize) {
    return make_error(StatusCode::kInvalidArgument,
                      "BPE vocabulary size {} is outside [{}, {}] (256 bytes + {} special tokens "
                      "at least)",
                      spec.vocab_size, min_size, kMaxVocabSize, spec.specials.size());
  }
  const auto special_count = static_cast<int>(spec.specials.size());
  for (int index : {spec.bos_index, spec.eos_index, spec.eot_index}) {
    if (index < -1 || index >= special_count) {
      return make_error(StatusCode::kInvalidArgument,
                        "special token index {} is outside the {} special tokens", index,
                        special_count);
    }
  }
  const int n_learned = spec.vocab_size - min_size;
  // A merge whose result already is a token adds none, so ask for a little more and cut back.
  IG_ASSIGN_OR_RETURN(Training t, train(corpus, n_learned + n_learned / 8 + 8, spec.pre));

  TokenizerVocab vocab;
  vocab.model = "gpt2";
  vocab.pre = pre_tokenizer_name(spec.pre);
  int learned = 0;
  size_t n_merges = 0;
  while (n_merges < t.merges.size() && learned < n_learned) {
    if (t.merge_added_token[n_merges]) ++learned;
    ++n_merges;
  }
  vocab.merges.assign(t.merges.begin(), t.merges.begin() + static_cast<ptrdiff_t>(n_merges));
  for (size_t i = 0; i < 256 + static_cast<size_t>(learned); ++i) {
    vocab.tokens.push_back(gpt2_encode_bytes(t.token_bytes[i]));
  }
  vocab.types.assign(vocab.tokens.size(), TokenType::kNormal);
  const auto special_base = static_cast<int32_t>(vocab.tokens.size());
  for (const std::string& special : spec.specials) {
    vocab.tokens.push_back(special);
    vocab.types.push_back(TokenType::kControl);
  }
  for (int i = 0; static_cast<int>(vocab.tokens.size()) < spec.vocab_size; ++i) {
    vocab.tokens.push_back("<|reserved_special_token_" + std::to_string(i) + "|>");
    vocab.types.push_back(TokenType::kControl);
  }
  vocab.scores.assign(vocab.tokens.size(), 0.0f);
  const auto special_id = [&](int index) { return index < 0 ? -1 : special_base + index; };
  vocab.bos_id = special_id(spec.bos_index);
  vocab.eos_id = special_id(spec.eos_index);
  vocab.eot_id = special_id(spec.eot_index);
  const std::optional<PreTokenizerInfo> info = pre_tokenizer_from_name(vocab.pre);
  vocab.add_bos = info && info->add_bos_by_default;
  vocab.add_eos = false;
  return vocab;
}

Result<TokenizerVocab> make_default_bpe_vocab(int vocab_size, PreTokenizerType pre) {
  BpeVocabSpec spec;
  spec.vocab_size = vocab_size;
  spec.pre = pre;
  spec.specials = default_bpe_special_tokens();
  spec.bos_index = 0;  // <|begin_of_text|>
  spec.eos_index = 1;  // <|end_of_text|>
  spec.eot_index = 4;  // <|eot_id|>
  return train_bpe_vocab(default_bpe_training_corpus(), spec);
}

}  // namespace infergrid
