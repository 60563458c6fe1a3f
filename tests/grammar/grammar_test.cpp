// The grammar compiler and matcher against a reference recognizer and a token-by-token check:
// masks must allow exactly the tokens the matcher would accept, and every generated text must be
// a sentence of the grammar.
#include <gtest/gtest.h>

#include "grammar/grammar.h"
#include "grammar/grammar_matcher.h"
#include "grammar/json_schema.h"
#include "grammar_test_util.h"

namespace infergrid {
namespace {

using test::ReferenceRecognizer;

// Grammars that exercise alternation, nesting, repetition counts, ambiguity, non-ASCII ranges,
// negated classes and rules that can end the text early.
const std::vector<std::string>& test_grammars() {
  static const std::vector<std::string> kGrammars = {
      json_object_gbnf(),
      R"g(root ::= "a" | "ab" | "abc" ("d" | "e")*)g",
      R"g(root ::= item ("," item){0,3}
         item ::= [0-9]+ | "\"" [^"\\]* "\""  # numbers or simple strings
      )g",
      R"g(root ::= ( [α-ω] | [日本] | "é" | [\U0001F600-\U0001F64F] ){1,6} "."?)g",
      R"g(root ::= expr
         expr ::= term (("+" | "-") term)*
         term ::= [a-z] | "(" expr ")")g",
      R"g(root ::= x x
         x ::= "a"* | "b")g",
      R"g(root ::= [^a-z\n]{2,4} ("x" | [xy]) )g",
      R"g(root ::= ("ab" | "a" "b" | [a] [b]) "c"?)g",
  };
  return kGrammars;
}

std::shared_ptr<const Grammar> compile(const std::string& source) {
  auto g = Grammar::from_gbnf(source);
  EXPECT_TRUE(g.is_ok()) << g.status().to_string() << "\n" << source;
  return g.is_ok() ? *g : nullptr;
}

TEST(Grammar, MaskAllowsExactlyTheTokensTheMatcherAccepts) {
  const auto vocab = test::synthetic_vocabulary(7, 1500);
  for (const std::string& source : test_grammars()) {
    auto grammar = compile(source);
    ASSERT_TRUE(grammar);
    auto compiled = std::make_shared<CompiledGrammar>(grammar, vocab);
    for (uint32_t seed = 0; seed < 6; ++seed) {
      GrammarMatcher matcher(compiled);
      std::mt19937 rng(seed);
      std::vector<uint64_t> mask(vocab->mask_words());
      for (int step = 0; step < 40 && !matcher.ended(); ++step) {
        ASSERT_TRUE(matcher.fill_mask(mask).is_ok());
        std::vector<int32_t> allowed;
        for (int32_t id = 0; id < vocab->n_vocab(); ++id) {
          GrammarMatcher copy = matcher;
          const bool accepts = copy.accept_token(id).is_ok();
          ASSERT_EQ(test::mask_bit(mask, id), accepts) << "token " << id << " '" << vocab->piece(id)
                                                       << "' at step " << step << " of grammar\n"
                                                       << source;
          if (accepts) allowed.push_back(id);
        }
        ASSERT_FALSE(allowed.empty()) << source;
        ASSERT_TRUE(matcher.accept_token(allowed[rng() % allowed.size()]).is_ok());
      }
    }
  }
}

TEST(Grammar, GeneratedTextIsASentenceOfTheGrammar) {
  const auto vocab = test::synthetic_vocabulary(11, 800);
  for (const std::string& source : test_grammars()) {
    auto symbolic = parse_gbnf(source);
    ASSERT_TRUE(symbolic.is_ok());
    auto compiled = std::make_shared<CompiledGrammar>(compile(source), vocab);
    ReferenceRecognizer reference(*symbolic);
    for (uint32_t seed = 0; seed < 30; ++seed) {
      auto text = test::generate_constrained(compiled, seed);
      ASSERT_TRUE(text.is_ok()) << text.status().to_string() << "\n" << source;
      EXPECT_TRUE(reference.matches(*text)) << "'" << *text << "' from\n" << source;
    }
  }
}

TEST(Grammar, AcceptsTextExactlyWhenTheReferenceDoes) {
  const auto vocab = test::synthetic_vocabulary(3, 10);
  const std::string alphabet = "ab(cde)+-,\"0123456789x.\xCE\xB1\n";
  for (const std::string& source : test_grammars()) {
    auto symbolic = parse_gbnf(source);
    ASSERT_TRUE(symbolic.is_ok());
    auto compiled = std::make_shared<CompiledGrammar>(compile(source), vocab);
    ReferenceRecognizer reference(*symbolic);
    std::mt19937 rng(5);
    int sentences = 0;
    for (int i = 0; i < 3000; ++i) {
      std::string text;
      const int n = static_cast<int>(rng() % 7);
      for (int k = 0; k < n; ++k) text += alphabet[rng() % alphabet.size()];
      GrammarMatcher matcher(compiled);
      const bool ours = matcher.accept_bytes(text).is_ok() && matcher.can_end();
      const bool expected = reference.matches(text);
      sentences += expected;
      ASSERT_EQ(ours, expected) << "'" << text << "' with\n" << source;
    }
  }
}

