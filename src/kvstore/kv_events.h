// KvEventLog: the instance's record of which KV blocks it holds, as a numbered stream of
// "stored" and "removed" events that a router follows to know where each prefix's KV lives.
//
// Invariants: sequence numbers start at 1 and increase by one per event, with no gaps; the log
// keeps the last `capacity` events (a reader further behind must take a snapshot) and the set of
// blocks held now (the snapshot), so a snapshot at seq S plus the events after S is exactly the
// state at any later seq; the epoch is drawn at construction, so a reader that resumes against
// a restarted instance (whose numbers start again) can tell. Thread-safe: the engine's step
// thread writes, HTTP sessions read.
#pragma once

#include <cstdint>
#include <deque>
#include <mutex>
#include <optional>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace infergrid {

// Where a block is held, fastest first: engine memory, the host's shared DRAM segment, the SSD.
enum class KvTierKind : uint8_t { kEngine = 0, kDram = 1, kDisk = 2 };
inline constexpr int kKvTierKinds = 3;

std::string_view kv_tier_name(KvTierKind tier);
std::optional<KvTierKind> kv_tier_from_name(std::string_view name);

struct KvEvent {
  uint64_t seq = 0;
  bool stored = false;  // false: removed
  KvTierKind tier = KvTierKind::kEngine;
  uint64_t key = 0;
};

class KvEventLog {
 public:
  explicit KvEventLog(size_t capacity = size_t{1} << 16);

  void stored(KvTierKind tier, uint64_t key);
  // A key the tier does not hold is ignored (no event).
  void removed(KvTierKind tier, uint64_t key);

  uint64_t epoch() const { return epoch_; }
  uint64_t last_seq() const;

  // Appends the events after `since`, at most max_events of them; false (nothing appended) when
  // some of them are no longer kept, so the reader must start again from a snapshot.
  bool read_since(uint64_t since, size_t max_events, std::vector<KvEvent>& out) const;

  struct Snapshot {
    uint64_t seq = 0;  // the state after this event
    std::vector<std::pair<KvTierKind, uint64_t>> blocks;
  };
  Snapshot snapshot() const;
  size_t n_blocks() const;

 private:
  void append_locked(bool stored, KvTierKind tier, uint64_t key);

  const size_t capacity_;
  const uint64_t epoch_;
  mutable std::mutex mu_;
  std::deque<KvEvent> events_;                  // the last capacity_ events, oldest first
  uint64_t last_seq_ = 0;                       // guarded by mu_
  std::unordered_map<uint64_t, uint8_t> held_;  // key -> bit per KvTierKind; guarded by mu_
};

}  // namespace infergrid
