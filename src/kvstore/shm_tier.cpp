#include "kvstore/shm_tier.h"

#include <fcntl.h>
#include <pthread.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <xxhash.h>

#include <atomic>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <memory>
#include <thread>
#include <unordered_map>

#include <fmt/format.h>

#include "kvstore/block_key.h"

namespace infergrid {

namespace {
constexpr uint64_t kMagic = 0x6d68736b76494731ULL;  // "1GIvkshm"
// 2: hash index and LRU list in the segment; 3: leaf-first eviction (child counts, leaf list)
constexpr uint32_t kVersion = 3;
enum SlotState : uint32_t { kEmpty = 0, kWriting = 1, kReady = 2 };
constexpr int32_t kNone = -1;  // an empty bucket, the end of a list

uint64_t buckets_for(uint64_t n_slots) {
  uint64_t n = 1;
  while (n < 2 * n_slots) n <<= 1;  // at most half full: short probe sequences
  return n;
}

}  // namespace

struct ShmTier::Header {
  uint64_t magic;
  uint32_t version;
  std::atomic<uint32_t> ready;  // set last by the creator
  uint64_t layout_tag;
  uint32_t n_slots;
  uint32_t block_tokens;
  uint64_t payload_bytes;
  uint32_t n_buckets;  // a power of two
  pthread_mutex_t mutex;
  uint64_t clock;
  uint64_t hits, misses, stored, evicted, dropped_corrupt, bytes_written, bytes_read;
  // Derived from the slot headers (rebuilt from them after a crash): the ready slots that no
  // other ready slot continues (leaves), from most to least recently used; the empty slots;
  // how many are ready.
  int32_t lru_head, lru_tail, free_head;
  uint32_t n_ready;
};

struct ShmTier::SlotHeader {
  uint64_t key;
  uint64_t parent_key;
  uint64_t last_used;
  uint64_t checksum;
  uint32_t state;
  int32_t prev, next;  // leaf list (ready slots without children) or free list (next only)
  uint32_t children;   // ready slots whose parent this is (derived, like the lists)
};

class ShmTier::Lock {
 public:
  explicit Lock(ShmTier& tier) : tier_(tier) {
    const int rc = pthread_mutex_lock(&tier_.header_->mutex);
    if (rc == EOWNERDEAD) {
      // A process died holding the lock: whatever it was writing is not trustworthy.
      tier_.rebuild_index_locked();
      pthread_mutex_consistent(&tier_.header_->mutex);
    }
    if ((rc == 0 || rc == EOWNERDEAD) && !tier_.index_sane_locked()) {
      tier_.rebuild_index_locked();
    }
    // Anything else (a damaged or unrecoverable mutex) means no mutual exclusion: the tier
    // then behaves as empty rather than touching slots unprotected.
    held_ = rc == 0 || rc == EOWNERDEAD;
  }
  ~Lock() {
    if (held_) pthread_mutex_unlock(&tier_.header_->mutex);
  }
  bool held() const { return held_; }

