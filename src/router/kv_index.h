// KvIndex: the router's global index of which instance holds which KV block, in which tier,
// built from the instances' event streams (kvstore/kv_events.h) and read on every decision.
//
// Invariants: an (instance, key) entry exists exactly while some tier bit is set for it;
// match() only reads, and its cost is the number of holders of the keys it walks (it stops at
// the first key no candidate still matching holds), so a decision stays in microseconds with
// a million blocks indexed. Not thread-safe: the router touches it from one thread.
#pragma once

#include <cstdint>
#include <span>
#include <unordered_map>
#include <vector>

#include "kvstore/kv_events.h"

namespace infergrid {

using InstanceId = uint32_t;

class KvIndex {
 public:
  void stored(InstanceId instance, KvTierKind tier, uint64_t key);
  void removed(InstanceId instance, KvTierKind tier, uint64_t key);
  // Forgets everything known of the instance (a new snapshot, an instance gone).
  void clear(InstanceId instance);

  size_t n_blocks() const { return holders_.size(); }  // distinct keys
  size_t n_entries() const { return n_entries_; }      // (key, instance) pairs
  size_t n_entries_of(InstanceId instance) const {
    return instance < per_instance_.size() ? per_instance_[instance] : 0;
  }

  // How much of a prompt's block chain an instance can reuse: its engine holds the first
  // engine_blocks; the next tier_blocks are in its DRAM or SSD tier (a load, not a compute).
  struct Match {
    int engine_blocks = 0;
    int tier_blocks = 0;
    int total() const { return engine_blocks + tier_blocks; }
  };
  // matches[i] for instance i; instances past matches.size() are ignored. Zeroes it first.
  void match(std::span<const uint64_t> keys, std::span<Match> matches) const;

 private:
  struct Holder {
    InstanceId instance;
    uint8_t tiers;  // bit per KvTierKind
  };
  std::unordered_map<uint64_t, std::vector<Holder>> holders_;
  std::vector<size_t> per_instance_;
  size_t n_entries_ = 0;
};

}  // namespace infergrid
