// A small byte-level BPE trainer, so synthetic GGUF models can carry a real (if tiny) GPT-2
// style vocabulary instead of a placeholder.
//
// Training is deterministic: the corpus is pre-tokenized with the same regexes the tokenizer
// uses (merges never cross a piece boundary), then the most frequent adjacent pair is merged
// repeatedly; equal counts go to the pair whose (left, right) byte strings are
// lexicographically smallest. Tokens and merges are returned in GPT-2's byte-level spelling
// (byte 0x20 as "Ġ", ...), exactly as `tokenizer.ggml.tokens` / `.merges` store them.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"
#include "model/pretokenizer.h"
#include "model/tokenizer.h"

namespace infergrid {

struct BpeTrainingResult {
  // 256 single-byte tokens in GPT-2's order, then one token per merge whose result was new.
  std::vector<std::string> tokens;
  // "left right", in the order learned (= rank).
  std::vector<std::string> merges;
};

// Learns up to n_merges merges (fewer if the corpus runs out of pairs).
Result<BpeTrainingResult> train_byte_level_bpe(std::string_view corpus, int n_merges,
                                               PreTokenizerType pre = PreTokenizerType::kLlama3);

// A built-in English corpus (prose on computing, science and history, plus some code), a few
// tens of KB, for training synthetic vocabularies without any external data.
std::string_view default_bpe_training_corpus();

// The special tokens make_default_bpe_vocab adds after the learned tokens, in id order.
const std::vector<std::string>& default_bpe_special_tokens();

// What a trained vocabulary holds besides its learned tokens.
struct BpeVocabSpec {
  int vocab_size = 0;  // exactly this many tokens (reserved specials pad a short corpus)
  PreTokenizerType pre = PreTokenizerType::kLlama3;
  std::vector<std::string> specials;  // control tokens, after the learned ones, in id order
  // Which of `specials` are BOS, EOS and end-of-turn (-1: none).
  int bos_index = -1, eos_index = -1, eot_index = -1;
};

// A "gpt2" vocabulary trained on `corpus`: 256 byte tokens, learned tokens, spec.specials and,
// only if the corpus cannot supply enough merges, <|reserved_special_token_N|> padding.
Result<TokenizerVocab> train_bpe_vocab(std::string_view corpus, const BpeVocabSpec& spec);

// A ready "gpt2" vocabulary of exactly vocab_size tokens trained on the built-in corpus with
// the `pre` pre-tokenizer (recorded in the vocabulary under its llama.cpp name): 256 byte tokens,
// learned tokens, the special tokens above (BOS <|begin_of_text|>, EOS <|end_of_text|>, EOT
// <|eot_id|>) and, only if the corpus cannot supply enough merges,
// <|reserved_special_token_N|> padding. vocab_size must leave room for bytes and specials.
// add_bos follows llama.cpp's default for `pre` (on for Llama 3, off for Qwen2).
Result<TokenizerVocab> make_default_bpe_vocab(int vocab_size,
                                              PreTokenizerType pre = PreTokenizerType::kLlama3);

}  // namespace infergrid
