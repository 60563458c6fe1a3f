// DiskTier: KV blocks on an SSD, one file per block under a directory, capacity-limited.
//
// A block file is a fixed header (magic, format version, the block's key and its parent's
// key, a layout tag naming the model fingerprint / block size / KV shape, the block's token
// ids, payload size) followed by the payload, with an XXH3 checksum over header and payload.
// Invariants: a file becomes visible under its final name only after it is completely written
// and flushed (write to a temporary name, fsync, rename), so a crash mid-write never leaves a
// block that passes its check with wrong contents; every read verifies magic, layout, key,
// tokens and checksum, and a block that fails is deleted and counted, never returned; blocks
// of another layout (model, quantization, block size) never match; total bytes stay within
// the capacity. Eviction is leaf-first LRU: only a block no other resident block continues
// (a leaf of the prefix tree) is a candidate, least recently used first, because a prefix match
// stops at its first missing block and an evicted ancestor would make its descendants dead
// weight; once a chain's leaf goes, its parent becomes a leaf and the next candidate. The index
// is rebuilt by scanning the directory on open, so blocks survive a restart. Thread-safe.
#pragma once

#include <cstdint>
#include <filesystem>
#include <list>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/status.h"
#include "kvstore/kv_tier.h"

namespace infergrid {

class DiskTier : public KvTier {
 public:
  // layout_tag: identifies what the payload bytes mean (model fingerprint, block size, KV
  // shape and dtype); blocks written under another tag are ignored and removed on open.
  DiskTier(std::filesystem::path dir, uint64_t capacity_bytes, uint64_t layout_tag,
           int block_tokens);

  // Creates the directory if needed and indexes the blocks already there.
  Status open();

  std::string_view tier_name() const override { return "disk"; }
  bool contains(uint64_t key) override;
  // Stores a block (replacing nothing: an existing key is kept). Evicts LRU blocks to fit.
  Status put(uint64_t key, uint64_t parent_key, std::span<const int32_t> tokens,
             std::span<const uint8_t> payload) override;
  // Reads a block into `payload` (whose size must match). Returns false on a miss, including
  // a block that failed its check (dropped and counted), or whose tokens differ.
  Result<bool> get(uint64_t key, std::span<const int32_t> tokens,
                   std::span<uint8_t> payload) override;

  TierStats stats() override;
  uint64_t layout_tag() const override { return layout_tag_; }
  void set_event_observer(EventObserver observer) override;
  const std::filesystem::path& dir() const { return dir_; }

 private:
  struct Entry {
    uint64_t bytes;
    uint64_t parent_key;
    uint32_t children = 0;  // resident blocks whose parent this is (counted when they arrive)
    std::list<uint64_t>::iterator lru;  // position in lru_ while children == 0
  };
  std::filesystem::path path_for(uint64_t key) const;
  void erase_locked(uint64_t key, bool count_as_eviction);
  // Makes room for one block: the least recently used leaf other than `keep` goes; false when
  // only `keep` could.
  bool evict_one_locked(std::optional<uint64_t> keep);
  void add_child_locked(uint64_t parent_key, uint64_t child_key);
  void remove_child_locked(uint64_t parent_key, uint64_t child_key);
  size_t file_bytes(size_t payload_bytes) const;

  const std::filesystem::path dir_;
  const uint64_t capacity_bytes_;
  const uint64_t layout_tag_;
  const int block_tokens_;
  mutable std::mutex mutex_;
  EventObserver observer_;  // guarded by mutex_
  std::unordered_map<uint64_t, Entry> index_;
  std::list<uint64_t> lru_;  // the leaves, most recently used first
  TierStats stats_;
};

}  // namespace infergrid
