#include "kvstore/receive_tier.h"

#include <algorithm>
#include <cstring>

#include "kvstore/kv_transfer_frame.h"

namespace infergrid {

KvReceiveTier::KvReceiveTier(uint64_t layout_tag, int block_size, size_t payload_bytes,
                             uint64_t capacity_bytes, std::chrono::milliseconds default_lease)
    : layout_tag_(layout_tag),
      block_size_(block_size),
      payload_bytes_(payload_bytes),
      capacity_bytes_(capacity_bytes),
      default_lease_(default_lease) {
  stats_.capacity_bytes = capacity_bytes;
}

size_t KvReceiveTier::block_bytes() const {
  return payload_bytes_ + static_cast<size_t>(block_size_) * sizeof(int32_t);
}

void KvReceiveTier::erase_locked(uint64_t key) {
  auto it = blocks_.find(key);
  if (it == blocks_.end()) return;
  auto [first, last] = by_lease_end_.equal_range(it->second.lease_end);
  for (auto l = first; l != last; ++l) {
    if (l->second == key) {
      by_lease_end_.erase(l);
      break;
    }
  }
  by_arrival_.erase(it->second.arrival);
  blocks_.erase(it);
  stats_.blocks = blocks_.size();
  stats_.used_bytes = blocks_.size() * block_bytes();
}

void KvReceiveTier::expire_locked(Clock::time_point now) {
  while (!by_lease_end_.empty() && by_lease_end_.begin()->first <= now) {
    const uint64_t key = by_lease_end_.begin()->second;
    erase_locked(key);
    ++expired_;
  }
}

bool KvReceiveTier::contains(uint64_t key) {
  std::lock_guard lock(mutex_);
  expire_locked(Clock::now());
  return blocks_.contains(key);
}

void KvReceiveTier::contains_each(std::span<const uint64_t> keys, std::span<uint8_t> present) {
  std::lock_guard lock(mutex_);
  expire_locked(Clock::now());
  for (size_t i = 0; i < keys.size(); ++i) present[i] = blocks_.contains(keys[i]) ? 1 : 0;
}

Status KvReceiveTier::put(uint64_t key, uint64_t parent_key, std::span<const int32_t> tokens,
                          std::span<const uint8_t> payload) {
  return put_leased(key, parent_key, tokens, payload, default_lease_);
}

Status KvReceiveTier::put_leased(uint64_t key, uint64_t parent_key, std::span<const int32_t> tokens,
                                 std::span<const uint8_t> payload,
                                 std::chrono::milliseconds lease) {
  return put_verified(key, parent_key, std::vector<int32_t>(tokens.begin(), tokens.end()),
                      std::vector<uint8_t>(payload.begin(), payload.end()),
                      kv_block_checksum(key, tokens, payload), lease);
}

Status KvReceiveTier::put_verified(uint64_t key, uint64_t parent_key, std::vector<int32_t> tokens,
                                   std::vector<uint8_t> payload, uint64_t checksum,
                                   std::chrono::milliseconds lease) {
  if (tokens.size() != static_cast<size_t>(block_size_) || payload.size() != payload_bytes_) {
    return make_error(StatusCode::kInvalidArgument,
                      "a received block of {} tokens and {} bytes; this tier holds {} and {}",
                      tokens.size(), payload.size(), block_size_, payload_bytes_);
  }
  if (block_bytes() > capacity_bytes_) {
    return make_error(StatusCode::kResourceExhausted, "the transfer tier holds no block");
  }
  const auto now = Clock::now();
  std::lock_guard lock(mutex_);
  expire_locked(now);
  Clock::time_point lease_end = now + lease;
  if (auto it = blocks_.find(key); it != blocks_.end()) {
    lease_end = std::max(lease_end, it->second.lease_end);
    erase_locked(key);
  }
  while ((blocks_.size() + 1) * block_bytes() > capacity_bytes_) {
    erase_locked(by_arrival_.begin()->second);
    ++stats_.evicted;
  }
  const size_t payload_size = payload.size();
  Block b;
  b.parent_key = parent_key;
  b.checksum = checksum;
  b.tokens = std::move(tokens);
  b.payload = std::move(payload);
  b.lease_end = lease_end;
  b.arrival = next_arrival_++;
  by_lease_end_.emplace(lease_end, key);
  by_arrival_.emplace(b.arrival, key);
  blocks_.emplace(key, std::move(b));
  ++stats_.stored;
  stats_.bytes_written += payload_size;
  stats_.blocks = blocks_.size();
  stats_.used_bytes = blocks_.size() * block_bytes();
  return Status::ok();
}

Result<bool> KvReceiveTier::get(uint64_t key, std::span<const int32_t> tokens,
                                std::span<uint8_t> payload) {
  std::lock_guard lock(mutex_);
  expire_locked(Clock::now());
  auto it = blocks_.find(key);
  if (it == blocks_.end()) {
    ++stats_.misses;
    return false;
  }
  const Block& b = it->second;
  if (payload.size() != b.payload.size() || tokens.size() != b.tokens.size() ||
      !std::equal(tokens.begin(), tokens.end(), b.tokens.begin()) ||
      kv_block_checksum(key, b.tokens, b.payload) != b.checksum) {
    ++stats_.dropped_corrupt;
    erase_locked(key);
    return false;
  }
  std::memcpy(payload.data(), b.payload.data(), b.payload.size());
  ++stats_.hits;
  stats_.bytes_read += payload.size();
  erase_locked(key);
  return true;
}

TierStats KvReceiveTier::stats() {
  std::lock_guard lock(mutex_);
  expire_locked(Clock::now());
  return stats_;
}

uint64_t KvReceiveTier::expired() const {
  std::lock_guard lock(mutex_);
  return expired_;
}

}  // namespace infergrid
