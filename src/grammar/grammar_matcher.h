// Constrained decoding: which tokens a grammar allows next, and the state after each one.
//
// A matcher's state is a set of stacks of a pushdown automaton over the grammar's byte program
// (llama.cpp's grammar sampler works the same way): each stack's top is a byte instruction, the
// frames below it are return positions. A token is allowed when some stack can consume all of
// its bytes. Computing that for a whole vocabulary is a walk over the tokens in byte order that
// shares the work of common prefixes and abandons a prefix as soon as no stack survives it.
//
// Two caches keep the walk off the decode path, after XGrammar's adaptive token mask cache:
//  * per grammar (shared by every request with the same grammar text): for the top
//    kCacheFrames return positions of a stack, the tokens accepted without looking deeper into
//    the stack, and the few "uncertain" ones whose bytes run past those frames. A stack inside
//    a JSON string, for one, decides every token but those containing a quote this way;
//  * per matcher: the finished mask of the last few states, which repeat (a string goes on,
//    character after character, in the same state).
// Only uncertain tokens are re-checked against the real stack.
//
// Invariants: the state never holds a stack the grammar cannot complete (Grammar guarantees every
// reachable rule is productive), so an empty mask means the vocabulary cannot spell what the
// grammar needs; accept_token() leaves the state unchanged when it refuses a token.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "core/status.h"
#include "grammar/grammar.h"

namespace infergrid {

// The bytes each token adds to the output, sorted for the walk.
class TokenVocabulary {
 public:
  // pieces[id]: what token `id` appends to the text (empty: a control token, which no grammar
  // allows); end_ids: tokens that end generation, allowed exactly when the grammar is complete.
  TokenVocabulary(std::vector<std::string> pieces, std::vector<int32_t> end_ids);

  int32_t n_vocab() const { return static_cast<int32_t>(pieces_.size()); }
  size_t mask_words() const { return (pieces_.size() + 63) / 64; }
  const std::string& piece(int32_t id) const { return pieces_[static_cast<size_t>(id)]; }
  const std::vector<int32_t>& end_ids() const { return end_ids_; }
  bool is_end(int32_t id) const;
  // Tokens with a non-empty piece, in byte order of their pieces.
  const std::vector<int32_t>& sorted() const { return sorted_; }
  size_t max_piece_bytes() const { return max_piece_bytes_; }

 private:
  std::vector<std::string> pieces_;
  std::vector<int32_t> end_ids_;
  std::vector<int32_t> sorted_;
  size_t max_piece_bytes_ = 0;
};

// A grammar bound to a vocabulary, with the per-position masks worked out so far. Thread-safe.
class CompiledGrammar {
 public:
  static constexpr int kCacheFrames = 3;

  CompiledGrammar(std::shared_ptr<const Grammar> grammar,
                  std::shared_ptr<const TokenVocabulary> vocabulary);

  const Grammar& grammar() const { return *grammar_; }
  const TokenVocabulary& vocabulary() const { return *vocabulary_; }

  struct PositionMask {
    std::vector<uint64_t> accepted;  // bit per token id
    std::vector<int32_t> uncertain;  // token ids, in the vocabulary's byte order
  };
  using PositionKey = std::vector<uint32_t>;  // program positions, top first; ~0u: stack bottom
  std::shared_ptr<const PositionMask> find(const PositionKey& key) const;
  void insert(const PositionKey& key, std::shared_ptr<const PositionMask> mask) const;

  struct CacheStats {
    uint64_t hits = 0;
    uint64_t misses = 0;
    size_t entries = 0;
  };
  CacheStats cache_stats() const;

 private:
  struct KeyHash {
    size_t operator()(const PositionKey& key) const;
  };
  std::shared_ptr<const Grammar> grammar_;
  std::shared_ptr<const TokenVocabulary> vocabulary_;
  size_t max_entries_;
  mutable std::mutex mutex_;
  mutable std::unordered_map<PositionKey, std::shared_ptr<const PositionMask>, KeyHash> cache_;
  mutable CacheStats stats_;
};

class GrammarMatcher {
 public:
  explicit GrammarMatcher(std::shared_ptr<const CompiledGrammar> grammar);

  // mask (vocabulary().mask_words() words): bit `id` set for every token allowed next. Fails
  // only when the grammar is too ambiguous to track (more than kMaxStacks stacks at once).
  Status fill_mask(std::span<uint64_t> mask);
  // Advances past `token`. An end token is accepted when the text is complete, and ends it.
  Status accept_token(int32_t token);
  // Advances past raw text (for tests and forced prefixes).
  Status accept_bytes(std::string_view bytes);

  bool can_end() const { return state_.can_end; }
  // Complete, and nothing more may follow: only an end token is allowed.
  bool must_end() const { return state_.tops.empty(); }
  bool ended() const { return ended_; }
  const CompiledGrammar& compiled() const { return *grammar_; }

  static constexpr size_t kMaxStacks = 512;

 private:
  struct Frame {
    uint32_t pos;
    uint32_t parent;
  };
  struct State {
    std::vector<uint32_t> tops;  // frame ids whose position is a kBytes instruction
    bool can_end = false;
  };
  struct Level {  // one depth of a walk
    size_t tops_begin, tops_end, scratch_end;
    bool can_end, escaped, escaped_so_far;
  };

  const Frame& frame(uint32_t id) const;
  uint32_t persistent_frame(uint32_t pos, uint32_t parent);
  uint32_t scratch_frame(uint32_t pos, uint32_t parent);
  // Adds the stacks reachable from (pos, parent) without consuming a byte to tops_buffer_[from..]
  template <bool kPersistent>
  void expand(uint32_t pos, uint32_t parent, std::vector<uint32_t>& tops, size_t from,
              bool& can_end, bool& escaped);
  template <bool kPersistent>
  void advance(std::span<const uint32_t> tops, uint8_t byte, std::vector<uint32_t>& out,
               size_t from, bool& can_end, bool& escaped);
  Result<State> advance_state(const State& state, std::string_view bytes);
  // Walks `tokens` (byte order) from the stack whose top frame is `root`; sets accepted bits,
  // collects tokens that escape past a sentinel bottom.
  void walk(uint32_t root, std::span<const int32_t> tokens, std::span<uint64_t> accepted,
            std::vector<int32_t>* uncertain);
  std::shared_ptr<const CompiledGrammar::PositionMask> position_mask(uint32_t top);

  std::shared_ptr<const CompiledGrammar> grammar_;
  const Grammar& g_;
  const TokenVocabulary& vocab_;
  State state_;
  bool ended_ = false;
  bool overflow_ = false;  // a walk or advance exceeded kMaxStacks

  std::vector<Frame> frames_;  // persistent, interned
  std::unordered_map<uint64_t, uint32_t> frame_ids_;
  std::vector<Frame> scratch_;  // a walk's frames, truncated as it backtracks
  std::vector<std::pair<uint32_t, uint32_t>> work_;
  std::vector<uint32_t> walk_tops_;
  std::vector<Level> levels_;

  struct CachedMask {
    std::vector<uint32_t> tops;
    bool can_end = false;
    uint64_t last_use = 0;
    std::vector<uint64_t> mask;
  };
  std::vector<CachedMask> recent_;
  uint64_t use_clock_ = 0;
};

}  // namespace infergrid
