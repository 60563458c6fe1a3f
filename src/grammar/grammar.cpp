#include "grammar/grammar.h"

#include <algorithm>
#include <map>
#include <unordered_map>

#include "model/unicode_util.h"

namespace infergrid {

namespace {

constexpr uint32_t kMaxCodepoint = 0x10FFFF;

std::vector<CodepointRange> normalize(std::vector<CodepointRange> ranges) {
  std::sort(ranges.begin(), ranges.end(),
            [](const CodepointRange& a, const CodepointRange& b) { return a.lo < b.lo; });
  std::vector<CodepointRange> out;
  for (const CodepointRange& r : ranges) {
    if (!out.empty() && r.lo <= out.back().hi + 1) {
      out.back().hi = std::max(out.back().hi, r.hi);
    } else {
      out.push_back(r);
    }
  }
  return out;
}

std::vector<CodepointRange> complement(const std::vector<CodepointRange>& ranges) {
  std::vector<CodepointRange> out;
  uint32_t next = 0;
  for (const CodepointRange& r : ranges) {
    if (r.lo > next) out.push_back({next, r.lo - 1});
    next = r.hi + 1;
  }
  if (next <= kMaxCodepoint) out.push_back({next, kMaxCodepoint});
  return out;
}

// Surrogate code points have no UTF-8 form, so a set never contains them.
GrammarSymbol chars(std::vector<CodepointRange> ranges) {
  GrammarSymbol s;
  for (const CodepointRange& r : normalize(std::move(ranges))) {
    if (r.hi < 0xD800 || r.lo > 0xDFFF) {
      s.ranges.push_back(r);
      continue;
    }
    if (r.lo < 0xD800) s.ranges.push_back({r.lo, 0xD7FF});
    if (r.hi > 0xDFFF) s.ranges.push_back({0xE000, r.hi});
  }
  return s;
}

GrammarSymbol rule_symbol(uint32_t rule) {
  GrammarSymbol s;
  s.is_rule = true;
  s.rule = rule;
  return s;
}

bool is_name_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '_';
}

class GbnfParser {
 public:
  GbnfParser(std::string_view source, const GrammarLimits& limits)
      : src_(source), limits_(limits) {}

  Result<SymbolicGrammar> parse() {
    if (src_.size() > limits_.max_source_bytes) {
      return make_error(StatusCode::kInvalidArgument, "the grammar is {} bytes, over the {} limit",
                        src_.size(), limits_.max_source_bytes);
    }
    skip_space();
    while (pos_ < src_.size()) {
      const size_t name_at = pos_;
      const std::string_view name = parse_name();
      if (name.empty()) return error("expected a rule name");
      skip_space();
      if (src_.substr(pos_, 3) != "::=") return error("expected '::=' after the rule name");
      pos_ += 3;
      IG_ASSIGN_OR_RETURN(const uint32_t id, rule_id(name));
      if (defined_[id]) {
        return error_at(name_at, fmt::format("rule '{}' is defined twice", name));
      }
      defined_[id] = true;
      std::vector<std::vector<GrammarSymbol>> alternatives;
      IG_RETURN_IF_ERROR(parse_alternatives(std::string(name), false, alternatives));
      grammar_.rules[id].alternatives = std::move(alternatives);
      skip_space();
    }
    for (uint32_t id = 0; id < grammar_.rules.size(); ++id) {
      if (!defined_[id]) {
        return make_error(StatusCode::kInvalidArgument, "rule '{}' is used but never defined",
                          grammar_.rules[id].name);
      }
    }
    auto root = ids_.find("root");
    if (root == ids_.end()) {
      return make_error(StatusCode::kInvalidArgument, "the grammar has no 'root' rule");
    }
    grammar_.root = root->second;
    return std::move(grammar_);
  }