 private:
  ShmTier& tier_;
  bool held_ = false;
};

size_t ShmTier::index_bytes(uint64_t n_slots) {
  return (n_slots * sizeof(SlotHeader) + buckets_for(n_slots) * sizeof(int32_t) + 63) / 64 * 64;
}

size_t ShmTier::slot_data_bytes(int block_tokens, size_t payload_bytes) {
  return (static_cast<size_t>(block_tokens) * sizeof(int32_t) + payload_bytes + 63) / 64 * 64;
}

uint64_t ShmTier::bytes_for_slots(uint64_t n_slots, int block_tokens, size_t payload_bytes) {
  return index_bytes(n_slots) + n_slots * slot_data_bytes(block_tokens, payload_bytes);
}

static std::string segment_for(const std::string& name, uint64_t layout_tag) {
  // The format version is part of the name: a server of another version finds its own
  // segment instead of refusing to start until the old one is removed.
  return fmt::format("/infergrid-kv-{}-{:016x}-v{}", name, layout_tag, kVersion);
}

Result<std::unique_ptr<ShmTier>> ShmTier::open(const std::string& name, uint64_t capacity_bytes,
                                               uint64_t layout_tag, int block_tokens,
                                               size_t payload_bytes) {
  for (char c : name) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_') {
      return make_error(StatusCode::kInvalidArgument,
                        "DRAM tier name '{}' may only hold letters, digits, '-' and '_'", name);
    }
  }
  std::unique_ptr<ShmTier> tier(new ShmTier());
  tier->segment_name_ = segment_for(name, layout_tag);
  tier->block_tokens_ = block_tokens;
  tier->payload_bytes_ = payload_bytes;
  tier->slot_data_bytes_ = slot_data_bytes(block_tokens, payload_bytes);
  // Two index buckets per slot (buckets_for rounds up to a power of two).
  const size_t per_slot = sizeof(SlotHeader) + tier->slot_data_bytes_ + 2 * sizeof(int32_t);
  uint64_t n_slots = capacity_bytes / per_slot;
  if (n_slots > (uint64_t{1} << 30)) n_slots = uint64_t{1} << 30;  // int32 slot indices
  // Rounding the buckets up to a power of two may cost more than two per slot.
  while (n_slots > 0 && bytes_for_slots(n_slots, block_tokens, payload_bytes) > capacity_bytes) {
    --n_slots;
  }
  const size_t header_bytes = (sizeof(Header) + 63) / 64 * 64;
  const size_t total = header_bytes + index_bytes(n_slots) + n_slots * tier->slot_data_bytes_;

  bool creator = false;
  // Join an existing segment first; only a creator needs (and sets) the capacity.
  int fd = shm_open(tier->segment_name_.c_str(), O_RDWR, 0600);
  if (fd < 0 && errno == ENOENT) {
    if (n_slots < 1) {
      return make_error(StatusCode::kInvalidArgument,
                        "a DRAM tier of {} bytes holds no block of {} bytes", capacity_bytes,
                        per_slot);
    }
    fd = shm_open(tier->segment_name_.c_str(), O_RDWR | O_CREAT | O_EXCL, 0600);
    creator = fd >= 0;
  }
  if (creator) {
    creator = true;
    if (ftruncate(fd, static_cast<off_t>(total)) != 0) {
      const int err = errno;
      ::close(fd);
      shm_unlink(tier->segment_name_.c_str());
      return make_error(StatusCode::kIoError, "cannot size shared memory {} to {} bytes: {}",
                        tier->segment_name_, total, std::strerror(err));
    }
  } else if (fd < 0 && errno == EEXIST) {  // another process created it meanwhile
    fd = shm_open(tier->segment_name_.c_str(), O_RDWR, 0600);
  }
  if (fd < 0) {
    return make_error(StatusCode::kIoError, "cannot open shared memory {}: {}", tier->segment_name_,
                      std::strerror(errno));
  }
  struct stat st {};
  // The creator may still be sizing it: wait briefly for the full size.
  for (int i = 0; i < 200 && fstat(fd, &st) == 0 && st.st_size == 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  const size_t mapped = static_cast<size_t>(st.st_size);
  void* base = mapped >= header_bytes
                   ? mmap(nullptr, mapped, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)
                   : MAP_FAILED;
  ::close(fd);
  if (base == MAP_FAILED) {
    return make_error(StatusCode::kIoError, "cannot map shared memory {}", tier->segment_name_);
  }
  tier->base_ = static_cast<uint8_t*>(base);
  tier->mapped_bytes_ = mapped;
  tier->header_ = reinterpret_cast<Header*>(tier->base_);
  Header& h = *tier->header_;
  if (creator) {
    h.magic = kMagic;
    h.version = kVersion;
    h.layout_tag = layout_tag;
    h.n_slots = static_cast<uint32_t>(n_slots);
    h.block_tokens = static_cast<uint32_t>(block_tokens);
    h.payload_bytes = payload_bytes;
    h.n_buckets = static_cast<uint32_t>(buckets_for(n_slots));
    pthread_mutexattr_t attr;
    pthread_mutexattr_init(&attr);
    pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
    pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST);
    pthread_mutex_init(&h.mutex, &attr);
    pthread_mutexattr_destroy(&attr);
    tier->slots_ = reinterpret_cast<SlotHeader*>(tier->base_ + header_bytes);
    tier->buckets_ = reinterpret_cast<int32_t*>(tier->slots_ + n_slots);
    tier->rebuild_order_.reserve(n_slots);
    tier->rebuild_index_locked();  // nobody else can see it before `ready`
    h.ready.store(1, std::memory_order_release);
  } else {
    for (int i = 0; i < 400 && h.ready.load(std::memory_order_acquire) == 0; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  }
  if (h.ready.load() == 0 || h.magic != kMagic || h.version != kVersion ||
      h.layout_tag != layout_tag || h.block_tokens != static_cast<uint32_t>(block_tokens) ||
      h.payload_bytes != payload_bytes || h.n_buckets != buckets_for(h.n_slots) ||
      header_bytes + index_bytes(h.n_slots) +
              static_cast<size_t>(h.n_slots) * tier->slot_data_bytes_ >
          mapped) {
    return make_error(StatusCode::kCorrupt,
                      "shared memory {} does not hold a KV tier of this layout (remove it with "
                      "`rm /dev/shm{}` if no server uses it)",
                      tier->segment_name_, tier->segment_name_);
  }
  tier->slots_ = reinterpret_cast<SlotHeader*>(tier->base_ + header_bytes);
  tier->buckets_ = reinterpret_cast<int32_t*>(tier->slots_ + h.n_slots);
  tier->data_ = tier->base_ + header_bytes + index_bytes(h.n_slots);
  tier->rebuild_order_.reserve(h.n_slots);
  return tier;
}

