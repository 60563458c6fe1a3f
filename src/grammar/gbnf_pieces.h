// Pieces of GBNF text shared by the JSON Schema and pattern translators: literals, a choice of
// expressions, character classes over a string's JSON encoding, and decimal integer ranges.
// Every function returns one GBNF expression (a group when it has alternatives), so results
// compose by juxtaposition.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace infergrid::gbnf {

// Bounds both translators (schemas and their patterns) hold input to: nesting they follow, and
// the largest count they expand into a grammar.
inline constexpr int kMaxDepth = 64;
inline constexpr int kMaxRepeat = 10000;

// Inclusive code point range.
struct Range {
  uint32_t lo, hi;
};

// The code point as GBNF writes it inside a character class.
std::string escape_codepoint(uint32_t cp);
// One GBNF expression for any of `items` (at least one): a group only when there is a choice.
std::string gbnf_alternatives(const std::vector<std::string>& items);
// A GBNF string literal matching exactly `text` (UTF-8).
std::string gbnf_literal(std::string_view text);
// Sorted, merged ranges.
std::vector<Range> normalized(std::vector<Range> ranges);
// The code points up to max_cp that none of `ranges` holds.
std::vector<Range> complemented(const std::vector<Range>& ranges, uint32_t max_cp);
// One character of a JSON string's encoding whose decoded code point is in `ranges`: the
// character itself where JSON allows it raw, and its escapes.
std::string json_char_expression(const std::vector<Range>& ranges);
// Canonical decimal integers from lo to hi (0 <= lo <= hi), and from lo to hi of any sign.
std::string unsigned_range(int64_t lo, int64_t hi);
std::string integer_range(int64_t lo, int64_t hi);

}  // namespace infergrid::gbnf
