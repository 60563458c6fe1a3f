// Shared by the grammar tests: a synthetic vocabulary with awkward tokens, a reference
// recognizer over the symbolic grammar (independent of the byte program and the matcher), and
// random generation through the matcher's masks.
#pragma once

#include <gtest/gtest.h>

#include <map>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "grammar/grammar.h"
#include "grammar/grammar_matcher.h"
#include "model/unicode_util.h"

namespace infergrid::test {

// Every single byte, then random strings over JSON-ish characters, some multi-byte characters
// and broken UTF-8 (tokens that end inside a character), duplicates included; the last id is the
// end token (no text).
inline std::shared_ptr<const TokenVocabulary> synthetic_vocabulary(uint32_t seed, int n_random) {
  std::vector<std::string> pieces;
  for (int b = 0; b < 256; ++b) pieces.push_back(std::string(1, static_cast<char>(b)));
  const std::vector<std::string> atoms = {
      "{",  "}",    "[",    "]",        "\"",       ":",  ",",    " ",    "\n",    "\\",
      "a",  "b",    "e",    "l",        "n",        "r",  "s",    "t",    "u",     "0",
      "1",  "5",    "9",    "-",        ".",        "E",  "true", "null", "false", "é",
      "日", "\xE6", "\x97", "\xF0\x9F", "\x98\x80", "\t", "x",    "_"};
  std::mt19937 rng(seed);
  for (int i = 0; i < n_random; ++i) {
    std::string piece;
    const int n = 1 + static_cast<int>(rng() % 5);
    for (int k = 0; k < n; ++k) piece += atoms[rng() % atoms.size()];
    pieces.push_back(piece);
  }
  const std::string duplicate = pieces.back();
  pieces.push_back(duplicate);  // a duplicate piece under another id
  pieces.push_back("");         // the end token
  const auto end_id = static_cast<int32_t>(pieces.size() - 1);
  return std::make_shared<TokenVocabulary>(std::move(pieces), std::vector<int32_t>{end_id});
}

// Whether `text` (code points) is a sentence of the grammar: the end positions each rule can
// reach from each start position, memoized. Correct for grammars without left recursion.
class ReferenceRecognizer {
 public:
  explicit ReferenceRecognizer(const SymbolicGrammar& g) : g_(g) {}

  bool matches(const std::string& utf8) {
    text_.clear();
    memo_.clear();
    for (size_t i = 0; i < utf8.size();) {
      size_t length = 0;
      auto cp = decode_utf8(utf8, i, &length);
      if (!cp) return false;
      text_.push_back(*cp);
      i += length;
    }
    return ends(g_.root, 0).count(text_.size()) > 0;
  }

 private:
  const std::set<size_t>& ends(uint32_t rule, size_t start) {
    const auto key = std::make_pair(rule, start);
    auto it = memo_.find(key);
    if (it != memo_.end()) return it->second;
    std::set<size_t> out;
    for (const auto& alternative : g_.rules[rule].alternatives) {
      std::set<size_t> positions = {start};
      for (const GrammarSymbol& s : alternative) {
        std::set<size_t> next;
        for (size_t p : positions) {
          if (s.is_rule) {
            const auto& e = ends(s.rule, p);
            next.insert(e.begin(), e.end());
          } else if (p < text_.size()) {
            for (const CodepointRange& r : s.ranges) {
              if (text_[p] >= r.lo && text_[p] <= r.hi) next.insert(p + 1);
            }
          }
        }
        positions = std::move(next);
        if (positions.empty()) break;
      }
      out.insert(positions.begin(), positions.end());
    }
    return memo_[key] = std::move(out);
  }

  const SymbolicGrammar& g_;
  std::vector<uint32_t> text_;
  std::map<std::pair<uint32_t, size_t>, std::set<size_t>> memo_;
};

inline bool mask_bit(const std::vector<uint64_t>& mask, int32_t id) {
  return (mask[static_cast<size_t>(id) >> 6] >> (id & 63)) & 1;
}

// Samples tokens the mask allows until the end token is taken, favouring tokens that close
// things (quotes, brackets, the end) so that outputs finish. Returns the text, or an error.
inline Result<std::string> generate_constrained(std::shared_ptr<const CompiledGrammar> compiled,
                                                uint32_t seed, int max_steps = 4000) {
  GrammarMatcher matcher(compiled);
  const TokenVocabulary& vocab = compiled->vocabulary();
  std::mt19937 rng(seed);
  std::vector<uint64_t> mask(vocab.mask_words());
  std::string text;
  for (int step = 0; step < max_steps; ++step) {
    IG_RETURN_IF_ERROR(matcher.fill_mask(mask));
    std::vector<int32_t> allowed;
    std::vector<int32_t> closing;
    for (int32_t id = 0; id < vocab.n_vocab(); ++id) {
      if (!mask_bit(mask, id)) continue;
      allowed.push_back(id);
      const std::string& piece = vocab.piece(id);
      if (vocab.is_end(id) || piece.find_first_of("\"]}") != std::string::npos) {
        closing.push_back(id);
      }
    }
    if (allowed.empty()) {
      return make_error(StatusCode::kInternal, "empty mask after '{}'", text);
    }
    const auto& pool = (!closing.empty() && rng() % 3 == 0) ? closing : allowed;
    const int32_t token = pool[rng() % pool.size()];
    IG_RETURN_IF_ERROR(matcher.accept_token(token));
    if (vocab.is_end(token)) return text;
    text += vocab.piece(token);
  }
  return make_error(StatusCode::kOutOfRange, "no end after {} steps: '{}'", max_steps, text);
}

}  // namespace infergrid::test
