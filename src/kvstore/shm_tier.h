// ShmTier: the host-DRAM KV tier, a named POSIX shared-memory segment that every
// `infergrid serve` process of the same model layout on this host opens, so one process can
// serve a prefix another computed.
//
// Layout: a header (magic, version, layout tag, geometry, a robust process-shared mutex, an
// LRU clock, shared counters, list heads), then an array of slot headers (key, parent key,
// state, last use, checksum, LRU links), then a hash index (open addressing, linear probing,
// two buckets per slot) from key to slot, then the slots' tokens and payloads. A lookup, an
// insert and an eviction are O(1) under the lock, whatever the capacity.
// Invariants: the segment name contains the layout tag, and the header's tag and geometry are
// checked on open, so blocks of another model, quantization or block size are never seen;
// every slot change happens under the mutex, which is robust (a process killed while holding
// it hands the next locker EOWNERDEAD, which then clears every slot left half-written); the
// slot headers are the truth and the index and lists are derived from them, rebuilt after a
// crash under the lock or when a damaged link is seen, so a damaged index can cost a miss,
// never a wrong block; every read verifies key, tokens and an XXH3 checksum of tokens +
// payload, and a slot that fails is dropped and counted, never returned. Capacity is fixed at
// creation (slots). Eviction is leaf-first LRU: when full, the least recently used slot that no
// other ready slot continues is overwritten (a prefix match stops at its first missing block,
// so an evicted ancestor would make its descendants dead weight); a chain is consumed from its
// end, its parent becoming the next candidate.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "core/status.h"
#include "kvstore/kv_tier.h"

namespace infergrid {

class ShmTier : public KvTier {
 public:
  ~ShmTier();
  ShmTier(const ShmTier&) = delete;
  ShmTier& operator=(const ShmTier&) = delete;

  // Opens the segment `/infergrid-kv-<name>-<layout tag>-v<format version>`, creating it with room
  // for capacity_bytes of slots if it does not exist. A segment that exists keeps its capacity.
  static Result<std::unique_ptr<ShmTier>> open(const std::string& name, uint64_t capacity_bytes,
                                               uint64_t layout_tag, int block_tokens,
                                               size_t payload_bytes);
  // The capacity_bytes that gives exactly n_slots slots of this geometry.
  static uint64_t bytes_for_slots(uint64_t n_slots, int block_tokens, size_t payload_bytes);
  // Removes the segment's name (it lives on until every process unmaps it).
  static void unlink(const std::string& name, uint64_t layout_tag);

  std::string_view tier_name() const override { return "dram"; }
  bool contains(uint64_t key) override;
  // present[i] = contains(keys[i]), in one pass over the slots under one lock.
  void contains_each(std::span<const uint64_t> keys, std::span<uint8_t> present) override;
  // Stores a block; when a ready slot must be overwritten, `on_evict` (if set) gets its
  // contents first (outside the lock), to move it down a tier.
  Status put(uint64_t key, uint64_t parent_key, std::span<const int32_t> tokens,
             std::span<const uint8_t> payload) override;
  Result<bool> get(uint64_t key, std::span<const int32_t> tokens,
                   std::span<uint8_t> payload) override;
  void set_evict_hook(EvictHook hook) override { evict_hook_ = std::move(hook); }

  // Counters shared by every process using the segment.
  TierStats stats() override;
  uint64_t layout_tag() const override;  // fixed at creation
  size_t payload_bytes() const { return payload_bytes_; }
  const std::string& segment_name() const { return segment_name_; }
  uint32_t n_slots() const;
  // For corruption tests: the mapped bytes of slot i's tokens + payload.
  std::span<uint8_t> slot_bytes_for_testing(uint32_t slot);
  // For corruption tests: the mapped bytes of the hash index.
  std::span<uint8_t> index_bytes_for_testing();

  struct Header;
  struct SlotHeader;

 private:
  ShmTier() = default;
  class Lock;
  static size_t index_bytes(uint64_t n_slots);  // slot headers + buckets, 64-byte aligned
  static size_t slot_data_bytes(int block_tokens, size_t payload_bytes);  // 64-byte aligned
  // -1 when absent; *damaged (if given) is set when the probe met a sign of a damaged index.
  int find_locked(uint64_t key, bool* damaged) const;
  int find_repairing_locked(uint64_t key);  // rebuilds a damaged index, then finds
  uint32_t home_bucket(uint64_t key) const;
  bool valid_slot(int32_t i) const;
  bool insert_bucket_locked(uint64_t key, int32_t slot);  // false: no empty bucket
  void erase_bucket_locked(uint64_t key, int32_t slot);
  void unlink_lru_locked(int32_t i);
  void push_front_locked(int32_t i);
  void push_back_locked(int32_t i);
  void release_slot_locked(int32_t i);
  int32_t parent_slot_locked(int32_t i) const;  // the ready slot of i's parent, or -1
  int32_t victim_locked(int32_t keep) const;
  bool index_sane_locked() const;
  void rebuild_index_locked();

  std::string segment_name_;
  uint8_t* base_ = nullptr;
  size_t mapped_bytes_ = 0;
  Header* header_ = nullptr;
  SlotHeader* slots_ = nullptr;
  int32_t* buckets_ = nullptr;          // header_->n_buckets slot indices, kNone when empty
  std::vector<int32_t> rebuild_order_;  // rebuild_index_locked's scratch, n_slots reserved
  uint8_t* data_ = nullptr;  // slot i's tokens then payload at data_ + i * slot_data_bytes
  size_t slot_data_bytes_ = 0;
  size_t payload_bytes_ = 0;
  int block_tokens_ = 0;
  EvictHook evict_hook_;
};

}  // namespace infergrid
