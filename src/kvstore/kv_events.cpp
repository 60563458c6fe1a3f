#include "kvstore/kv_events.h"

#include <random>

namespace infergrid {

std::string_view kv_tier_name(KvTierKind tier) {
  switch (tier) {
    case KvTierKind::kEngine:
      return "engine";
    case KvTierKind::kDram:
      return "dram";
    case KvTierKind::kDisk:
      return "disk";
  }
  return "engine";
}

std::optional<KvTierKind> kv_tier_from_name(std::string_view name) {
  if (name == "engine") return KvTierKind::kEngine;
  if (name == "dram") return KvTierKind::kDram;
  if (name == "disk") return KvTierKind::kDisk;
  return std::nullopt;
}

namespace {

uint64_t random_epoch() {
  std::random_device device;
  const uint64_t epoch = (uint64_t{device()} << 32) ^ device();
  return epoch == 0 ? 1 : epoch;  // 0 means "no epoch" to readers
}

}  // namespace

KvEventLog::KvEventLog(size_t capacity)
    : capacity_(capacity < 1 ? 1 : capacity), epoch_(random_epoch()) {}

void KvEventLog::append_locked(bool stored, KvTierKind tier, uint64_t key) {
  if (events_.size() == capacity_) events_.pop_front();
  events_.push_back({++last_seq_, stored, tier, key});
}

void KvEventLog::stored(KvTierKind tier, uint64_t key) {
  const uint8_t bit = uint8_t{1} << static_cast<int>(tier);
  std::lock_guard lock(mu_);
  uint8_t& mask = held_[key];
  if (mask & bit) return;
  mask |= bit;
  append_locked(true, tier, key);
}

void KvEventLog::removed(KvTierKind tier, uint64_t key) {
  const uint8_t bit = uint8_t{1} << static_cast<int>(tier);
  std::lock_guard lock(mu_);
  auto it = held_.find(key);
  if (it == held_.end() || !(it->second & bit)) return;
  it->second &= static_cast<uint8_t>(~bit);
  if (it->second == 0) held_.erase(it);
  append_locked(false, tier, key);
}

uint64_t KvEventLog::last_seq() const {
  std::lock_guard lock(mu_);
  return last_seq_;
}

bool KvEventLog::read_since(uint64_t since, size_t max_events, std::vector<KvEvent>& out) const {
  std::lock_guard lock(mu_);
  if (since >= last_seq_) return since == last_seq_;  // a reader ahead of us saw another epoch
  const uint64_t first_kept = events_.empty() ? last_seq_ + 1 : events_.front().seq;
  if (since + 1 < first_kept) return false;
  for (size_t i = static_cast<size_t>(since + 1 - first_kept); i < events_.size() && max_events > 0;
       ++i, --max_events) {
    out.push_back(events_[i]);
  }
  return true;
}

KvEventLog::Snapshot KvEventLog::snapshot() const {
  std::lock_guard lock(mu_);
  Snapshot snap;
  snap.seq = last_seq_;
  snap.blocks.reserve(held_.size());
  for (const auto& [key, mask] : held_) {
    for (int t = 0; t < kKvTierKinds; ++t) {
      if (mask & (1u << t)) snap.blocks.emplace_back(static_cast<KvTierKind>(t), key);
    }
  }
  return snap;
}

size_t KvEventLog::n_blocks() const {
  std::lock_guard lock(mu_);
  return held_.size();
}

}  // namespace infergrid