 private:
  Status error_at(size_t at, std::string_view message) const {
    size_t line = 1;
    size_t column = 1;
    for (size_t i = 0; i < at && i < src_.size(); ++i) {
      if (src_[i] == '\n') {
        ++line;
        column = 1;
      } else {
        ++column;
      }
    }
    return make_error(StatusCode::kInvalidArgument, "grammar line {}, column {}: {}", line, column,
                      message);
  }
  Status error(std::string_view message) const { return error_at(pos_, message); }

  void skip_space() {
    while (pos_ < src_.size()) {
      const char c = src_[pos_];
      if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
        ++pos_;
      } else if (c == '#') {
        while (pos_ < src_.size() && src_[pos_] != '\n') ++pos_;
      } else {
        break;
      }
    }
  }

  std::string_view parse_name() {
    const size_t start = pos_;
    while (pos_ < src_.size() && is_name_char(src_[pos_])) ++pos_;
    return src_.substr(start, pos_ - start);
  }

  // A rule definition starts here: a name, then '::='.
  bool at_rule_start() const {
    size_t p = pos_;
    while (p < src_.size() && is_name_char(src_[p])) ++p;
    if (p == pos_) return false;
    while (p < src_.size() && (src_[p] == ' ' || src_[p] == '\t')) ++p;
    return src_.substr(p, 3) == "::=";
  }

  Result<uint32_t> rule_id(std::string_view name) {
    auto it = ids_.find(std::string(name));
    if (it != ids_.end()) return it->second;
    return add_rule(std::string(name), false);
  }

  Result<uint32_t> add_rule(std::string name, bool defined) {
    if (grammar_.rules.size() >= limits_.max_rules) {
      return error(fmt::format("more than {} rules (repetitions included)", limits_.max_rules));
    }
    const auto id = static_cast<uint32_t>(grammar_.rules.size());
    if (!defined) ids_.emplace(name, id);
    grammar_.rules.push_back({std::move(name), {}});
    defined_.push_back(defined);
    return id;
  }

  Result<uint32_t> helper(const std::string& base,
                          std::vector<std::vector<GrammarSymbol>> alternatives) {
    IG_ASSIGN_OR_RETURN(const uint32_t id,
                        add_rule(fmt::format("{}-{}", base, grammar_.rules.size()), true));
    grammar_.rules[id].alternatives = std::move(alternatives);
    return id;
  }

  Status parse_alternatives(const std::string& rule, bool nested,
                            std::vector<std::vector<GrammarSymbol>>& out) {
    while (true) {
      std::vector<GrammarSymbol> sequence;
      IG_RETURN_IF_ERROR(parse_sequence(rule, nested, sequence));
      out.push_back(std::move(sequence));
      skip_space();
      if (pos_ < src_.size() && src_[pos_] == '|') {
        ++pos_;
        continue;
      }
      return Status::ok();
    }
  }

  // One code point of a literal or class: an escape or a UTF-8 character.
  Result<uint32_t> parse_char() {
    if (pos_ >= src_.size()) return error("unexpected end of the grammar");
    if (src_[pos_] != '\\') {
      size_t length = 0;
      auto cp = decode_utf8(src_, pos_, &length);
      if (!cp) return error("the grammar is not valid UTF-8");
      pos_ += length;
      return *cp;
    }
    const size_t at = pos_;
    ++pos_;
    if (pos_ >= src_.size()) return error("unexpected end of the grammar after '\\'");
    const char c = src_[pos_++];
    int hex_digits = 0;
    switch (c) {
      case 'n':
        return uint32_t{'\n'};
      case 't':
        return uint32_t{'\t'};
      case 'r':
        return uint32_t{'\r'};
      case '\\':
      case '"':
      case '[':
      case ']':
      case '-':
      case '/':
      case '^':
      case '.':
      case '(':
      case ')':
      case '|':
      case '*':
      case '+':
      case '?':
      case '{':
      case '}':
        return static_cast<uint32_t>(static_cast<unsigned char>(c));
      case 'x':
        hex_digits = 2;
        break;
      case 'u':
        hex_digits = 4;
        break;
      case 'U':
        hex_digits = 8;
        break;
      default:
        return error_at(at, fmt::format("unknown escape '\\{}'", c));
    }
    uint32_t value = 0;
    for (int i = 0; i < hex_digits; ++i) {
      if (pos_ >= src_.size() || !std::isxdigit(static_cast<unsigned char>(src_[pos_]))) {
        return error_at(at, fmt::format("'\\{}' needs {} hex digits", c, hex_digits));
      }
      const char h = src_[pos_++];
      value = value * 16 + static_cast<uint32_t>(std::isdigit(static_cast<unsigned char>(h))
                                                     ? h - '0'
                                                     : (std::tolower(h) - 'a' + 10));
    }
    if (value > kMaxCodepoint) return error_at(at, "code point above U+10FFFF");
    return value;
  }

