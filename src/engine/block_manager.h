// BlockManager: ownership of the engine's KV blocks, and the prefix cache over them.
//
// Every block is in exactly one of three states:
//   free      — on the free list, refcount 0, not in the tree;
//   in use    — refcount > 0 (held by one or more sequences), maybe also in the tree;
//   cached    — refcount 0 but still in the prefix tree, reusable until evicted.
// allocate() takes a free block, or evicts the least recently released cached leaf when none
// is free, so cached blocks cost nothing until memory is needed.
//
// The prefix cache is a radix tree whose edges are full token blocks. A node's key is
// block_key(parent key, its block_size token ids, model fingerprint) (kvstore/block_key.h),
// so equal prefixes give equal keys everywhere and different models never collide; the node
// also keeps its tokens, so a hash collision can never return wrong KV. Invariants: a block in
// the tree is full and never written again (writers copy it first: copy-on-write); only leaves
// are evicted, so every cached node's ancestors are cached too; a node referenced by a sequence
// has referenced ancestors (sequences hold their whole chain), so eviction never orphans a
// block in use.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <set>
#include <span>
#include <unordered_map>
#include <vector>

#include "kvstore/block_key.h"
#include "kvstore/kv_events.h"

namespace infergrid {

class BlockManager {
 public:
  BlockManager(int n_blocks, int block_size, uint64_t fingerprint, bool prefix_caching);
  ~BlockManager();
  BlockManager(const BlockManager&) = delete;
  BlockManager& operator=(const BlockManager&) = delete;

  int n_blocks() const { return n_blocks_; }
  int block_size() const { return block_size_; }
  bool prefix_caching() const { return prefix_caching_; }
  uint64_t fingerprint() const { return fingerprint_; }

  // Blocks allocate() can hand out: free plus cached-and-unreferenced.
  int n_available() const { return n_blocks_ - n_in_use_; }
  int n_free() const { return static_cast<int>(free_.size()); }
  int n_cached() const { return static_cast<int>(nodes_.size()); }  // blocks in the tree
  int n_in_use() const { return n_in_use_; }                        // refcount > 0
  uint64_t n_evicted() const { return n_evicted_; }

  // A block with refcount 1, or nullopt when every block is in use.
  std::optional<int32_t> allocate();
  void ref(int32_t block);
  // Drops one reference; at zero the block becomes cached (if in the tree) or free.
  void unref(int32_t block);
  int refcount(int32_t block) const { return refcount_[static_cast<size_t>(block)]; }
  // True when a writer must copy the block first: another sequence shares it, or it is in the
  // prefix tree (immutable).
  bool is_shared(int32_t block) const;
  bool is_cached(int32_t block) const { return node_of_block_[static_cast<size_t>(block)]; }

  struct Match {
    std::vector<int32_t> blocks;  // referenced on return; the caller owns those references
    std::vector<uint64_t> keys;   // key of each matched block
  };
  // The longest chain of cached full blocks equal to tokens' leading full blocks, at most
  // max_blocks of them. Matched blocks are referenced and marked recently used.
  Match match(std::span<const int32_t> tokens, int max_blocks);

  // Registers `block` (referenced by the caller), now holding the full block `tokens` whose
  // parent block has key parent_key (kRootBlockKey for the first), in the tree. When an equal
  // block is already there (another sequence computed the same prefix at the same time), the
  // caller's reference moves to that block and its own returns to the free list: KV is a pure
  // function of (model, tokens, positions), so both hold the same bytes. When the parent is
  // not in the tree the block stays private. Returns the key and the block now held.
  struct Committed {
    uint64_t key;
    int32_t block;
    bool in_tree;  // false: prefix caching off, the parent is not cached, or a key collision
  };
  Committed commit(uint64_t parent_key, std::span<const int32_t> tokens, int32_t block);

  // Drops every cached, unreferenced block (tests and memory pressure from outside).
  void evict_all_cached();

  // Called with each cached block just before eviction frees it, so its contents can be saved
  // to a slower tier (the bytes are valid only during the call).
  using EvictHook = std::function<void(int32_t block, uint64_t key, uint64_t parent_key,
                                       std::span<const int32_t> tokens)>;
  void set_evict_hook(EvictHook hook) { evict_hook_ = std::move(hook); }

  // Blocks entering and leaving the prefix tree are recorded here (engine tier), so a router
  // can follow what this engine holds. Not owned; null: no record.
  void set_event_log(KvEventLog* log) { event_log_ = log; }

 private:
  struct Node;
  void make_evictable(Node* node);
  void remove_evictable(Node* node);
  void evict(Node* node);

  const int n_blocks_;
  const int block_size_;
  const uint64_t fingerprint_;
  const bool prefix_caching_;
  std::vector<int32_t> free_;  // a stack: recently freed blocks are reused first (warm memory)
  std::vector<int32_t> refcount_;
  std::vector<Node*> node_of_block_;
  int n_in_use_ = 0;
  uint64_t n_evicted_ = 0;
  uint64_t clock_ = 0;

  std::unique_ptr<Node> root_;
  std::unordered_map<uint64_t, std::unique_ptr<Node>> nodes_;  // key -> node
  // Leaves with refcount 0, ordered by when they were last released (oldest first).
  std::set<std::pair<uint64_t, Node*>> evictable_;
  EvictHook evict_hook_;
  KvEventLog* event_log_ = nullptr;
};

}  // namespace infergrid
