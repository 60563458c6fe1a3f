#include "router/kv_index.h"

#include <algorithm>

namespace infergrid {

namespace {

constexpr uint8_t kEngineBit = uint8_t{1} << static_cast<int>(KvTierKind::kEngine);

}  // namespace

void KvIndex::stored(InstanceId instance, KvTierKind tier, uint64_t key) {
  const uint8_t bit = uint8_t{1} << static_cast<int>(tier);
  std::vector<Holder>& holders = holders_[key];
  for (Holder& h : holders) {
    if (h.instance == instance) {
      h.tiers |= bit;
      return;
    }
  }
  holders.push_back({instance, bit});
  if (per_instance_.size() <= instance) per_instance_.resize(instance + 1, 0);
  ++per_instance_[instance];
  ++n_entries_;
}

void KvIndex::removed(InstanceId instance, KvTierKind tier, uint64_t key) {
  auto it = holders_.find(key);
  if (it == holders_.end()) return;
  std::vector<Holder>& holders = it->second;
  for (size_t i = 0; i < holders.size(); ++i) {
    if (holders[i].instance != instance) continue;
    holders[i].tiers &= static_cast<uint8_t>(~(uint8_t{1} << static_cast<int>(tier)));
    if (holders[i].tiers == 0) {
      holders[i] = holders.back();
      holders.pop_back();
      --per_instance_[instance];
      --n_entries_;
      if (holders.empty()) holders_.erase(it);
    }
    return;
  }
}

void KvIndex::clear(InstanceId instance) {
  if (n_entries_of(instance) == 0) return;
  for (auto it = holders_.begin(); it != holders_.end();) {
    std::vector<Holder>& holders = it->second;
    const auto end = std::remove_if(holders.begin(), holders.end(),
                                    [&](const Holder& h) { return h.instance == instance; });
    n_entries_ -= static_cast<size_t>(holders.end() - end);
    holders.erase(end, holders.end());
    it = holders.empty() ? holders_.erase(it) : std::next(it);
  }
  per_instance_[instance] = 0;
}

void KvIndex::match(std::span<const uint64_t> keys, std::span<Match> matches) const {
  std::fill(matches.begin(), matches.end(), Match{});
  // An instance is still matching at depth j exactly when its total is j: one pass over each
  // key's holders extends those, and the walk ends at the first key that extends none.
  for (size_t j = 0; j < keys.size(); ++j) {
    auto it = holders_.find(keys[j]);
    if (it == holders_.end()) return;
    bool extended = false;
    for (const Holder& h : it->second) {
      if (h.instance >= matches.size()) continue;
      Match& m = matches[h.instance];
      if (static_cast<size_t>(m.total()) != j) continue;
      // The engine's match ends at its first missing block; what follows comes from a tier.
      if ((h.tiers & kEngineBit) && m.tier_blocks == 0) {
        ++m.engine_blocks;
      } else {
        ++m.tier_blocks;
      }
      extended = true;
    }
    if (!extended) return;
  }
}

}  // namespace infergrid