  Result<int> parse_count() {
    const size_t start = pos_;
    int64_t value = 0;
    while (pos_ < src_.size() && src_[pos_] >= '0' && src_[pos_] <= '9') {
      value = value * 10 + (src_[pos_++] - '0');
      if (value > limits_.max_repetition) {
        return error_at(start, fmt::format("repetition count over {}", limits_.max_repetition));
      }
    }
    if (pos_ == start) return -1;
    return static_cast<int>(value);
  }

  Status parse_sequence(const std::string& rule, bool nested, std::vector<GrammarSymbol>& out) {
    while (true) {
      skip_space();
      if (pos_ >= src_.size()) return Status::ok();
      const char c = src_[pos_];
      if (c == '|' || c == ')') {
        if (c == ')' && !nested) return error("unbalanced ')'");
        return Status::ok();
      }
      if (!nested && at_rule_start()) return Status::ok();

      std::vector<GrammarSymbol> atom;
      if (c == '"') {
        ++pos_;
        while (true) {
          if (pos_ >= src_.size()) return error("unterminated string literal");
          if (src_[pos_] == '"') {
            ++pos_;
            break;
          }
          IG_ASSIGN_OR_RETURN(const uint32_t cp, parse_char());
          atom.push_back(chars({{cp, cp}}));
        }
      } else if (c == '[') {
        ++pos_;
        bool negated = false;
        if (pos_ < src_.size() && src_[pos_] == '^') {
          negated = true;
          ++pos_;
        }
        std::vector<CodepointRange> ranges;
        while (true) {
          if (pos_ >= src_.size()) return error("unterminated character class");
          if (src_[pos_] == ']') {
            ++pos_;
            break;
          }
          IG_ASSIGN_OR_RETURN(const uint32_t lo, parse_char());
          uint32_t hi = lo;
          if (pos_ + 1 < src_.size() && src_[pos_] == '-' && src_[pos_ + 1] != ']') {
            ++pos_;
            IG_ASSIGN_OR_RETURN(hi, parse_char());
            if (hi < lo) return error("character range is reversed");
          }
          ranges.push_back({lo, hi});
        }
        ranges = normalize(std::move(ranges));
        atom.push_back(chars(negated ? complement(ranges) : ranges));
      } else if (c == '.') {
        ++pos_;
        atom.push_back(chars({{0, kMaxCodepoint}}));
      } else if (c == '(') {
        if (++nesting_ > kMaxNesting) return error("parentheses nested too deeply");
        ++pos_;
        std::vector<std::vector<GrammarSymbol>> alternatives;
        IG_RETURN_IF_ERROR(parse_alternatives(rule, true, alternatives));
        --nesting_;
        skip_space();
        if (pos_ >= src_.size() || src_[pos_] != ')') return error("expected ')'");
        ++pos_;
        IG_ASSIGN_OR_RETURN(const uint32_t id, helper(rule, std::move(alternatives)));
        atom.push_back(rule_symbol(id));
      } else if (is_name_char(c)) {
        const std::string_view name = parse_name();
        IG_ASSIGN_OR_RETURN(const uint32_t id, rule_id(name));
        atom.push_back(rule_symbol(id));
      } else {
        return error(fmt::format("unexpected character '{}'", c));
      }

      // Quantifiers bind to the atom just parsed (a whole literal counts as one atom).
      int min = 1;
      int max = 1;
      const size_t quantifier_at = pos_;
      if (pos_ < src_.size() && (src_[pos_] == '*' || src_[pos_] == '+' || src_[pos_] == '?')) {
        min = src_[pos_] == '+' ? 1 : 0;
        max = src_[pos_] == '?' ? 1 : -1;
        ++pos_;
      } else if (pos_ < src_.size() && src_[pos_] == '{') {
        ++pos_;
        skip_space();
        IG_ASSIGN_OR_RETURN(min, parse_count());
        skip_space();
        if (pos_ < src_.size() && src_[pos_] == ',') {
          ++pos_;
          skip_space();
          IG_ASSIGN_OR_RETURN(max, parse_count());
          skip_space();
        } else {
          max = min;
          if (min < 0) return error_at(quantifier_at, "expected a count in '{}'");
        }
        if (min < 0) min = 0;
        if (pos_ >= src_.size() || src_[pos_] != '}') return error("expected '}'");
        ++pos_;
        if (max >= 0 && max < min) return error_at(quantifier_at, "repetition {m,n} with n < m");
      } else {
        out.insert(out.end(), atom.begin(), atom.end());
        continue;
      }
      IG_RETURN_IF_ERROR(repeat(rule, std::move(atom), min, max, out));
    }
  }