void ShmTier::unlink(const std::string& name, uint64_t layout_tag) {
  shm_unlink(segment_for(name, layout_tag).c_str());
}

ShmTier::~ShmTier() {
  if (base_ != nullptr) munmap(base_, mapped_bytes_);
}

uint64_t ShmTier::layout_tag() const {
  return header_->layout_tag;
}

uint32_t ShmTier::n_slots() const {
  return header_->n_slots;
}

std::span<uint8_t> ShmTier::slot_bytes_for_testing(uint32_t slot) {
  return {data_ + static_cast<size_t>(slot) * slot_data_bytes_,
          block_tokens_ * sizeof(int32_t) + payload_bytes_};
}

std::span<uint8_t> ShmTier::index_bytes_for_testing() {
  return {reinterpret_cast<uint8_t*>(buckets_), header_->n_buckets * sizeof(int32_t)};
}

// The slot headers are the truth; the hash index and the lists are rebuilt from them. Runs at
// creation, after a process died holding the lock (it may have been mid-way through any
// update), and when a list link is out of range or the index is full (a damaged segment).
void ShmTier::rebuild_index_locked() {
  Header& h = *header_;
  std::fill(buckets_, buckets_ + h.n_buckets, kNone);
  // Reserved at open: nothing may throw while the cross-process lock is held.
  std::vector<int32_t>& ready = rebuild_order_;
  ready.clear();
  h.free_head = kNone;
  for (uint32_t i = h.n_slots; i-- > 0;) {
    SlotHeader& slot = slots_[i];
    if (slot.state == kWriting) ++h.dropped_corrupt;  // its writer died: never trusted
    if (slot.state == kReady && find_locked(slot.key, nullptr) < 0) {
      insert_bucket_locked(slot.key, static_cast<int32_t>(i));
      ready.push_back(static_cast<int32_t>(i));
      continue;
    }
    slot.state = kEmpty;  // not ready, or a duplicate key
    slot.prev = kNone;
    slot.next = h.free_head;
    h.free_head = static_cast<int32_t>(i);
  }
  // Children are counted once every ready slot is indexed; only leaves join the list, oldest
  // first, each pushed to the front: the most recently used ends up at the head.
  for (int32_t i : ready) {
    slots_[i].children = 0;
    slots_[i].prev = slots_[i].next = kNone;
  }
  for (int32_t i : ready) {
    const int32_t parent = parent_slot_locked(i);
    if (parent >= 0) ++slots_[parent].children;
  }
  std::sort(ready.begin(), ready.end(),
            [&](int32_t a, int32_t b) { return slots_[a].last_used < slots_[b].last_used; });
  h.lru_head = h.lru_tail = kNone;
  for (int32_t i : ready) {
    if (slots_[i].children == 0) push_front_locked(i);
  }
  h.n_ready = static_cast<uint32_t>(ready.size());
}

int32_t ShmTier::parent_slot_locked(int32_t i) const {
  const SlotHeader& slot = slots_[i];
  if (slot.parent_key == slot.key) return -1;
  const int32_t parent = find_locked(slot.parent_key, nullptr);
  return parent == i ? -1 : parent;
}

uint32_t ShmTier::home_bucket(uint64_t key) const {
  return static_cast<uint32_t>((key * 0x9E3779B97F4A7C15ULL) >> 32) & (header_->n_buckets - 1);
}

