#include "grammar/grammar_cache.h"

#include <vector>

namespace infergrid {

GrammarCache::GrammarCache(const Tokenizer& tokenizer, size_t capacity)
    : tokenizer_(tokenizer), capacity_(capacity == 0 ? 1 : capacity) {}

const std::shared_ptr<const TokenVocabulary>& GrammarCache::vocabulary() {
  std::call_once(vocabulary_once_, [this] {
    std::vector<std::string> pieces(static_cast<size_t>(tokenizer_.n_vocab()));
    // The text a token adds is what the output decoder appends for it; control tokens are
    // empty, so no grammar allows them (but the tool-call markers, which the decoder renders).
    for (int32_t id = 0; id < tokenizer_.n_vocab(); ++id) {
      pieces[static_cast<size_t>(id)] = tokenizer_.token_to_piece(id, false);
    }
    vocabulary_ = std::make_shared<TokenVocabulary>(std::move(pieces), tokenizer_.eog_ids());
  });
  return vocabulary_;
}

Result<std::shared_ptr<const CompiledGrammar>> GrammarCache::get(std::string_view source) {
  {
    std::lock_guard lock(mutex_);
    auto it = index_.find(source);
    if (it != index_.end()) {
      lru_.splice(lru_.begin(), lru_, it->second);
      return it->second->second;
    }
  }
  // Parsing runs outside the lock: a large grammar must not stall other requests' lookups.
  IG_ASSIGN_OR_RETURN(std::shared_ptr<const Grammar> grammar, Grammar::from_gbnf(source));
  auto compiled = std::make_shared<const CompiledGrammar>(std::move(grammar), vocabulary());
  std::lock_guard lock(mutex_);
  auto it = index_.find(source);
  if (it != index_.end()) return it->second->second;  // another request compiled it meanwhile
  lru_.emplace_front(std::string(source), compiled);
  index_.emplace(lru_.front().first, lru_.begin());
  while (lru_.size() > capacity_) {
    index_.erase(lru_.back().first);
    lru_.pop_back();
  }
  return std::shared_ptr<const CompiledGrammar>(compiled);
}

}  // namespace infergrid
