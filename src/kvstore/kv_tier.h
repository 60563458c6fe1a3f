// KvTier: one store of KV blocks below engine memory (the shared host-DRAM segment, the SSD
// directory, later a remote instance), as the KvConnector sees it.
//
// Contract shared by every tier: blocks are named by block_key (kvstore/block_key.h) and hold
// payloads of one layout tag only; get() verifies key, tokens and checksum and never returns a
// block that fails (it is dropped and counted instead); a tier may evict at any time, and one
// that has a tier below it hands each evicted block to its evict hook first. Thread-safe.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string_view>

#include "core/status.h"

namespace infergrid {

struct TierStats {
  uint64_t hits = 0;
  uint64_t misses = 0;
  uint64_t stored = 0;
  uint64_t evicted = 0;
  uint64_t dropped_corrupt = 0;  // blocks that failed their check on read or open
  uint64_t bytes_written = 0;
  uint64_t bytes_read = 0;
  uint64_t blocks = 0;      // resident now
  uint64_t used_bytes = 0;  // resident now
  uint64_t capacity_bytes = 0;
};

class KvTier {
 public:
  virtual ~KvTier() = default;

  virtual std::string_view tier_name() const = 0;  // "dram", "disk": for logs and metrics
  virtual uint64_t layout_tag() const = 0;
  virtual bool contains(uint64_t key) = 0;
  // present[i] = contains(keys[i]); a tier may answer them all in one pass.
  virtual void contains_each(std::span<const uint64_t> keys, std::span<uint8_t> present) {
    for (size_t i = 0; i < keys.size(); ++i) present[i] = contains(keys[i]) ? 1 : 0;
  }
  virtual Status put(uint64_t key, uint64_t parent_key, std::span<const int32_t> tokens,
                     std::span<const uint8_t> payload) = 0;
  // Fills payload with the block stored under key; false on a miss (or a dropped block).
  virtual Result<bool> get(uint64_t key, std::span<const int32_t> tokens,
                           std::span<uint8_t> payload) = 0;
  virtual TierStats stats() = 0;

  // Called with each block the tier evicts, before it is gone (outside any lock); a tier that
  // deletes without handing blocks on ignores it.
  using EvictHook =
      std::function<void(uint64_t key, uint64_t parent_key, std::span<const int32_t> tokens,
                         std::span<const uint8_t> payload)>;
  virtual void set_evict_hook(EvictHook /*hook*/) {}

  // Told of every block the tier gains (true) or loses (false), under the tier's lock (the
  // observer must not call back into the tier); on being set it is told of every block held
  // now, so a tier reopened after a restart announces what it kept. Null unhooks. A tier that
  // cannot say (a segment other processes also write) ignores it.
  using EventObserver = std::function<void(bool stored, uint64_t key)>;
  virtual void set_event_observer(EventObserver /*observer*/) {}
};

}  // namespace infergrid
