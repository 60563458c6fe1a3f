#include "grammar/grammar_matcher.h"

#include <algorithm>

namespace infergrid {

namespace {

constexpr uint32_t kScratchBit = 0x80000000u;
constexpr uint32_t kBottom = 0xFFFFFFFFu;    // below the real stack: the grammar is complete
constexpr uint32_t kSentinel = 0xFFFFFFFEu;  // below a cached walk's frames: unknown
constexpr size_t kMaxExpandSteps = 1 << 16;
constexpr size_t kMaxCacheBytes = size_t{64} << 20;

size_t common_prefix(const std::string& a, const std::string& b) {
  const size_t n = std::min(a.size(), b.size());
  size_t i = 0;
  while (i < n && a[i] == b[i]) ++i;
  return i;
}

void set_bit(std::span<uint64_t> mask, int32_t id) {
  mask[static_cast<size_t>(id) >> 6] |= uint64_t{1} << (id & 63);
}

bool test_bit(std::span<const uint64_t> mask, int32_t id) {
  return (mask[static_cast<size_t>(id) >> 6] >> (id & 63)) & 1;
}

}  // namespace

TokenVocabulary::TokenVocabulary(std::vector<std::string> pieces, std::vector<int32_t> end_ids)
    : pieces_(std::move(pieces)) {
  for (int32_t id : end_ids) {
    if (id >= 0 && id < n_vocab() && !is_end(id)) end_ids_.push_back(id);
  }
  for (int32_t id = 0; id < n_vocab(); ++id) {
    if (pieces_[static_cast<size_t>(id)].empty() || is_end(id)) continue;
    sorted_.push_back(id);
    max_piece_bytes_ = std::max(max_piece_bytes_, pieces_[static_cast<size_t>(id)].size());
  }
  std::sort(sorted_.begin(), sorted_.end(), [&](int32_t a, int32_t b) {
    return pieces_[static_cast<size_t>(a)] < pieces_[static_cast<size_t>(b)] ||
           (pieces_[static_cast<size_t>(a)] == pieces_[static_cast<size_t>(b)] && a < b);
  });
}

bool TokenVocabulary::is_end(int32_t id) const {
  return std::find(end_ids_.begin(), end_ids_.end(), id) != end_ids_.end();
}

CompiledGrammar::CompiledGrammar(std::shared_ptr<const Grammar> grammar,
                                 std::shared_ptr<const TokenVocabulary> vocabulary)
    : grammar_(std::move(grammar)), vocabulary_(std::move(vocabulary)) {
  const size_t entry_bytes = vocabulary_->mask_words() * sizeof(uint64_t);
  max_entries_ = std::clamp<size_t>(kMaxCacheBytes / std::max<size_t>(entry_bytes, 1), 64, 8192);
}

size_t CompiledGrammar::KeyHash::operator()(const PositionKey& key) const {
  uint64_t h = 0xcbf29ce484222325ull;
  for (uint32_t v : key) h = (h ^ v) * 0x100000001b3ull;
  return static_cast<size_t>(h);
}

std::shared_ptr<const CompiledGrammar::PositionMask> CompiledGrammar::find(
    const PositionKey& key) const {
  std::lock_guard lock(mutex_);
  auto it = cache_.find(key);
  if (it == cache_.end()) {
    ++stats_.misses;
    return nullptr;
  }
  ++stats_.hits;
  return it->second;
}

void CompiledGrammar::insert(const PositionKey& key,
                             std::shared_ptr<const PositionMask> mask) const {
  std::lock_guard lock(mutex_);
  if (cache_.size() >= max_entries_) cache_.clear();  // rare: a grammar with very many positions
  cache_.emplace(key, std::move(mask));
}

CompiledGrammar::CacheStats CompiledGrammar::cache_stats() const {
  std::lock_guard lock(mutex_);
  CacheStats s = stats_;
  s.entries = cache_.size();
  return s;
}

GrammarMatcher::GrammarMatcher(std::shared_ptr<const CompiledGrammar> grammar)
    : grammar_(std::move(grammar)), g_(grammar_->grammar()), vocab_(grammar_->vocabulary()) {
  bool escaped = false;
  for (uint32_t start : g_.alternatives(g_.root())) {
    expand<true>(start, kBottom, state_.tops, 0, state_.can_end, escaped);
  }
  std::sort(state_.tops.begin(), state_.tops.end());
  levels_.reserve(vocab_.max_piece_bytes() + 1);
}

const GrammarMatcher::Frame& GrammarMatcher::frame(uint32_t id) const {
  return (id & kScratchBit) ? scratch_[id & ~kScratchBit] : frames_[id];
}

uint32_t GrammarMatcher::persistent_frame(uint32_t pos, uint32_t parent) {
  const uint64_t key = (uint64_t{pos} << 32) | parent;
  auto [it, inserted] = frame_ids_.try_emplace(key, static_cast<uint32_t>(frames_.size()));
  if (inserted) frames_.push_back({pos, parent});
  return it->second;
}

uint32_t GrammarMatcher::scratch_frame(uint32_t pos, uint32_t parent) {
  scratch_.push_back({pos, parent});
  return static_cast<uint32_t>(scratch_.size() - 1) | kScratchBit;
}

template <bool kPersistent>
void GrammarMatcher::expand(uint32_t pos, uint32_t parent, std::vector<uint32_t>& tops, size_t from,
                            bool& can_end, bool& escaped) {
  const auto& program = g_.program();
  work_.clear();
  work_.emplace_back(pos, parent);
  size_t steps = 0;
  while (!work_.empty()) {
    const auto [p, par] = work_.back();
    work_.pop_back();
    if (++steps > kMaxExpandSteps) {
      overflow_ = true;
      return;
    }
    const Grammar::Instruction ins = program[p];
    if (ins.op == Grammar::Op::kBytes) {
      bool duplicate = false;
      for (size_t i = from; i < tops.size() && !duplicate; ++i) {
        const Frame& f = frame(tops[i]);
        duplicate = f.pos == p && f.parent == par;
      }
      if (duplicate) continue;
      if (tops.size() - from >= kMaxStacks) {
        overflow_ = true;
        return;
      }
      tops.push_back(kPersistent ? persistent_frame(p, par) : scratch_frame(p, par));
    } else if (ins.op == Grammar::Op::kEnd) {
      if (par == kBottom) {
        can_end = true;
      } else if (par == kSentinel) {
        escaped = true;
      } else {
        const Frame f = frame(par);
        work_.emplace_back(f.pos, f.parent);
      }
    } else {
      // A call whose return position is the end of its alternative returns straight to the
      // caller's caller, so right recursion (x*, strings) keeps the stack flat.
      const uint32_t ret =
          program[p + 1].op == Grammar::Op::kEnd
              ? par
              : (kPersistent ? persistent_frame(p + 1, par) : scratch_frame(p + 1, par));
      const auto& alternatives = g_.alternatives(ins.arg);
      for (auto it = alternatives.rbegin(); it != alternatives.rend(); ++it) {
        work_.emplace_back(*it, ret);
      }
    }
  }
}

template <bool kPersistent>
void GrammarMatcher::advance(std::span<const uint32_t> tops, uint8_t byte,
                             std::vector<uint32_t>& out, size_t from, bool& can_end,
                             bool& escaped) {
  const auto& program = g_.program();
  const auto& sets = g_.byte_sets();
  for (uint32_t top : tops) {
    const Frame f = frame(top);
    if (Grammar::contains(sets[program[f.pos].arg], byte)) {
      expand<kPersistent>(f.pos + 1, f.parent, out, from, can_end, escaped);
    }
  }
}

Result<GrammarMatcher::State> GrammarMatcher::advance_state(const State& state,
                                                            std::string_view bytes) {
  State current = state;
  for (size_t i = 0; i < bytes.size(); ++i) {
    if (current.tops.empty()) {
      return make_error(StatusCode::kInvalidArgument,
                        "the grammar allows nothing after byte {} of the text", i);
    }
    State next;
    bool escaped = false;
    advance<true>(current.tops, static_cast<uint8_t>(bytes[i]), next.tops, 0, next.can_end,
                  escaped);
    if (overflow_) {
      overflow_ = false;
      return make_error(StatusCode::kResourceExhausted,
                        "the grammar is too ambiguous to follow (over {} parses at once)",
                        kMaxStacks);
    }
    if (next.tops.empty() && !next.can_end) {
      return make_error(StatusCode::kInvalidArgument,
                        "the grammar does not allow byte {} (0x{:02x}) here", i,
                        static_cast<uint8_t>(bytes[i]));
    }
    std::sort(next.tops.begin(), next.tops.end());
    current = std::move(next);
  }
  return current;
}

Status GrammarMatcher::accept_token(int32_t token) {
  if (ended_) return make_error(StatusCode::kInvalidArgument, "the grammar has already ended");
  if (token < 0 || token >= vocab_.n_vocab()) {
    return make_error(StatusCode::kInvalidArgument, "token {} is out of range", token);
  }
  if (vocab_.is_end(token)) {
    if (!state_.can_end) {
      return make_error(StatusCode::kInvalidArgument,
                        "an end token before the grammar is complete");
    }
    ended_ = true;
    return Status::ok();
  }
  if (vocab_.piece(token).empty()) {
    return make_error(StatusCode::kInvalidArgument, "token {} has no text", token);
  }
  IG_ASSIGN_OR_RETURN(State next, advance_state(state_, vocab_.piece(token)));
  state_ = std::move(next);
  return Status::ok();
}

Status GrammarMatcher::accept_bytes(std::string_view bytes) {
  if (ended_) return make_error(StatusCode::kInvalidArgument, "the grammar has already ended");
  IG_ASSIGN_OR_RETURN(State next, advance_state(state_, bytes));
  state_ = std::move(next);
  return Status::ok();
}

void GrammarMatcher::walk(uint32_t root, std::span<const int32_t> tokens,
                          std::span<uint64_t> accepted, std::vector<int32_t>* uncertain) {
  enum class Outcome { kAccepted, kUncertain, kRejected };
  auto apply = [&](int32_t id, Outcome outcome) {
    if (outcome == Outcome::kAccepted) {
      set_bit(accepted, id);
    } else if (outcome == Outcome::kUncertain && uncertain != nullptr) {
      uncertain->push_back(id);
    }
  };
  levels_.clear();
  walk_tops_.clear();
  walk_tops_.push_back(root);
  levels_.push_back({0, 1, scratch_.size(), false, false, false});
  const std::string* previous = nullptr;
  size_t i = 0;
  while (i < tokens.size() && !overflow_) {
    const std::string& piece = vocab_.piece(tokens[i]);
    size_t depth = previous ? std::min(common_prefix(*previous, piece), levels_.size() - 1) : 0;
    levels_.resize(depth + 1);
    walk_tops_.resize(levels_[depth].tops_end);
    scratch_.resize(levels_[depth].scratch_end);
    bool stopped = false;
    while (depth < piece.size()) {
      const Level current = levels_[depth];
      if (current.tops_begin == current.tops_end) {
        stopped = true;
        break;
      }
      Level next{walk_tops_.size(), 0, 0, false, false, false};
      // The source tops live in the same buffer the new ones are appended to, so they are
      // read by index through a copy of the span bounds after each append.
      for (size_t t = current.tops_begin; t < current.tops_end; ++t) {
        const uint32_t top = walk_tops_[t];
        advance<false>(std::span<const uint32_t>(&top, 1), static_cast<uint8_t>(piece[depth]),
                       walk_tops_, next.tops_begin, next.can_end, next.escaped);
      }
      next.tops_end = walk_tops_.size();
      next.scratch_end = scratch_.size();
      next.escaped_so_far = current.escaped_so_far || next.escaped;
      levels_.push_back(next);
      ++depth;
    }
    Outcome outcome;
    const Level& last = levels_[depth];
    if (!stopped && (last.tops_end > last.tops_begin || last.can_end || last.escaped)) {
      outcome = Outcome::kAccepted;
    } else {
      // An escape at a shallower depth left bytes for frames this walk cannot see.
      const bool escaped_before = stopped ? last.escaped_so_far : levels_[depth - 1].escaped_so_far;
      outcome = escaped_before ? Outcome::kUncertain : Outcome::kRejected;
    }
    apply(tokens[i], outcome);
    previous = &piece;
    ++i;
    if (stopped) {
      // Every following token that shares these `depth` bytes ends the same way.
      while (i < tokens.size()) {
        const std::string& next_piece = vocab_.piece(tokens[i]);
        if (common_prefix(*previous, next_piece) < depth) break;
        apply(tokens[i], outcome);
        previous = &next_piece;
        ++i;
      }
    }
  }
}

std::shared_ptr<const CompiledGrammar::PositionMask> GrammarMatcher::position_mask(uint32_t top) {
  CompiledGrammar::PositionKey key;
  uint32_t id = top;
  for (int k = 0; k < CompiledGrammar::kCacheFrames && id != kBottom; ++k) {
    key.push_back(frames_[id].pos);
    id = frames_[id].parent;
  }
  const uint32_t bottom = id == kBottom ? kBottom : kSentinel;
  key.push_back(bottom);
  if (auto cached = grammar_->find(key)) return cached;

  // The walk starts from a copy of just those frames, above a sentinel standing for the rest.
  scratch_.clear();
  uint32_t root = bottom;
  for (size_t k = key.size() - 1; k-- > 0;) root = scratch_frame(key[k], root);
  auto mask = std::make_shared<CompiledGrammar::PositionMask>();
  mask->accepted.assign(vocab_.mask_words(), 0);
  walk(root, vocab_.sorted(), mask->accepted, &mask->uncertain);
  scratch_.clear();
  if (overflow_) return nullptr;
  grammar_->insert(key, mask);
  return mask;
}

Status GrammarMatcher::fill_mask(std::span<uint64_t> mask) {
  std::fill(mask.begin(), mask.end(), 0);
  if (ended_) return Status::ok();
  ++use_clock_;
  for (CachedMask& entry : recent_) {
    if (entry.can_end == state_.can_end && entry.tops == state_.tops) {
      std::copy(entry.mask.begin(), entry.mask.end(), mask.begin());
      entry.last_use = use_clock_;
      return Status::ok();
    }
  }
  if (state_.can_end) {
    for (int32_t id : vocab_.end_ids()) set_bit(mask, id);
  }
  std::vector<int32_t> pending;
  for (uint32_t top : state_.tops) {
    auto position = position_mask(top);
    if (!position) break;
    for (size_t w = 0; w < mask.size(); ++w) mask[w] |= position->accepted[w];
    pending.clear();
    for (int32_t id : position->uncertain) {
      if (!test_bit(mask, id)) pending.push_back(id);
    }
    if (pending.empty()) continue;
    scratch_.clear();
    walk(top, pending, mask, nullptr);
    scratch_.clear();
  }
  if (overflow_) {
    overflow_ = false;
    return make_error(StatusCode::kResourceExhausted,
                      "the grammar is too ambiguous to follow (over {} parses at once)",
                      kMaxStacks);
  }
  constexpr size_t kRecentStates = 8;
  CachedMask* slot = nullptr;
  if (recent_.size() < kRecentStates) {
    slot = &recent_.emplace_back();
  } else {
    slot = &*std::min_element(
        recent_.begin(), recent_.end(),
        [](const CachedMask& a, const CachedMask& b) { return a.last_use < b.last_use; });
  }
  slot->tops = state_.tops;
  slot->can_end = state_.can_end;
  slot->last_use = use_clock_;
  slot->mask.assign(mask.begin(), mask.end());
  return Status::ok();
}

}  // namespace infergrid
