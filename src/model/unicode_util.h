// UTF-8 helpers shared by the tokenizers and the BPE trainer, and GPT-2's byte-level mapping
// (every byte 0..255 <-> one printable code point, so any byte string becomes valid text).
//
// Nothing here validates more than it must: tokenizers have to accept arbitrary bytes, so a
// malformed sequence is measured by its lead byte the way llama.cpp does and never rejected.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace infergrid {

// Length of the UTF-8 sequence announced by `lead` (1 for ASCII and for stray continuation
// bytes, which llama.cpp also treats as one-byte characters).
constexpr size_t utf8_sequence_length(uint8_t lead) {
  constexpr std::array<uint8_t, 16> kLengths = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
  return kLengths[lead >> 4];
}

// Appends the UTF-8 encoding of `cp` (must be <= 0x10FFFF).
void append_utf8(uint32_t cp, std::string& out);

// Decodes one code point at `text[pos]`; nullopt when the bytes there are not well-formed
// UTF-8 (overlong, surrogate, truncated or out of range). `length` receives the bytes used.
std::optional<uint32_t> decode_utf8(std::string_view text, size_t pos, size_t* length);

bool is_valid_utf8(std::string_view text);

// Length of the longest prefix of `bytes` that does not end inside a multi-byte sequence that
// could still be completed by more bytes. Used by streaming decode to hold back a character
// split across tokens; bytes that can never become valid UTF-8 are not held back.
size_t utf8_complete_prefix_length(std::string_view bytes);

// GPT-2's bytes_to_unicode(): printable Latin-1 bytes map to themselves, the other 68 bytes to
// U+0100.. in byte order.
uint32_t gpt2_byte_to_codepoint(uint8_t byte);
// Inverse of gpt2_byte_to_codepoint; nullopt for code points outside the mapping's image.
std::optional<uint8_t> gpt2_codepoint_to_byte(uint32_t cp);
// The mapped code point of `byte` as UTF-8 (one or two bytes).
std::string_view gpt2_byte_to_utf8(uint8_t byte);
// Byte-level encoding of arbitrary bytes (each byte -> its mapped code point).
std::string gpt2_encode_bytes(std::string_view bytes);
// The byte order GPT-2 uses for its first 256 tokens: printable bytes ascending, then the rest.
uint8_t gpt2_byte_at_rank(int rank);

}  // namespace infergrid