bool ShmTier::valid_slot(int32_t i) const {
  return i >= 0 && static_cast<uint32_t>(i) < header_->n_slots;
}

int ShmTier::find_locked(uint64_t key, bool* damaged) const {
  const uint32_t mask = header_->n_buckets - 1;
  for (uint32_t b = home_bucket(key), probes = 0;; b = (b + 1) & mask, ++probes) {
    const int32_t i = buckets_[b];
    if (i == kNone) return -1;
    // Only ready slots are indexed, and a probe run is never longer than the slots: anything
    // else is a damaged index, which can cost a miss (the slot's own key must match), never a
    // wrong block.
    if (!valid_slot(i) || slots_[i].state != kReady || probes > header_->n_slots) {
      if (damaged != nullptr) *damaged = true;
      return -1;
    }
    if (slots_[i].key == key) return i;
  }
}

int ShmTier::find_repairing_locked(uint64_t key) {
  bool damaged = false;
  const int i = find_locked(key, &damaged);
  if (!damaged) return i;
  rebuild_index_locked();
  return find_locked(key, nullptr);
}

bool ShmTier::insert_bucket_locked(uint64_t key, int32_t slot) {
  const uint32_t mask = header_->n_buckets - 1;
  uint32_t b = home_bucket(key);
  for (uint32_t probes = 0; buckets_[b] != kNone; b = (b + 1) & mask) {
    if (++probes > mask) return false;  // never with two buckets per slot, unless damaged
  }
  buckets_[b] = slot;
  return true;
}

// Linear probing without tombstones: after emptying a bucket, later members of the probe run
// that could live in it are moved back, so every key stays reachable from its home bucket.
void ShmTier::erase_bucket_locked(uint64_t key, int32_t slot) {
  const uint32_t mask = header_->n_buckets - 1;
  uint32_t hole = home_bucket(key);
  for (uint32_t probes = 0; buckets_[hole] != slot; hole = (hole + 1) & mask) {
    if (buckets_[hole] == kNone || ++probes > mask) return;
  }
  buckets_[hole] = kNone;
  for (uint32_t b = (hole + 1) & mask; buckets_[b] != kNone; b = (b + 1) & mask) {
    const int32_t moving = buckets_[b];
    const uint32_t home = valid_slot(moving) ? home_bucket(slots_[moving].key) : b;
    // Does `moving`'s probe run (home .. b, cyclically) pass over the hole?
    const bool passes_hole = hole <= b ? (home <= hole || home > b) : (home <= hole && home > b);
    if (passes_hole) {
      buckets_[hole] = moving;
      buckets_[b] = kNone;
      hole = b;
    }
  }
}

void ShmTier::unlink_lru_locked(int32_t i) {
  Header& h = *header_;
  SlotHeader& slot = slots_[i];
  if (valid_slot(slot.prev))
    slots_[slot.prev].next = slot.next;
  else
    h.lru_head = slot.next;
  if (valid_slot(slot.next))
    slots_[slot.next].prev = slot.prev;
  else
    h.lru_tail = slot.prev;
  slot.prev = slot.next = kNone;
}

void ShmTier::push_front_locked(int32_t i) {
  Header& h = *header_;
  slots_[i].prev = kNone;
  slots_[i].next = h.lru_head;
  if (valid_slot(h.lru_head))
    slots_[h.lru_head].prev = i;
  else
    h.lru_tail = i;
  h.lru_head = i;
}

// The ready slot `i` leaves the index and the leaf list and becomes empty; a parent it leaves
// without children becomes a leaf at the list's cold end, the next candidate (its chain is
// going cold from the end).
void ShmTier::release_slot_locked(int32_t i) {
  Header& h = *header_;
  const int32_t parent = parent_slot_locked(i);
  erase_bucket_locked(slots_[i].key, i);
  if (slots_[i].children == 0) unlink_lru_locked(i);
  slots_[i].state = kEmpty;
  slots_[i].children = 0;
  slots_[i].next = h.free_head;
  h.free_head = i;
  --h.n_ready;
  if (parent >= 0 && slots_[parent].children > 0 && --slots_[parent].children == 0) {
    push_back_locked(parent);
  }
}

void ShmTier::push_back_locked(int32_t i) {
  Header& h = *header_;
  slots_[i].next = kNone;
  slots_[i].prev = h.lru_tail;
  if (valid_slot(h.lru_tail))
    slots_[h.lru_tail].next = i;
  else
    h.lru_head = i;
  h.lru_tail = i;
}