  // Appends atom{min,max} (max < 0: unbounded) as plain symbols and helper rules.
  Status repeat(const std::string& rule, std::vector<GrammarSymbol> atom, int min, int max,
                std::vector<GrammarSymbol>& out) {
    GrammarSymbol item;
    if (atom.size() == 1) {
      item = std::move(atom[0]);
    } else {
      IG_ASSIGN_OR_RETURN(const uint32_t id, helper(rule, {std::move(atom)}));
      item = rule_symbol(id);
    }
    for (int i = 0; i < min; ++i) out.push_back(item);
    if (max < 0) {
      // star ::= item star | ""
      IG_ASSIGN_OR_RETURN(const uint32_t star, helper(rule, {}));
      grammar_.rules[star].alternatives = {{item, rule_symbol(star)}, {}};
      out.push_back(rule_symbol(star));
      return Status::ok();
    }
    // Nested optionals, (x (x (x)?)?)?, so that each count is derived one way only.
    int optional_count = max - min;
    if (optional_count == 0) return Status::ok();
    IG_ASSIGN_OR_RETURN(uint32_t inner, helper(rule, {{item}, {}}));
    for (int i = 1; i < optional_count; ++i) {
      IG_ASSIGN_OR_RETURN(inner, helper(rule, {{item, rule_symbol(inner)}, {}}));
    }
    out.push_back(rule_symbol(inner));
    return Status::ok();
  }

  static constexpr int kMaxNesting = 256;  // the parser recurses once per level

  std::string_view src_;
  GrammarLimits limits_;
  size_t pos_ = 0;
  int nesting_ = 0;
  SymbolicGrammar grammar_;
  std::unordered_map<std::string, uint32_t> ids_;
  std::vector<bool> defined_;
};

// UTF-8 byte-range sequences that together match exactly the code points lo..hi (surrogates
// excluded): each sequence is one byte range per byte position.
using ByteRangeSequence = std::vector<std::pair<uint8_t, uint8_t>>;

