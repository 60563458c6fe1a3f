// KvConnector: the engine's one door to the KV tiers below its memory. It owns a background
// writer per tier, the loader, the tier codec and the cascade between tiers, so the engine says
// only "this block was computed / evicted / must survive a restart" and "load these keys into
// these blocks"; a remote tier (another instance) plugs in as one more KvTier.
//
// Tiers are ordered fastest first. A computed block is written through to the write-through
// tiers (the shared DRAM segment, so other processes can serve it); an evicted engine block
// goes to the first tier, and what a tier evicts moves to the next one, already encoded; a
// persisted block goes straight to the first persistent tier (the SSD). A load-only tier (blocks
// another instance handed over) is only read. Loads try the tiers in order and decode only
// bytes whose checksum passed.
// Invariants: engine blocks handed to save_*() are copied before the call returns (the engine
// reuses its memory at once); a load writes only its job's destinations and only until the job
// is done; destruction finishes the loads, then drains the writers fastest first (a draining
// tier may still push blocks to the one below) and unhooks each tier from the next.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <vector>

#include "kvstore/block_writer.h"
#include "kvstore/kv_codec.h"
#include "kvstore/kv_tier.h"
#include "kvstore/tier_loader.h"

namespace infergrid {

struct KvConnectorTier {
  std::shared_ptr<KvTier> tier;
  bool write_through = false;  // every computed block is saved here
  bool persistent = false;     // survives a restart: persist() writes here
  // Blocks handed over by another instance (kvstore/receive_tier.h): loaded from, never
  // written to, and no part of the cascade.
  bool load_only = false;
};

struct KvConnectorOptions {
  std::vector<KvConnectorTier> tiers;  // fastest first; at least one
  uint64_t model_fingerprint = 0;      // for the loader's key checks
  int block_size = 0;
  size_t write_queue_bytes = size_t{256} << 20;  // per tier writer
  // Called on the writer's thread after each block written to the write-through tier (a KV
  // transfer streams blocks from there as they appear).
  std::function<void()> on_write_through;
};

class KvConnector {
 public:
  // codec: engine block <-> tier payload, the same for every tier.
  KvConnector(KvConnectorOptions options, KvBlockCodec codec);
  ~KvConnector();
  KvConnector(const KvConnector&) = delete;
  KvConnector& operator=(const KvConnector&) = delete;

  // A block just computed and committed to the prefix tree.
  void save_computed(uint64_t key, uint64_t parent_key, std::span<const int32_t> tokens,
                     std::span<const uint8_t> engine_block);
  // A block the engine evicts from its memory (skipped by a tier that holds it already).
  void save_evicted(uint64_t key, uint64_t parent_key, std::span<const int32_t> tokens,
                    std::span<const uint8_t> engine_block);
  // Writes the block to the first persistent tier now (shutdown); false when there is none.
  bool persist(uint64_t key, uint64_t parent_key, std::span<const int32_t> tokens,
               std::span<const uint8_t> engine_block);
  bool has_persistent_tier() const { return persistent_ >= 0; }

  // How many of keys, from the first, some tier holds (a prefix match cannot skip one).
  size_t present_prefix(std::span<const uint64_t> keys);
  // Loads run on a background thread, one job after another.
  TierLoader& loader() { return *loader_; }
  // Waits until every queued write is done (fastest tier first: it may push blocks down).
  void flush();

 private:
  // Runs on the loader's thread: touches only the tiers (thread-safe), its scratch and dest.
  bool load(uint64_t key, std::span<const int32_t> tokens, std::span<uint8_t> dest);
  // The block's bytes in the tiers' format: the block itself for the native codec, else
  // encoded into scratch.
  std::span<const uint8_t> payload(std::span<const uint8_t> engine_block,
                                   std::vector<uint8_t>& scratch) const;

  std::vector<KvConnectorTier> tiers_;
  KvBlockCodec codec_;
  int write_through_ = -1;  // index of the first write-through tier, or -1
  int persistent_ = -1;     // index of the first persistent tier, or -1
  int first_store_ = -1;    // index of the first tier that is not load-only, or -1
  std::function<void()> on_write_through_;
  std::vector<std::unique_ptr<AsyncBlockWriter>> writers_;  // one per tier; null: load-only
  std::vector<uint8_t> load_scratch_;                       // the loader thread's
  std::vector<uint8_t> persist_scratch_;                    // the caller's (persist)
  std::unique_ptr<TierLoader> loader_;
};

}  // namespace infergrid
