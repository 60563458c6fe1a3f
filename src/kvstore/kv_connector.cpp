#include "kvstore/kv_connector.h"

#include <cassert>

#include <spdlog/spdlog.h>

namespace infergrid {

KvConnector::KvConnector(KvConnectorOptions options, KvBlockCodec codec)
    : tiers_(std::move(options.tiers)),
      codec_(codec),
      on_write_through_(std::move(options.on_write_through)) {
  assert(!tiers_.empty());
  for (size_t i = 0; i < tiers_.size(); ++i) {
    if (tiers_[i].load_only) {
      writers_.push_back(nullptr);
      continue;
    }
    if (first_store_ < 0) first_store_ = static_cast<int>(i);
    if (tiers_[i].write_through && write_through_ < 0) write_through_ = static_cast<int>(i);
    if (tiers_[i].persistent && persistent_ < 0) persistent_ = static_cast<int>(i);
    // One scratch per writer: its sink runs only on that writer's thread.
    writers_.push_back(std::make_unique<AsyncBlockWriter>(
        std::string(tiers_[i].tier->tier_name()),
        [this, tier = tiers_[i].tier, scratch = std::make_shared<std::vector<uint8_t>>(),
         announce = tiers_[i].write_through && write_through_ == static_cast<int>(i)](
            uint64_t key, uint64_t parent, std::span<const int32_t> t, std::span<const uint8_t> p,
            bool engine_block) {
          if (!engine_block) return tier->put(key, parent, t, p);
          // Most engine evictions were written through already: skip the encoding then.
          if (tier->contains(key)) return Status::ok();
          Status written = tier->put(key, parent, t, payload(p, *scratch));
          if (written.is_ok() && announce && on_write_through_) on_write_through_();
          return written;
        },
        options.write_queue_bytes));
  }
  // What a tier pushes out goes on down to the next one, already in the tiers' format.
  for (size_t i = 0; i < tiers_.size(); ++i) {
    if (tiers_[i].load_only) continue;
    size_t next = i + 1;
    while (next < tiers_.size() && tiers_[next].load_only) ++next;
    if (next == tiers_.size()) break;
    tiers_[i].tier->set_evict_hook(
        [writer = writers_[next].get(), below = tiers_[next].tier](
            uint64_t key, uint64_t parent, std::span<const int32_t> t, std::span<const uint8_t> p) {
          if (!below->contains(key)) writer->enqueue(key, parent, t, p, /*engine_block=*/false);
        });
  }
  loader_ = std::make_unique<TierLoader>(
      [this](uint64_t key, std::span<const int32_t> tokens, std::span<uint8_t> dest) {
        return load(key, tokens, dest);
      },
      options.model_fingerprint, options.block_size);
}

KvConnector::~KvConnector() {
  loader_.reset();  // no load may still be writing into the engine's blocks
  for (size_t i = 0; i < tiers_.size(); ++i) {
    writers_[i].reset();  // drains into tier i, which may push blocks to the next writer
    if (!tiers_[i].load_only) tiers_[i].tier->set_evict_hook(nullptr);
  }
}

std::span<const uint8_t> KvConnector::payload(std::span<const uint8_t> engine_block,
                                              std::vector<uint8_t>& scratch) const {
  if (codec_.codec() == KvCodec::kNative) return engine_block;
  scratch.resize(codec_.encoded_bytes());
  codec_.encode(engine_block, scratch);
  return scratch;
}

void KvConnector::save_computed(uint64_t key, uint64_t parent_key, std::span<const int32_t> tokens,
                                std::span<const uint8_t> engine_block) {
  // No lookup first: that would take the cross-process lock on the caller's thread.
  if (write_through_ >= 0) {
    writers_[static_cast<size_t>(write_through_)]->enqueue(key, parent_key, tokens, engine_block,
                                                           /*engine_block=*/true);
  }
}

void KvConnector::save_evicted(uint64_t key, uint64_t parent_key, std::span<const int32_t> tokens,
                               std::span<const uint8_t> engine_block) {
  // Blocks are written through when computed; one the first tier no longer holds (pushed out,
  // or computed before the tier existed) goes there now. A private first tier is asked here,
  // so a block it holds (one loaded back from it) is not copied into the queue again; a shared
  // one is asked on the writer's thread, off the step thread's path to its cross-process lock.
  if (first_store_ < 0) return;
  const auto first = static_cast<size_t>(first_store_);
  if (!tiers_[first].write_through && tiers_[first].tier->contains(key)) return;
  writers_[first]->enqueue(key, parent_key, tokens, engine_block, /*engine_block=*/true);
}

bool KvConnector::persist(uint64_t key, uint64_t parent_key, std::span<const int32_t> tokens,
                          std::span<const uint8_t> engine_block) {
  if (persistent_ < 0) return false;
  KvTier& tier = *tiers_[static_cast<size_t>(persistent_)].tier;
  if (tier.contains(key)) return true;
  // A failure only means a later miss.
  const Status written = tier.put(key, parent_key, tokens, payload(engine_block, persist_scratch_));
  if (!written.is_ok()) spdlog::warn("KV {} tier: {}", tier.tier_name(), written.to_string());
  return true;
}

size_t KvConnector::present_prefix(std::span<const uint64_t> keys) {
  // The first tier answers for all keys in one pass; the others only where it misses.
  std::vector<uint8_t> present(keys.size(), 0);
  tiers_.front().tier->contains_each(keys, present);
  size_t n = 0;
  while (n < keys.size()) {
    bool held = present[n] != 0;
    for (size_t t = 1; !held && t < tiers_.size(); ++t) held = tiers_[t].tier->contains(keys[n]);
    if (!held) break;
    ++n;
  }
  return n;
}

bool KvConnector::load(uint64_t key, std::span<const int32_t> tokens, std::span<uint8_t> dest) {
  const bool native = codec_.codec() == KvCodec::kNative;
  if (!native) load_scratch_.resize(codec_.encoded_bytes());
  const std::span<uint8_t> stored = native ? dest : std::span<uint8_t>(load_scratch_);
  for (const KvConnectorTier& t : tiers_) {
    if (!t.tier->contains(key)) continue;
    auto got = t.tier->get(key, tokens, stored);
    if (!got.is_ok() || !*got) continue;
    // Decoded only after the checksum of the stored bytes passed.
    if (!native) codec_.decode(stored, dest);
    return true;
  }
  return false;
}

void KvConnector::flush() {
  for (auto& writer : writers_) {
    if (writer) writer->flush();
  }
}

}  // namespace infergrid
