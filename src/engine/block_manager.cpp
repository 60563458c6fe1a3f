#include "engine/block_manager.h"

#include <algorithm>
#include <cassert>
#include <cstring>

namespace infergrid {

struct BlockManager::Node {
  uint64_t key = kRootBlockKey;
  Node* parent = nullptr;
  int32_t block = -1;
  std::vector<int32_t> tokens;
  std::unordered_map<uint64_t, Node*> children;
  uint64_t released_at = 0;  // clock_ when the block last dropped to refcount 0
  bool in_evictable = false;
};

BlockManager::BlockManager(int n_blocks, int block_size, uint64_t fingerprint, bool prefix_caching)
    : n_blocks_(n_blocks),
      block_size_(block_size),
      fingerprint_(fingerprint),
      prefix_caching_(prefix_caching),
      refcount_(static_cast<size_t>(n_blocks), 0),
      node_of_block_(static_cast<size_t>(n_blocks), nullptr),
      root_(std::make_unique<Node>()) {
  free_.reserve(static_cast<size_t>(n_blocks));
  // Block 0 on top of the stack, so allocation order is 0, 1, 2, ...
  for (int b = n_blocks - 1; b >= 0; --b) free_.push_back(b);
}

BlockManager::~BlockManager() = default;

std::optional<int32_t> BlockManager::allocate() {
  if (free_.empty()) {
    if (evictable_.empty()) return std::nullopt;
    evict(evictable_.begin()->second);
  }
  const int32_t block = free_.back();
  free_.pop_back();
  refcount_[static_cast<size_t>(block)] = 1;
  ++n_in_use_;
  return block;
}

void BlockManager::ref(int32_t block) {
  int32_t& count = refcount_[static_cast<size_t>(block)];
  if (count++ == 0) {
    ++n_in_use_;
    if (Node* node = node_of_block_[static_cast<size_t>(block)]) remove_evictable(node);
  }
}

void BlockManager::unref(int32_t block) {
  int32_t& count = refcount_[static_cast<size_t>(block)];
  assert(count > 0);
  if (--count > 0) return;
  --n_in_use_;
  if (Node* node = node_of_block_[static_cast<size_t>(block)]) {
    node->released_at = ++clock_;
    if (node->children.empty()) make_evictable(node);
  } else {
    free_.push_back(block);
  }
}

bool BlockManager::is_shared(int32_t block) const {
  return refcount_[static_cast<size_t>(block)] > 1 || node_of_block_[static_cast<size_t>(block)];
}

BlockManager::Match BlockManager::match(std::span<const int32_t> tokens, int max_blocks) {
  Match match;
  if (!prefix_caching_) return match;
  const int n_full = std::min(static_cast<int>(tokens.size()) / block_size_, max_blocks);
  Node* node = root_.get();
  for (int i = 0; i < n_full; ++i) {
    const auto block_tokens = tokens.subspan(static_cast<size_t>(i) * block_size_, block_size_);
    const uint64_t key = block_key(node->key, block_tokens, fingerprint_);
    auto it = node->children.find(key);
    if (it == node->children.end()) break;
    Node* child = it->second;
    if (!std::equal(child->tokens.begin(), child->tokens.end(), block_tokens.begin())) break;
    ref(child->block);
    match.blocks.push_back(child->block);
    match.keys.push_back(key);
    node = child;
  }
  return match;
}

BlockManager::Committed BlockManager::commit(uint64_t parent_key, std::span<const int32_t> tokens,
                                             int32_t block) {
  assert(static_cast<int>(tokens.size()) == block_size_);
  const uint64_t key = block_key(parent_key, tokens, fingerprint_);
  if (!prefix_caching_) return {key, block, false};
  if (node_of_block_[static_cast<size_t>(block)]) return {key, block, true};
  Node* parent = root_.get();
  if (parent_key != kRootBlockKey) {
    auto it = nodes_.find(parent_key);
    if (it == nodes_.end()) return {key, block, false};
    parent = it->second.get();
  }
  if (auto existing = parent->children.find(key); existing != parent->children.end()) {
    Node* node = existing->second;
    if (!std::equal(tokens.begin(), tokens.end(), node->tokens.begin())) {
      return {key, block, false};  // a hash collision: keep the block private
    }
    // Computed at the same time by another sequence: share that block, free this one.
    ref(node->block);
    unref(block);
    return {key, node->block, true};
  }
  if (nodes_.count(key)) return {key, block, false};  // the key exists under another parent
  auto node = std::make_unique<Node>();
  node->key = key;
  node->parent = parent;
  node->block = block;
  node->tokens.assign(tokens.begin(), tokens.end());
  if (parent->children.empty() && parent->in_evictable) remove_evictable(parent);
  parent->children.emplace(key, node.get());
  node_of_block_[static_cast<size_t>(block)] = node.get();
  if (refcount_[static_cast<size_t>(block)] == 0) {
    node->released_at = ++clock_;
    make_evictable(node.get());
  }
  nodes_.emplace(key, std::move(node));
  if (event_log_) event_log_->stored(KvTierKind::kEngine, key);
  return {key, block, true};
}

void BlockManager::evict_all_cached() {
  while (!evictable_.empty()) evict(evictable_.begin()->second);
}

void BlockManager::make_evictable(Node* node) {
  if (node->in_evictable) return;
  evictable_.emplace(node->released_at, node);
  node->in_evictable = true;
}

void BlockManager::remove_evictable(Node* node) {
  if (!node->in_evictable) return;
  evictable_.erase({node->released_at, node});
  node->in_evictable = false;
}

void BlockManager::evict(Node* node) {
  assert(node->children.empty() && refcount_[static_cast<size_t>(node->block)] == 0);
  remove_evictable(node);
  Node* parent = node->parent;
  if (evict_hook_) evict_hook_(node->block, node->key, parent->key, node->tokens);
  parent->children.erase(node->key);
  node_of_block_[static_cast<size_t>(node->block)] = nullptr;
  free_.push_back(node->block);
  ++n_evicted_;
  if (event_log_) event_log_->removed(KvTierKind::kEngine, node->key);
  nodes_.erase(node->key);  // destroys node
  if (parent != root_.get() && parent->children.empty() &&
      refcount_[static_cast<size_t>(parent->block)] == 0) {
    make_evictable(parent);
  }
}

}  // namespace infergrid