void utf8_sequences(uint32_t lo, uint32_t hi, std::vector<ByteRangeSequence>& out) {
  if (lo > hi) return;
  if (lo <= 0xDFFF && hi >= 0xD800) {
    if (lo < 0xD800) utf8_sequences(lo, 0xD7FF, out);
    if (hi > 0xDFFF) utf8_sequences(0xE000, hi, out);
    return;
  }
  for (uint32_t boundary : {0x7Fu, 0x7FFu, 0xFFFFu}) {
    if (lo <= boundary && hi > boundary) {
      utf8_sequences(lo, boundary, out);
      utf8_sequences(boundary + 1, hi, out);
      return;
    }
  }
  if (hi <= 0x7F) {
    out.push_back({{static_cast<uint8_t>(lo), static_cast<uint8_t>(hi)}});
    return;
  }
  // Split until every trailing byte position spans either one value or its full 0x80..0xBF,
  // so the set is a product of per-position ranges.
  for (int i = 1; i < 4; ++i) {
    const uint32_t mask = (1u << (6 * i)) - 1;
    if ((lo & ~mask) != (hi & ~mask)) {
      if ((lo & mask) != 0) {
        utf8_sequences(lo, lo | mask, out);
        utf8_sequences((lo | mask) + 1, hi, out);
        return;
      }
      if ((hi & mask) != mask) {
        utf8_sequences(lo, (hi & ~mask) - 1, out);
        utf8_sequences(hi & ~mask, hi, out);
        return;
      }
    }
  }
  std::string a;
  std::string b;
  append_utf8(lo, a);
  append_utf8(hi, b);
  ByteRangeSequence sequence;
  for (size_t k = 0; k < a.size(); ++k) {
    sequence.emplace_back(static_cast<uint8_t>(a[k]), static_cast<uint8_t>(b[k]));
  }
  out.push_back(std::move(sequence));
}

}  // namespace

Result<SymbolicGrammar> parse_gbnf(std::string_view source, const GrammarLimits& limits) {
  return GbnfParser(source, limits).parse();
}

class GrammarBuilder {
 public:
  GrammarBuilder(const SymbolicGrammar& symbolic, const GrammarLimits& limits)
      : in_(symbolic), limits_(limits), grammar_(std::make_shared<Grammar>()) {}

  Result<std::shared_ptr<const Grammar>> build() {
    const size_t n = in_.rules.size();
    if (in_.root >= n) return make_error(StatusCode::kInvalidArgument, "no root rule");
    for (const GrammarRule& rule : in_.rules) {
      for (const auto& alternative : rule.alternatives) {
        for (const GrammarSymbol& s : alternative) {
          if (s.is_rule && s.rule >= n) {
            return make_error(StatusCode::kInvalidArgument, "rule '{}' calls an unknown rule",
                              rule.name);
          }
        }
      }
    }
    find_productive();
    IG_RETURN_IF_ERROR(check_reachable_rules());
    IG_RETURN_IF_ERROR(check_left_recursion());
    return emit();
  }

 private:
  bool symbol_productive(const GrammarSymbol& s) const {
    return s.is_rule ? productive_[s.rule] : !s.ranges.empty();
  }
  bool alternative_productive(const std::vector<GrammarSymbol>& alternative) const {
    return std::all_of(alternative.begin(), alternative.end(),
                       [&](const GrammarSymbol& s) { return symbol_productive(s); });
  }

  void find_productive() {
    productive_.assign(in_.rules.size(), false);
    nullable_.assign(in_.rules.size(), false);
    for (bool changed = true; changed;) {
      changed = false;
      for (size_t r = 0; r < in_.rules.size(); ++r) {
        for (const auto& alternative : in_.rules[r].alternatives) {
          if (!productive_[r] && alternative_productive(alternative)) {
            productive_[r] = true;
            changed = true;
          }
          const bool nullable =
              std::all_of(alternative.begin(), alternative.end(),
                          [&](const GrammarSymbol& s) { return s.is_rule && nullable_[s.rule]; });
          if (!nullable_[r] && nullable) {
            nullable_[r] = true;
            changed = true;
          }
        }
      }
    }
  }

