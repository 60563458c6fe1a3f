#include "grammar/gbnf_pieces.h"

#include <algorithm>

#include <fmt/format.h>

namespace infergrid::gbnf {

namespace {

// Canonical decimal integers from a to b, both with the same number of digits.
std::string same_length_range(const std::string& a, const std::string& b) {
  if (a == b) return gbnf_literal(a);
  if (a.size() == 1) return fmt::format("[{}-{}]", a[0], b[0]);
  if (a[0] == b[0]) {
    return gbnf_literal(a.substr(0, 1)) + " " + same_length_range(a.substr(1), b.substr(1));
  }
  std::vector<std::string> alternatives;
  const std::string a_rest = a.substr(1);
  const std::string b_rest = b.substr(1);
  char first_lo = a[0];
  char first_hi = b[0];
  if (a_rest.find_first_not_of('0') != std::string::npos) {
    alternatives.push_back(gbnf_literal(a.substr(0, 1)) + " " +
                           same_length_range(a_rest, std::string(a_rest.size(), '9')));
    ++first_lo;
  }
  std::string upper;
  if (b_rest.find_first_not_of('9') != std::string::npos) {
    upper = gbnf_literal(b.substr(0, 1)) + " " +
            same_length_range(std::string(b_rest.size(), '0'), b_rest);
    --first_hi;
  }
  if (first_lo <= first_hi) {
    alternatives.push_back(fmt::format("[{}-{}] [0-9]{{{}}}", first_lo, first_hi, a_rest.size()));
  }
  if (!upper.empty()) alternatives.push_back(upper);
  return gbnf_alternatives(alternatives);
}

}  // namespace

std::string escape_codepoint(uint32_t cp) {
  if ((cp >= '0' && cp <= '9') || (cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z')) {
    return std::string(1, static_cast<char>(cp));
  }
  if (cp < 0x100) return fmt::format("\\x{:02X}", cp);
  if (cp < 0x10000) return fmt::format("\\u{:04X}", cp);
  return fmt::format("\\U{:08X}", cp);
}

std::string gbnf_alternatives(const std::vector<std::string>& items) {
  if (items.size() == 1) return items[0];
  std::string out = "(";
  for (size_t i = 0; i < items.size(); ++i) out += (i ? " | " : " ") + items[i];
  return out + " )";
}

std::string gbnf_literal(std::string_view text) {
  std::string out = "\"";
  for (unsigned char c : text) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20 || c == 0x7F) {
      out += fmt::format("\\x{:02X}", c);
    } else {
      out += static_cast<char>(c);
    }
  }
  return out + "\"";
}

std::vector<Range> normalized(std::vector<Range> ranges) {
  std::sort(ranges.begin(), ranges.end(), [](Range a, Range b) { return a.lo < b.lo; });
  std::vector<Range> out;
  for (Range r : ranges) {
    if (!out.empty() && r.lo <= out.back().hi + 1) {
      out.back().hi = std::max(out.back().hi, r.hi);
    } else {
      out.push_back(r);
    }
  }
  return out;
}

std::vector<Range> complemented(const std::vector<Range>& ranges, uint32_t max_cp) {
  std::vector<Range> out;
  uint32_t next = 0;
  for (Range r : normalized(ranges)) {
    if (r.lo > max_cp) break;
    if (r.lo > next) out.push_back({next, r.lo - 1});
    next = r.hi + 1;
  }
  if (next <= max_cp) out.push_back({next, max_cp});
  return out;
}

// The JSON encodings of one character from `ranges`: raw where JSON allows it, an escape for
// the quote, the backslash and control characters.
std::string json_char_expression(const std::vector<Range>& ranges) {
  std::vector<Range> raw;
  std::vector<std::string> escaped;
  auto add_escape = [&](uint32_t cp) {
    switch (cp) {
      case '"':
        escaped.push_back(R"("\\\"")");
        break;
      case '\\':
        escaped.push_back(R"("\\\\")");
        break;
      case '\n':
        escaped.push_back(R"("\\n")");
        break;
      case '\t':
        escaped.push_back(R"("\\t")");
        break;
      case '\r':
        escaped.push_back(R"("\\r")");
        break;
      default:
        escaped.push_back(fmt::format("\"\\\\u{:04x}\"", cp));
        break;
    }
  };
  for (Range r : normalized(ranges)) {
    for (uint32_t cp = r.lo; cp <= std::min<uint32_t>(r.hi, 0x5C); ++cp) {
      if (cp < 0x20 || cp == '"' || cp == '\\') add_escape(cp);
    }
    // The raw part: the range minus 0x00-0x1F, '"' and '\'.
    uint32_t lo = std::max<uint32_t>(r.lo, 0x20);
    for (uint32_t cut : {uint32_t{'"'}, uint32_t{'\\'}}) {
      if (lo <= cut && cut <= r.hi) {
        if (lo < cut) raw.push_back({lo, cut - 1});
        lo = cut + 1;
      }
    }
    if (lo <= r.hi) raw.push_back({lo, r.hi});
  }
  std::vector<std::string> alternatives;
  if (!raw.empty()) {
    std::string cls = "[";
    for (Range r : raw) {
      cls += escape_codepoint(r.lo);
      if (r.hi != r.lo) {
        cls.push_back('-');
        cls += escape_codepoint(r.hi);
      }
    }
    alternatives.push_back(cls + "]");
  }
  alternatives.insert(alternatives.end(), escaped.begin(), escaped.end());
  return gbnf_alternatives(alternatives);
}

// Canonical decimal integers from lo to hi (0 <= lo <= hi).
std::string unsigned_range(int64_t lo, int64_t hi) {
  std::vector<std::string> alternatives;
  int64_t start = lo;
  while (start <= hi) {
    const std::string s = std::to_string(start);
    int64_t length_max = 9;
    for (size_t i = 1; i < s.size(); ++i) length_max = length_max * 10 + 9;
    const int64_t end = std::min(hi, length_max);
    alternatives.push_back(same_length_range(s, std::to_string(end)));
    if (end == hi) break;
    start = end + 1;
  }
  return gbnf_alternatives(alternatives);
}

std::string integer_range(int64_t lo, int64_t hi) {
  std::vector<std::string> alternatives;
  if (lo < 0) alternatives.push_back("\"-\" " + unsigned_range(hi < 0 ? -hi : 1, -lo));
  if (hi >= 0) alternatives.push_back(unsigned_range(std::max<int64_t>(lo, 0), hi));
  return gbnf_alternatives(alternatives);
}

}  // namespace infergrid::gbnf
