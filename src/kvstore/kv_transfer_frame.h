// The KV transfer protocol's frames: how one instance hands KV blocks to another over TCP.
//
// A frame is a 20-byte header (magic "IGKT", version, type, body length, XXH3 of the body)
// and its body; every integer is little-endian. A session is: the sender's kHello (layout tag,
// block size, lease, transfer id), the receiver's kHelloOk or kError, then kBlock frames (seq,
// key, parent key, layout tag, token count, payload length, the block's own XXH3 checksum
// seeded with its key, tokens, payload), each answered by a kAck (seq, accepted or not), and
// the sender's kEnd, answered by kDone (blocks stored).
// Invariants: a decoder never reads past the bytes it was given nor accepts a body over
// kMaxFrameBodyBytes; a receiver accepts a block only when the body checksum (which covers the
// block checksum too), the layout tag, the token count and the key (recomputed from parent and
// tokens) agree, and checks the block checksum before the block is used, so a damaged or
// foreign block is dropped, never used.
#pragma once

#include <bit>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "core/status.h"
#include "kvstore/block_key.h"  // kv_block_checksum: what a kBlock frame carries

namespace infergrid {

static_assert(std::endian::native == std::endian::little, "frames are written as stored");

inline constexpr uint32_t kKvFrameMagic = 0x544b4749;  // "IGKT"
inline constexpr uint8_t kKvFrameVersion = 1;
inline constexpr size_t kKvFrameHeaderBytes = 20;
inline constexpr uint32_t kMaxFrameBodyBytes = 64u << 20;

enum class KvFrameType : uint8_t {
  kHello = 1,
  kHelloOk = 2,
  kError = 3,
  kBlock = 4,
  kAck = 5,
  kEnd = 6,
  kDone = 7,
};

struct KvFrameHeader {
  KvFrameType type{};
  uint32_t body_bytes = 0;
  uint64_t body_checksum = 0;
};

struct KvTransferHello {
  uint64_t layout_tag = 0;
  uint32_t block_size = 0;
  uint32_t lease_ms = 0;    // how long the receiver keeps blocks no request has loaded
  std::string transfer_id;  // the request's id, for logs (at most 256 bytes)
};

struct KvBlockFrame {
  // 0, 1, ... in the order sent; acks name it. The receiver counts frames itself, so a frame
  // too damaged to read is still answered with its seq.
  uint32_t seq = 0;
  uint64_t key = 0;
  uint64_t parent_key = 0;
  uint64_t layout_tag = 0;
  uint64_t block_checksum = 0;
  std::vector<int32_t> tokens;
  std::vector<uint8_t> payload;
};

struct KvAck {
  uint32_t seq = 0;
  bool accepted = false;
};

// Whole frames (header + body), ready to write.
std::vector<uint8_t> encode_hello(const KvTransferHello& hello);
std::vector<uint8_t> encode_hello_ok();
std::vector<uint8_t> encode_error(std::string_view message);
// The block checksum is computed here from key, tokens and payload; the frame is written into
// `reuse`'s memory (a spare frame, so a stream of blocks allocates nothing).
std::vector<uint8_t> encode_block(uint32_t seq, uint64_t key, uint64_t parent_key,
                                  uint64_t layout_tag, std::span<const int32_t> tokens,
                                  std::span<const uint8_t> payload,
                                  std::vector<uint8_t> reuse = {});
std::vector<uint8_t> encode_ack(const KvAck& ack);
std::vector<uint8_t> encode_end(uint32_t n_blocks);
std::vector<uint8_t> encode_done(uint32_t n_stored);

// Header of a frame from its first kKvFrameHeaderBytes; an error for a wrong magic, version,
// type or a body over the limit (the stream cannot be trusted after that).
Result<KvFrameHeader> decode_header(std::span<const uint8_t> bytes);
// True when body matches header.body_checksum.
bool body_intact(const KvFrameHeader& header, std::span<const uint8_t> body);

// Bodies (already checked with body_intact); an error names what is malformed.
Result<KvTransferHello> decode_hello(std::span<const uint8_t> body);
Result<std::string> decode_error(std::span<const uint8_t> body);
Result<KvBlockFrame> decode_block(std::span<const uint8_t> body);
// A kBlock body read in two parts, so tokens and payload go straight into their own buffers:
// the first block_fixed_bytes() of the body give a frame with tokens and payload sized (not
// yet filled) for the rest, or an error when the lengths disagree with body_bytes.
size_t block_fixed_bytes();
Result<KvBlockFrame> decode_block_fixed(std::span<const uint8_t> fixed, uint32_t body_bytes);
Result<KvAck> decode_ack(std::span<const uint8_t> body);
Result<uint32_t> decode_count(std::span<const uint8_t> body);  // kEnd, kDone

}  // namespace infergrid