  // Every rule root can reach (through productive alternatives) must itself be productive, or a
  // matcher could enter it and never finish.
  Status check_reachable_rules() {
    reachable_.assign(in_.rules.size(), false);
    std::vector<uint32_t> todo = {in_.root};
    reachable_[in_.root] = true;
    while (!todo.empty()) {
      const uint32_t r = todo.back();
      todo.pop_back();
      if (!productive_[r]) {
        return make_error(StatusCode::kInvalidArgument,
                          "rule '{}' can never match: every alternative needs itself again or an "
                          "empty character set",
                          in_.rules[r].name);
      }
      for (const auto& alternative : in_.rules[r].alternatives) {
        if (!alternative_productive(alternative)) continue;
        for (const GrammarSymbol& s : alternative) {
          if (s.is_rule && !reachable_[s.rule]) {
            reachable_[s.rule] = true;
            todo.push_back(s.rule);
          }
        }
      }
    }
    return Status::ok();
  }

  Status check_left_recursion() {
    // 0 unvisited, 1 on the DFS path, 2 done. Iterative so a long chain cannot overflow.
    std::vector<uint8_t> color(in_.rules.size(), 0);
    for (uint32_t start = 0; start < in_.rules.size(); ++start) {
      if (!reachable_[start] || color[start] != 0) continue;
      struct Frame {
        uint32_t rule;
        std::vector<uint32_t> callees;
        size_t next = 0;
      };
      std::vector<Frame> stack;
      auto push = [&](uint32_t r) {
        color[r] = 1;
        Frame f{r, {}, 0};
        for (const auto& alternative : in_.rules[r].alternatives) {
          if (!alternative_productive(alternative)) continue;
          for (const GrammarSymbol& s : alternative) {
            if (!s.is_rule) break;
            f.callees.push_back(s.rule);
            if (!nullable_[s.rule]) break;
          }
        }
        stack.push_back(std::move(f));
      };
      push(start);
      while (!stack.empty()) {
        Frame& top = stack.back();
        if (top.next == top.callees.size()) {
          color[top.rule] = 2;
          stack.pop_back();
          continue;
        }
        const uint32_t callee = top.callees[top.next++];
        if (color[callee] == 1) {
          return make_error(StatusCode::kInvalidArgument,
                            "rule '{}' is left-recursive (it can call itself before matching "
                            "any character)",
                            in_.rules[callee].name);
        }
        if (color[callee] == 0) push(callee);
      }
    }
    return Status::ok();
  }

  uint32_t byte_set(const Grammar::ByteSet& set) {
    auto it = byte_set_ids_.find(set);
    if (it != byte_set_ids_.end()) return it->second;
    const auto id = static_cast<uint32_t>(grammar_->byte_sets_.size());
    grammar_->byte_sets_.push_back(set);
    byte_set_ids_.emplace(set, id);
    return id;
  }

  static Grammar::ByteSet range_set(uint8_t lo, uint8_t hi) {
    Grammar::ByteSet set{};
    for (unsigned b = lo; b <= hi; ++b) set[b >> 6] |= uint64_t{1} << (b & 63);
    return set;
  }

