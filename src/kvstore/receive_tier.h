// KvReceiveTier: the KV blocks another instance handed to this one (kvstore/kv_transfer.h),
// held in host memory until a request of this instance loads them or their lease ends. The
// engine's KvConnector reads it as a load-only tier: a prefix match continues into it as into
// the DRAM or SSD tier, and the loaded block then lives in engine memory.
//
// Invariants: every block was verified (key from its tokens, checksum) by the receiver before
// put(), and get() checks tokens and checksum again before returning it; a block is held until
// it is loaded (then it is gone from here), its lease ends, or room is needed for a newer one
// (oldest first), so the tier is empty again once every handed block is loaded or expired;
// resident bytes never exceed the capacity. Thread-safe.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "kvstore/kv_tier.h"

namespace infergrid {

class KvReceiveTier : public KvTier {
 public:
  using Clock = std::chrono::steady_clock;

  // payload_bytes: one block in the tiers' format (the layout tag's); capacity_bytes counts
  // tokens and payload of the resident blocks.
  KvReceiveTier(uint64_t layout_tag, int block_size, size_t payload_bytes, uint64_t capacity_bytes,
                std::chrono::milliseconds default_lease);

  std::string_view tier_name() const override { return "transfer"; }
  uint64_t layout_tag() const override { return layout_tag_; }
  size_t payload_bytes() const { return payload_bytes_; }
  int block_size() const { return block_size_; }
  bool contains(uint64_t key) override;
  void contains_each(std::span<const uint64_t> keys, std::span<uint8_t> present) override;
  // Held for the default lease.
  Status put(uint64_t key, uint64_t parent_key, std::span<const int32_t> tokens,
             std::span<const uint8_t> payload) override;
  // Held until `lease` from now (a block already held gets the later of the two ends).
  Status put_leased(uint64_t key, uint64_t parent_key, std::span<const int32_t> tokens,
                    std::span<const uint8_t> payload, std::chrono::milliseconds lease);
  // The same, taking the buffers, with the block's kv_block_checksum as its sender computed it
  // (not recomputed here: get() checks it before the block is used).
  Status put_verified(uint64_t key, uint64_t parent_key, std::vector<int32_t> tokens,
                      std::vector<uint8_t> payload, uint64_t checksum,
                      std::chrono::milliseconds lease);
  // A hit hands the block over: it is no longer held here.
  Result<bool> get(uint64_t key, std::span<const int32_t> tokens,
                   std::span<uint8_t> payload) override;
  TierStats stats() override;
  uint64_t expired() const;  // blocks whose lease ended before any request loaded them

 private:
  struct Block {
    uint64_t parent_key = 0;
    uint64_t checksum = 0;
    std::vector<int32_t> tokens;
    std::vector<uint8_t> payload;
    Clock::time_point lease_end;
    uint64_t arrival = 0;
  };
  size_t block_bytes() const;
  void expire_locked(Clock::time_point now);
  void erase_locked(uint64_t key);

  const uint64_t layout_tag_;
  const int block_size_;
  const size_t payload_bytes_;
  const uint64_t capacity_bytes_;
  const std::chrono::milliseconds default_lease_;
  mutable std::mutex mutex_;
  std::unordered_map<uint64_t, Block> blocks_;
  std::multimap<Clock::time_point, uint64_t> by_lease_end_;
  std::map<uint64_t, uint64_t> by_arrival_;  // arrival number -> key, oldest first
  uint64_t next_arrival_ = 0;
  TierStats stats_;
  uint64_t expired_ = 0;
};

}  // namespace infergrid