// The slot a new block goes to: an empty one, else the least recently used leaf other than
// `keep` (the new block's parent: evicting it would leave the new block unreachable), else
// any ready slot (no leaf while slots are ready takes parent links that form a cycle, which
// only damage or a hash collision can make).
int32_t ShmTier::victim_locked(int32_t keep) const {
  const Header& h = *header_;
  if (h.free_head != kNone) return h.free_head;
  int32_t victim = h.lru_tail;
  if (victim == keep && valid_slot(victim)) victim = slots_[victim].prev;
  if (valid_slot(victim)) return victim;
  if (valid_slot(h.lru_tail)) return h.lru_tail;
  for (uint32_t i = 0; i < h.n_slots; ++i) {
    if (slots_[i].state == kReady && static_cast<int32_t>(i) != keep)
      return static_cast<int32_t>(i);
  }
  return keep;
}

bool ShmTier::index_sane_locked() const {
  const Header& h = *header_;
  const auto ok = [&](int32_t i) { return i == kNone || valid_slot(i); };
  return ok(h.lru_head) && ok(h.lru_tail) && ok(h.free_head) &&
         (h.free_head == kNone || slots_[h.free_head].state == kEmpty) &&
         (h.lru_tail == kNone || slots_[h.lru_tail].state == kReady) && h.n_ready <= h.n_slots;
}

bool ShmTier::contains(uint64_t key) {
  Lock lock(*this);
  return lock.held() && find_repairing_locked(key) >= 0;
}

void ShmTier::contains_each(std::span<const uint64_t> keys, std::span<uint8_t> present) {
  std::fill(present.begin(), present.end(), uint8_t{0});
  Lock lock(*this);
  if (!lock.held()) return;
  for (size_t i = 0; i < keys.size(); ++i) present[i] = find_repairing_locked(keys[i]) >= 0 ? 1 : 0;
}

Status ShmTier::put(uint64_t key, uint64_t parent_key, std::span<const int32_t> tokens,
                    std::span<const uint8_t> payload) {
  if (static_cast<int>(tokens.size()) != block_tokens_ || payload.size() != payload_bytes_) {
    return make_error(StatusCode::kInvalidArgument,
                      "a DRAM-tier block is {} tokens and {} bytes, got {} and {}", block_tokens_,
                      payload_bytes_, tokens.size(), payload.size());
  }
  const uint64_t checksum = kv_block_checksum(key, tokens, payload);
  // Room for a block pushed out to the next tier, made before the lock: nothing may throw
  // while the cross-process lock is held.
  const size_t evict_bytes = evict_hook_ ? payload_bytes_ : 0;
  const size_t evict_tokens = evict_hook_ ? static_cast<size_t>(block_tokens_) : 0;
  const auto evicted_data = std::make_unique_for_overwrite<uint8_t[]>(evict_bytes);
  const auto evicted_tokens = std::make_unique_for_overwrite<int32_t[]>(evict_tokens);
  bool evicted = false;
  uint64_t evicted_key = 0, evicted_parent = 0, evicted_checksum = 0;
  {
    Lock lock(*this);
    if (!lock.held()) {
      return make_error(StatusCode::kIoError, "the lock of shared memory {} is unusable",
                        segment_name_);
    }
    Header& h = *header_;
    if (find_repairing_locked(key) >= 0) return Status::ok();
    const int32_t parent = parent_key == key ? -1 : find_locked(parent_key, nullptr);
    const bool have_free = h.free_head != kNone;
    const int32_t victim = victim_locked(parent);
    if (!valid_slot(victim)) {  // every slot mid-write: only a damaged segment shows that
      rebuild_index_locked();
      return make_error(StatusCode::kIoError, "no slot of shared memory {} can take a block",
                        segment_name_);
    }
    SlotHeader& slot = slots_[victim];
    uint8_t* data = data_ + static_cast<size_t>(victim) * slot_data_bytes_;
    const size_t token_bytes = static_cast<size_t>(block_tokens_) * sizeof(int32_t);
    if (!have_free) {
      ++h.evicted;
      if (evict_hook_) {
        // Copied here, checked once the lock is released (see below).
        evicted_key = slot.key;
        evicted_parent = slot.parent_key;
        evicted_checksum = slot.checksum;
        std::memcpy(evicted_tokens.get(), data, token_bytes);
        std::memcpy(evicted_data.get(), data + token_bytes, payload_bytes_);
        evicted = true;
      }
      release_slot_locked(victim);
    }
    h.free_head = slot.next;  // the victim is the free list's head now
    slot.state = kWriting;
    slot.key = key;
    slot.parent_key = parent_key;
    std::memcpy(data, tokens.data(), token_bytes);
    std::memcpy(data + token_bytes, payload.data(), payload.size());
    slot.checksum = checksum;
    slot.last_used = ++h.clock;
    slot.state = kReady;
    slot.children = 0;
    if (insert_bucket_locked(key, victim)) {
      push_front_locked(victim);
      ++h.n_ready;
      // The parent may have gone with the victim (when nothing else could).
      const int32_t parent_now = parent_slot_locked(victim);
      if (parent_now >= 0 && slots_[parent_now].children++ == 0) unlink_lru_locked(parent_now);
    } else {
      rebuild_index_locked();  // the index was damaged; the rebuilt one holds this slot too
    }
    ++h.stored;
    h.bytes_written += token_bytes + payload.size();
  }
  if (!evicted) return Status::ok();
  // Moved down only if intact.
  const std::span<const int32_t> moved_tokens(evicted_tokens.get(), evict_tokens);
  const std::span<const uint8_t> moved_data(evicted_data.get(), evict_bytes);
  if (kv_block_checksum(evicted_key, moved_tokens, moved_data) != evicted_checksum) {
    Lock lock(*this);
    if (lock.held()) ++header_->dropped_corrupt;
    return Status::ok();
  }
  evict_hook_(evicted_key, evicted_parent, moved_tokens, moved_data);
  return Status::ok();
}

