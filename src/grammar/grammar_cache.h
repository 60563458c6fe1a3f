// GrammarCache: compiled grammars for one model's vocabulary, shared by the requests that send
// the same grammar text (an agent sends the same schema with every call), so their per-position
// token masks are worked out once.
//
// Invariants: thread-safe; the vocabulary is built from the tokenizer on first use (a server
// that never constrains output never pays for it); at most `capacity` grammars are held, the
// least recently used dropped first (requests still running keep theirs alive).
#pragma once

#include <cstddef>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>

#include "core/status.h"
#include "grammar/grammar_matcher.h"
#include "model/tokenizer.h"

namespace infergrid {

class GrammarCache {
 public:
  explicit GrammarCache(const Tokenizer& tokenizer, size_t capacity = 64);

  // The grammar of GBNF `source`, compiled and bound to the vocabulary. Errors: the parser's.
  Result<std::shared_ptr<const CompiledGrammar>> get(std::string_view source);
  const std::shared_ptr<const TokenVocabulary>& vocabulary();

 private:
  const Tokenizer& tokenizer_;
  size_t capacity_;
  std::once_flag vocabulary_once_;
  std::shared_ptr<const TokenVocabulary> vocabulary_;
  std::mutex mutex_;
  std::list<std::pair<std::string, std::shared_ptr<const CompiledGrammar>>> lru_;  // newest first
  std::unordered_map<std::string_view, decltype(lru_)::iterator> index_;
};

}  // namespace infergrid