TEST(Grammar, StateIsUnchangedWhenATokenIsRefused) {
  const auto vocab = test::synthetic_vocabulary(1, 100);
  auto compiled = std::make_shared<CompiledGrammar>(compile(R"g(root ::= "ab" "c")g"), vocab);
  GrammarMatcher matcher(compiled);
  EXPECT_FALSE(matcher.accept_bytes("ax").is_ok());
  EXPECT_TRUE(matcher.accept_bytes("ab").is_ok());
  EXPECT_FALSE(matcher.can_end());
  const int32_t end = vocab->end_ids()[0];
  EXPECT_FALSE(matcher.accept_token(end).is_ok());
  EXPECT_TRUE(matcher.accept_bytes("c").is_ok());
  EXPECT_TRUE(matcher.must_end());
  std::vector<uint64_t> mask(vocab->mask_words());
  ASSERT_TRUE(matcher.fill_mask(mask).is_ok());
  for (int32_t id = 0; id < vocab->n_vocab(); ++id) {
    EXPECT_EQ(test::mask_bit(mask, id), id == end) << id;
  }
  EXPECT_TRUE(matcher.accept_token(end).is_ok());
  EXPECT_TRUE(matcher.ended());
}

TEST(Grammar, TheSharedCacheServesLaterRequests) {
  const auto vocab = test::synthetic_vocabulary(2, 2000);
  auto compiled = std::make_shared<CompiledGrammar>(compile(json_object_gbnf()), vocab);
  ASSERT_TRUE(test::generate_constrained(compiled, 1).is_ok());
  const auto first = compiled->cache_stats();
  ASSERT_TRUE(test::generate_constrained(compiled, 1).is_ok());
  const auto second = compiled->cache_stats();
  EXPECT_GT(first.misses, 0u);
  EXPECT_EQ(second.misses, first.misses) << "the same text again needs no new walk";
}

struct BadGrammar {
  const char* source;
  const char* message;
};

TEST(Grammar, MalformedGrammarsAreErrorsThatSayWhere) {
  const BadGrammar cases[] = {
      {"", "no 'root' rule"},
      {"root ::= \"a", "unterminated string literal"},
      {"root ::= [a-", "unterminated character class"},
      {"root ::= [z-a]", "reversed"},
      {"root ::= x", "rule 'x' is used but never defined"},
      {"root ::= \"a\"\nroot ::= \"b\"", "line 2, column 1: rule 'root' is defined twice"},
      {"root ::= root \"a\" | \"b\"", "left-recursive"},
      {"root ::= a\na ::= b? a \"x\" | \"y\"\nb ::= \"z\"", "left-recursive"},
      {"root ::= \"a\" root", "can never match"},
      {"root ::= ( \"a\" ", "expected ')'"},
      {"root ::= \"a\" )", "unbalanced ')'"},
      {"root ::= \"a\"{3,2}", "n < m"},
      {"root ::= \"a\"{99999}", "repetition count over"},
      {"root ::= \"\\q\"", "unknown escape"},
      {"root ::= \"\\x4\"", "needs 2 hex digits"},
      {"root ::= \"\\UFFFFFFFF\"", "above U+10FFFF"},
      {"root ::= @", "unexpected character '@'"},
      {"root = \"a\"", "expected '::='"},
      {"root ::= [\\uD800-\\uDFFF]", "can never match"},
  };
  for (const BadGrammar& c : cases) {
    auto g = Grammar::from_gbnf(c.source);
    ASSERT_FALSE(g.is_ok()) << c.source;
    EXPECT_NE(g.status().message().find(c.message), std::string::npos)
        << c.source << " -> " << g.status().message();
  }
}

TEST(Grammar, HostileGrammarsFailCleanly) {
  // Deep nesting, huge expansions and a grammar with exponentially many parses.
  std::string deep = "root ::= " + std::string(20000, '(') + "\"a\"" + std::string(20000, ')');
  auto g = Grammar::from_gbnf(deep);
  ASSERT_FALSE(g.is_ok());
  EXPECT_NE(g.status().message().find("nested too deeply"), std::string::npos);
  auto big = Grammar::from_gbnf("root ::= \"a\"{0,10000} \"b\"{0,10000} \"c\"{0,10000}");
  ASSERT_FALSE(big.is_ok());
  EXPECT_NE(big.status().message().find("rules"), std::string::npos);

  const auto vocab = test::synthetic_vocabulary(4, 200);
  auto ambiguous = Grammar::from_gbnf("root ::= x*\nx ::= \"a\" | \"a\" | \"a\" \"a\"");
  ASSERT_TRUE(ambiguous.is_ok());
  auto compiled = std::make_shared<CompiledGrammar>(*ambiguous, vocab);
  GrammarMatcher matcher(compiled);
  Status status;
  for (int i = 0; i < 64 && status.is_ok(); ++i) status = matcher.accept_bytes("a");
  // Either it keeps up (stacks merge) or it says the grammar is too ambiguous; never a crash.
  if (!status.is_ok()) {
    EXPECT_NE(status.message().find("ambiguous"), std::string::npos);
  }
}

TEST(Grammar, CompilesNonAsciiRangesToUtf8Bytes) {
  auto grammar = compile(R"g(root ::= [\u0080-\U0010FFFF])g");
  const auto vocab = test::synthetic_vocabulary(9, 10);
  auto compiled = std::make_shared<CompiledGrammar>(grammar, vocab);
  for (uint32_t cp : {0x80u, 0x7FFu, 0x800u, 0xD7FFu, 0xE000u, 0xFFFFu, 0x10000u, 0x10FFFFu}) {
    std::string text;
    append_utf8(cp, text);
    GrammarMatcher matcher(compiled);
    EXPECT_TRUE(matcher.accept_bytes(text).is_ok() && matcher.can_end()) << std::hex << cp;
  }
  for (std::string bad : {std::string("\x7F"), std::string("\xED\xA0\x80"),  // a surrogate
                          std::string("\xC0\x80"), std::string("\xF4\x90\x80\x80")}) {
    GrammarMatcher matcher(compiled);
    EXPECT_FALSE(matcher.accept_bytes(bad).is_ok() && matcher.can_end());
  }
}

}  // namespace
}  // namespace infergrid