Result<bool> ShmTier::get(uint64_t key, std::span<const int32_t> tokens,
                          std::span<uint8_t> payload) {
  if (payload.size() != payload_bytes_ || static_cast<int>(tokens.size()) != block_tokens_) {
    return make_error(StatusCode::kInvalidArgument, "DRAM-tier read of the wrong size");
  }
  std::vector<int32_t> stored_tokens(tokens.size());
  int32_t i = -1;
  uint64_t expected = 0;
  {
    // Only the copy holds the lock; the copy is then checked outside it.
    Lock lock(*this);
    if (!lock.held()) return false;
    i = find_repairing_locked(key);
    if (i < 0) {
      ++header_->misses;
      return false;
    }
    const uint8_t* data = data_ + static_cast<size_t>(i) * slot_data_bytes_;
    std::memcpy(stored_tokens.data(), data, tokens.size_bytes());
    std::memcpy(payload.data(), data + tokens.size_bytes(), payload.size());
    expected = slots_[i].checksum;
  }
  const bool intact = kv_block_checksum(key, stored_tokens, payload) == expected;
  const bool same_tokens = std::equal(stored_tokens.begin(), stored_tokens.end(), tokens.begin());
  Lock lock(*this);
  if (!lock.held()) return false;
  Header& h = *header_;
  // The slot may have been reused since the copy; only the block that was read is touched.
  SlotHeader& slot = slots_[i];
  const bool unchanged = slot.state == kReady && slot.key == key && slot.checksum == expected;
  if (!intact) {
    if (unchanged) release_slot_locked(i);
    ++h.dropped_corrupt;
    ++h.misses;
    return false;
  }
  if (!same_tokens) {
    ++h.misses;
    return false;
  }
  if (unchanged) {
    slot.last_used = ++h.clock;
    if (slot.children == 0) {
      unlink_lru_locked(i);
      push_front_locked(i);
    }
  }
  ++h.hits;
  h.bytes_read += tokens.size_bytes() + payload.size();
  return true;
}

TierStats ShmTier::stats() {
  Lock lock(*this);
  TierStats s;
  if (!lock.held()) return s;
  const Header& h = *header_;
  s.hits = h.hits;
  s.misses = h.misses;
  s.stored = h.stored;
  s.evicted = h.evicted;
  s.dropped_corrupt = h.dropped_corrupt;
  s.bytes_written = h.bytes_written;
  s.bytes_read = h.bytes_read;
  s.blocks = h.n_ready;
  s.used_bytes = s.blocks * (static_cast<size_t>(block_tokens_) * sizeof(int32_t) + payload_bytes_);
  s.capacity_bytes =
      h.n_slots * (static_cast<size_t>(block_tokens_) * sizeof(int32_t) + payload_bytes_);
  return s;
}

}  // namespace infergrid
