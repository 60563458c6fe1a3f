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
#include <thread>
#include <unordered_map>

#include <fmt/format.h>

namespace infergrid {

namespace {
constexpr uint64_t kMagic = 0x6d68736b76494731ULL;  // "1GIvkshm"
constexpr uint32_t kVersion = 1;
enum SlotState : uint32_t { kEmpty = 0, kWriting = 1, kReady = 2 };

uint64_t slot_checksum(uint64_t key, std::span<const int32_t> tokens,
                       std::span<const uint8_t> payload) {
  XXH3_state_t* state = XXH3_createState();
  XXH3_64bits_reset_withSeed(state, key);
  XXH3_64bits_update(state, tokens.data(), tokens.size_bytes());
  XXH3_64bits_update(state, payload.data(), payload.size());
  const uint64_t sum = XXH3_64bits_digest(state);
  XXH3_freeState(state);
  return sum;
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
  pthread_mutex_t mutex;
  uint64_t clock;
  uint64_t hits, misses, stored, evicted, dropped_corrupt, bytes_written, bytes_read;
};

struct ShmTier::SlotHeader {
  uint64_t key;
  uint64_t parent_key;
  uint64_t last_used;
  uint64_t checksum;
  uint32_t state;
  uint32_t reserved;
};

class ShmTier::Lock {
 public:
  explicit Lock(ShmTier& tier) : tier_(tier) {
    const int rc = pthread_mutex_lock(&tier_.header_->mutex);
    if (rc == EOWNERDEAD) {
      // A process died holding the lock: whatever it was writing is not trustworthy.
      tier_.recover_locked();
      pthread_mutex_consistent(&tier_.header_->mutex);
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

static std::string segment_for(const std::string& name, uint64_t layout_tag) {
  return fmt::format("/infergrid-kv-{}-{:016x}", name, layout_tag);
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
  tier->slot_data_bytes_ =
      (static_cast<size_t>(block_tokens) * sizeof(int32_t) + payload_bytes + 63) / 64 * 64;
  const size_t per_slot = sizeof(SlotHeader) + tier->slot_data_bytes_;
  const uint64_t n_slots = capacity_bytes / per_slot;
  const size_t header_bytes = (sizeof(Header) + 63) / 64 * 64;
  const size_t slots_bytes = (n_slots * sizeof(SlotHeader) + 63) / 64 * 64;
  const size_t total = header_bytes + slots_bytes + n_slots * tier->slot_data_bytes_;

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
    pthread_mutexattr_t attr;
    pthread_mutexattr_init(&attr);
    pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
    pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST);
    pthread_mutex_init(&h.mutex, &attr);
    pthread_mutexattr_destroy(&attr);
    h.ready.store(1, std::memory_order_release);
  } else {
    for (int i = 0; i < 400 && h.ready.load(std::memory_order_acquire) == 0; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  }
  const size_t existing_slots_bytes =
      (static_cast<size_t>(h.n_slots) * sizeof(SlotHeader) + 63) / 64 * 64;
  if (h.ready.load() == 0 || h.magic != kMagic || h.version != kVersion ||
      h.layout_tag != layout_tag || h.block_tokens != static_cast<uint32_t>(block_tokens) ||
      h.payload_bytes != payload_bytes ||
      header_bytes + existing_slots_bytes +
              static_cast<size_t>(h.n_slots) * tier->slot_data_bytes_ >
          mapped) {
    return make_error(StatusCode::kCorrupt,
                      "shared memory {} does not hold a KV tier of this layout (remove it with "
                      "`rm /dev/shm{}` if no server uses it)",
                      tier->segment_name_, tier->segment_name_);
  }
  tier->slots_ = reinterpret_cast<SlotHeader*>(tier->base_ + header_bytes);
  tier->data_ = tier->base_ + header_bytes + existing_slots_bytes;
  return tier;
}

void ShmTier::unlink(const std::string& name, uint64_t layout_tag) {
  shm_unlink(segment_for(name, layout_tag).c_str());
}

ShmTier::~ShmTier() {
  if (base_ != nullptr) munmap(base_, mapped_bytes_);
}

uint32_t ShmTier::n_slots() const {
  return header_->n_slots;
}

std::span<uint8_t> ShmTier::slot_bytes_for_testing(uint32_t slot) {
  return {data_ + static_cast<size_t>(slot) * slot_data_bytes_,
          block_tokens_ * sizeof(int32_t) + payload_bytes_};
}

void ShmTier::recover_locked() {
  for (uint32_t i = 0; i < header_->n_slots; ++i) {
    if (slots_[i].state == kWriting) {
      slots_[i].state = kEmpty;
      ++header_->dropped_corrupt;
    }
  }
}

int ShmTier::find_locked(uint64_t key) const {
  for (uint32_t i = 0; i < header_->n_slots; ++i) {
    if (slots_[i].state == kReady && slots_[i].key == key) return static_cast<int>(i);
  }
  return -1;
}

bool ShmTier::contains(uint64_t key) {
  Lock lock(*this);
  return lock.held() && find_locked(key) >= 0;
}

void ShmTier::contains_each(std::span<const uint64_t> keys, std::span<uint8_t> present) {
  std::fill(present.begin(), present.end(), uint8_t{0});
  std::unordered_map<uint64_t, size_t> wanted;
  for (size_t i = 0; i < keys.size(); ++i) wanted.emplace(keys[i], i);
  Lock lock(*this);
  if (!lock.held()) return;
  for (uint32_t i = 0; i < header_->n_slots; ++i) {
    if (slots_[i].state != kReady) continue;
    if (auto it = wanted.find(slots_[i].key); it != wanted.end()) present[it->second] = 1;
  }
}

Status ShmTier::put(uint64_t key, uint64_t parent_key, std::span<const int32_t> tokens,
                    std::span<const uint8_t> payload) {
  if (static_cast<int>(tokens.size()) != block_tokens_ || payload.size() != payload_bytes_) {
    return make_error(StatusCode::kInvalidArgument,
                      "a DRAM-tier block is {} tokens and {} bytes, got {} and {}", block_tokens_,
                      payload_bytes_, tokens.size(), payload.size());
  }
  const uint64_t checksum = slot_checksum(key, tokens, payload);
  std::vector<uint8_t> evicted_data;
  std::vector<int32_t> evicted_tokens;
  uint64_t evicted_key = 0, evicted_parent = 0;
  {
    Lock lock(*this);
    if (!lock.held()) {
      return make_error(StatusCode::kIoError, "the lock of shared memory {} is unusable",
                        segment_name_);
    }
    Header& h = *header_;
    if (find_locked(key) >= 0) return Status::ok();
    int victim = -1;
    for (uint32_t i = 0; i < h.n_slots; ++i) {
      if (slots_[i].state == kEmpty) {
        victim = static_cast<int>(i);
        break;
      }
      if (victim < 0 || slots_[i].last_used < slots_[static_cast<size_t>(victim)].last_used) {
        victim = static_cast<int>(i);
      }
    }
    SlotHeader& slot = slots_[static_cast<size_t>(victim)];
    uint8_t* data = data_ + static_cast<size_t>(victim) * slot_data_bytes_;
    const size_t token_bytes = static_cast<size_t>(block_tokens_) * sizeof(int32_t);
    if (slot.state == kReady) {
      ++h.evicted;
      if (evict_hook_) {
        evicted_key = slot.key;
        evicted_parent = slot.parent_key;
        evicted_tokens.resize(static_cast<size_t>(block_tokens_));
        std::memcpy(evicted_tokens.data(), data, token_bytes);
        evicted_data.assign(data + token_bytes, data + token_bytes + payload_bytes_);
        // Moved down only if intact.
        if (slot_checksum(evicted_key, evicted_tokens, evicted_data) != slot.checksum) {
          evicted_data.clear();
          ++h.dropped_corrupt;
        }
      }
    }
    slot.state = kWriting;
    slot.key = key;
    slot.parent_key = parent_key;
    std::memcpy(data, tokens.data(), token_bytes);
    std::memcpy(data + token_bytes, payload.data(), payload.size());
    slot.checksum = checksum;
    slot.last_used = ++h.clock;
    slot.state = kReady;
    ++h.stored;
    h.bytes_written += token_bytes + payload.size();
  }
  if (!evicted_data.empty()) evict_hook_(evicted_key, evicted_parent, evicted_tokens, evicted_data);
  return Status::ok();
}

Result<bool> ShmTier::get(uint64_t key, std::span<const int32_t> tokens,
                          std::span<uint8_t> payload) {
  if (payload.size() != payload_bytes_ || static_cast<int>(tokens.size()) != block_tokens_) {
    return make_error(StatusCode::kInvalidArgument, "DRAM-tier read of the wrong size");
  }
  std::vector<int32_t> stored_tokens(tokens.size());
  Lock lock(*this);
  if (!lock.held()) return false;
  Header& h = *header_;
  const int i = find_locked(key);
  if (i < 0) {
    ++h.misses;
    return false;
  }
  SlotHeader& slot = slots_[static_cast<size_t>(i)];
  const uint8_t* data = data_ + static_cast<size_t>(i) * slot_data_bytes_;
  std::memcpy(stored_tokens.data(), data, tokens.size_bytes());
  std::memcpy(payload.data(), data + tokens.size_bytes(), payload.size());
  if (slot_checksum(key, stored_tokens, payload) != slot.checksum) {
    slot.state = kEmpty;
    ++h.dropped_corrupt;
    ++h.misses;
    return false;
  }
  if (!std::equal(stored_tokens.begin(), stored_tokens.end(), tokens.begin())) {
    ++h.misses;
    return false;
  }
  slot.last_used = ++h.clock;
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
  for (uint32_t i = 0; i < h.n_slots; ++i) s.blocks += slots_[i].state == kReady ? 1 : 0;
  s.used_bytes = s.blocks * (static_cast<size_t>(block_tokens_) * sizeof(int32_t) + payload_bytes_);
  s.capacity_bytes =
      h.n_slots * (static_cast<size_t>(block_tokens_) * sizeof(int32_t) + payload_bytes_);
  return s;
}

}  // namespace infergrid
