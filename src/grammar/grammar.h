// Grammar: a context-free grammar compiled to a byte-level program, the form constrained
// decoding runs on.
//
// Source text is GBNF, llama.cpp's notation (`root ::= "a" [b-z]* rule | ( x y )? z{2,5}`, with
// `.` any character and `#` comments). Characters are Unicode code points in the source; the
// compiled program matches UTF-8 bytes, so a token that ends inside a character is handled like
// any other prefix. Repetition is expanded into helper rules when parsing.
//
// The program is one array of instructions: each alternative of each rule is a run of kBytes
// (one byte from a 256-bit set) and kRule (call a rule) instructions closed by kEnd.
// Invariants checked by compile(): every referenced rule is defined, `root` exists, no rule is
// left-recursive (so expanding a position always terminates), and every rule reachable from
// root can derive some finite string (so every state a matcher reaches can still be completed).
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"

namespace infergrid {

struct GrammarLimits {
  size_t max_source_bytes = size_t{1} << 20;
  size_t max_rules = 20000;           // after repetition expansion
  size_t max_instructions = 1 << 20;  // of the byte program
  int max_repetition = 10000;         // the largest m or n in x{m,n}
};

class Grammar {
 public:
  enum class Op : uint8_t { kBytes, kRule, kEnd };
  struct Instruction {
    Op op = Op::kEnd;
    uint32_t arg = 0;  // kBytes: index into byte_sets(); kRule: rule id
  };
  using ByteSet = std::array<uint64_t, 4>;

  // Parses GBNF and compiles it. Errors name the line and column, or the offending rule.
  static Result<std::shared_ptr<const Grammar>> from_gbnf(std::string_view source,
                                                          const GrammarLimits& limits = {});

  const std::vector<Instruction>& program() const { return program_; }
  const std::vector<ByteSet>& byte_sets() const { return byte_sets_; }
  // Start positions (in program()) of each alternative of rule `rule`.
  const std::vector<uint32_t>& alternatives(uint32_t rule) const { return alternatives_[rule]; }
  uint32_t root() const { return root_; }
  size_t n_rules() const { return alternatives_.size(); }
  const std::string& rule_name(uint32_t rule) const { return rule_names_[rule]; }

  static bool contains(const ByteSet& set, uint8_t byte) {
    return (set[byte >> 6] >> (byte & 63)) & 1;
  }

 private:
  friend class GrammarBuilder;
  std::vector<Instruction> program_;
  std::vector<ByteSet> byte_sets_;
  std::vector<std::vector<uint32_t>> alternatives_;
  std::vector<std::string> rule_names_;
  uint32_t root_ = 0;
};

// A grammar's symbolic form, before compilation: what the GBNF parser produces and what the
// tests' reference recognizer reads. Character sets are sorted, disjoint code-point ranges.
struct CodepointRange {
  uint32_t lo = 0;
  uint32_t hi = 0;
};

struct GrammarSymbol {
  bool is_rule = false;
  uint32_t rule = 0;                   // is_rule
  std::vector<CodepointRange> ranges;  // !is_rule: one code point from these
};

struct GrammarRule {
  std::string name;
  std::vector<std::vector<GrammarSymbol>> alternatives;
};

struct SymbolicGrammar {
  std::vector<GrammarRule> rules;
  uint32_t root = 0;
};

Result<SymbolicGrammar> parse_gbnf(std::string_view source, const GrammarLimits& limits = {});
Result<std::shared_ptr<const Grammar>> compile_grammar(const SymbolicGrammar& grammar,
                                                       const GrammarLimits& limits = {});

}  // namespace infergrid