  // The instruction matching one code point of `ranges`: a byte set when they are all ASCII,
  // otherwise a call of a helper rule with one alternative per UTF-8 byte-range sequence.
  Grammar::Instruction char_instruction(const std::vector<CodepointRange>& ranges) {
    if (ranges.back().hi < 0x80) {
      Grammar::ByteSet set{};
      for (const CodepointRange& r : ranges) {
        const Grammar::ByteSet part =
            range_set(static_cast<uint8_t>(r.lo), static_cast<uint8_t>(r.hi));
        for (int w = 0; w < 4; ++w) set[w] |= part[w];
      }
      return {Grammar::Op::kBytes, byte_set(set)};
    }
    std::vector<std::pair<uint32_t, uint32_t>> key;
    for (const CodepointRange& r : ranges) key.emplace_back(r.lo, r.hi);
    auto it = char_rules_.find(key);
    if (it != char_rules_.end()) return {Grammar::Op::kRule, it->second};
    std::vector<ByteRangeSequence> sequences;
    for (const CodepointRange& r : ranges) utf8_sequences(r.lo, r.hi, sequences);
    std::vector<std::vector<Grammar::Instruction>> alternatives;
    Grammar::ByteSet ascii{};
    bool any_ascii = false;
    for (const ByteRangeSequence& sequence : sequences) {
      if (sequence.size() == 1) {
        const Grammar::ByteSet part = range_set(sequence[0].first, sequence[0].second);
        for (int w = 0; w < 4; ++w) ascii[w] |= part[w];
        any_ascii = true;
        continue;
      }
      std::vector<Grammar::Instruction> alternative;
      for (const auto& [lo, hi] : sequence) {
        alternative.push_back({Grammar::Op::kBytes, byte_set(range_set(lo, hi))});
      }
      alternatives.push_back(std::move(alternative));
    }
    if (any_ascii)
      alternatives.insert(alternatives.begin(), {{Grammar::Op::kBytes, byte_set(ascii)}});
    const auto id = static_cast<uint32_t>(byte_rules_.size());
    byte_rules_.push_back(std::move(alternatives));
    names_.push_back(fmt::format("<char U+{:04X}..>", ranges.front().lo));
    char_rules_.emplace(std::move(key), id);
    return {Grammar::Op::kRule, id};
  }

  Result<std::shared_ptr<const Grammar>> emit() {
    byte_rules_.resize(in_.rules.size());
    for (const GrammarRule& rule : in_.rules) names_.push_back(rule.name);
    for (size_t r = 0; r < in_.rules.size(); ++r) {
      for (const auto& alternative : in_.rules[r].alternatives) {
        if (!alternative_productive(alternative)) continue;  // can never complete
        std::vector<Grammar::Instruction> out;
        for (const GrammarSymbol& s : alternative) {
          out.push_back(s.is_rule ? Grammar::Instruction{Grammar::Op::kRule, s.rule}
                                  : char_instruction(s.ranges));
        }
        byte_rules_[r].push_back(std::move(out));
      }
    }
    Grammar& g = *grammar_;
    g.alternatives_.resize(byte_rules_.size());
    for (size_t r = 0; r < byte_rules_.size(); ++r) {
      for (const auto& alternative : byte_rules_[r]) {
        g.alternatives_[r].push_back(static_cast<uint32_t>(g.program_.size()));
        g.program_.insert(g.program_.end(), alternative.begin(), alternative.end());
        g.program_.push_back({Grammar::Op::kEnd, 0});
        if (g.program_.size() > limits_.max_instructions) {
          return make_error(StatusCode::kInvalidArgument,
                            "the grammar compiles to more than {} instructions",
                            limits_.max_instructions);
        }
      }
    }
    g.rule_names_ = std::move(names_);
    g.root_ = in_.root;
    return std::shared_ptr<const Grammar>(grammar_);
  }

  const SymbolicGrammar& in_;
  GrammarLimits limits_;
  std::shared_ptr<Grammar> grammar_;
  std::vector<bool> productive_;
  std::vector<bool> nullable_;
  std::vector<bool> reachable_;
  std::vector<std::vector<std::vector<Grammar::Instruction>>> byte_rules_;
  std::vector<std::string> names_;
  std::map<Grammar::ByteSet, uint32_t> byte_set_ids_;
  std::map<std::vector<std::pair<uint32_t, uint32_t>>, uint32_t> char_rules_;
};

Result<std::shared_ptr<const Grammar>> compile_grammar(const SymbolicGrammar& grammar,
                                                       const GrammarLimits& limits) {
  return GrammarBuilder(grammar, limits).build();
}

Result<std::shared_ptr<const Grammar>> Grammar::from_gbnf(std::string_view source,
                                                          const GrammarLimits& limits) {
  IG_ASSIGN_OR_RETURN(SymbolicGrammar symbolic, parse_gbnf(source, limits));
  return compile_grammar(symbolic, limits);
}

}  // namespace infergrid
