// Tokenizer behaviour: llama.cpp's own test vectors on real vocabularies (ids must match
// exactly), round trips of arbitrary text, special tokens, BOS/EOS and streaming decode.
#include "model/tokenizer.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

#include "golden_required.h"
#include "golden_vocab.h"
#include "model/bpe_trainer.h"
#include "model/gguf.h"
#include "model/gguf_writer.h"
#include "model/unicode_util.h"

namespace infergrid {
namespace {

std::string vocab_dir() {
  return std::string(INFERGRID_SHARED_DIR) + "/golden/vocab";
}

bool read_file(const std::string& path, std::string* out) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return false;
  std::ostringstream buffer;
  buffer << in.rdbuf();
  *out = buffer.str();
  return true;
}

// NAME.gguf.inp: cases separated by "\n__ggml_vocab_test__\n" (the file ends with one).
std::vector<std::string> split_cases(const std::string& raw) {
  const std::string sep = "\n__ggml_vocab_test__\n";
  std::vector<std::string> cases;
  size_t pos = 0;
  while (pos < raw.size()) {
    const size_t next = raw.find(sep, pos);
    if (next == std::string::npos) {
      cases.push_back(raw.substr(pos));
      break;
    }
    cases.push_back(raw.substr(pos, next - pos));
    pos = next + sep.size();
  }
  return cases;
}

std::vector<std::vector<int32_t>> parse_expected(const std::string& raw) {
  std::vector<std::vector<int32_t>> lines;
  std::istringstream in(raw);
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::vector<int32_t> ids;
    int32_t id = 0;
    while (fields >> id) ids.push_back(id);
    lines.push_back(std::move(ids));
  }
  return lines;
}

std::string escape_for_message(const std::string& s) {
  std::string out;
  for (unsigned char c : s) {
    if (c == '\n') {
      out += "\\n";
    } else if (c == '\t') {
      out += "\\t";
    } else {
      out.push_back(static_cast<char>(c));
    }
  }
  return out;
}

class GoldenVocabTest : public ::testing::TestWithParam<const char*> {};

TEST_P(GoldenVocabTest, MatchesLlamaCppIdsAndRoundTrips) {
  const std::string name = GetParam();
  const std::string base = test::golden_vocab_path(name);
  std::string inp;
  std::string out;
  if (!read_file(base + ".inp", &inp) || !read_file(base + ".out", &out)) {
    IG_GOLDEN_MISSING("no test vectors for " << name << " under " << vocab_dir());
  }
  if (!std::filesystem::exists(base)) {
    IG_GOLDEN_MISSING("vocabulary file for " << name << " is not available (" << base << ")");
  }
  auto file = GgufFile::open(base);
  ASSERT_TRUE(file.is_ok()) << file.status().to_string();
  auto tokenizer = Tokenizer::from_gguf(**file);
  ASSERT_TRUE(tokenizer.is_ok()) << tokenizer.status().to_string();
  const Tokenizer& tok = **tokenizer;

  const std::vector<std::string> cases = split_cases(inp);
  const std::vector<std::vector<int32_t>> expected = parse_expected(out);
  ASSERT_EQ(cases.size(), expected.size());
  int matched = 0;
  int round_trips = 0;
  for (size_t i = 0; i < cases.size(); ++i) {
    const std::vector<int32_t> ids = tok.encode(cases[i], /*add_special=*/false,
                                                /*parse_special=*/false);
    if (ids == expected[i]) {
      ++matched;
    } else {
      ADD_FAILURE() << name << " case " << i << " '" << escape_for_message(cases[i])
                    << "': ids differ from llama.cpp";
    }
    // SPM prefixes a space when encoding; decode removes it, so every case round-trips.
    const std::string decoded = tok.decode(ids);
    if (decoded == cases[i]) {
      ++round_trips;
    } else {
      ADD_FAILURE() << name << " case " << i << " does not round-trip: '"
                    << escape_for_message(decoded) << "'";
    }
  }
  std::printf("[ golden   ] %s: %d/%zu cases match llama.cpp, %d/%zu round-trip\n", name.c_str(),
              matched, cases.size(), round_trips, cases.size());
}

INSTANTIATE_TEST_SUITE_P(Vocabs, GoldenVocabTest,
                         ::testing::Values("llama-spm", "phi-3", "gpt-2", "deepseek-coder", "qwen2",
                                           "llama-bpe"),
                         [](const auto& info) {
                           std::string s = info.param;
                           for (char& c : s) {
                             if (c == '-') c = '_';
                           }
                           return s;
                         });

// A random mix of scripts, emoji, whitespace runs and newlines. SentencePiece reads U+2581
// as its escaped space, so text for SPM round trips leaves it out (it decodes to ' ').
std::string random_text(std::mt19937& rng, size_t n_chars, bool with_u2581 = true) {
  // clang-format off
  static const std::vector<std::string> kAtoms = {
      "a", "Z", "q", "7", "0", " ", "  ", "\t", "\n", "\r\n", "'s", "'LL", ".", ",", "!", "?",
      "(", "}", "_", "-", "é", "ß", "ø", "Ω", "Ж", "я", "ا", "ש", "क", "ก", "中", "文", "日本",
      "한", "글", "€", "™", "½", "😀", "🚀", "👍🏽", "🦙", "\u00a0", "\u3000", "\u200b", "\x7f",
      "\x01", "1234567", "__init__", "<s", "</", "|>", "<|", "▁", "\ufeff"};
  // clang-format on
  std::uniform_int_distribution<size_t> pick(0, kAtoms.size() - 1);
  std::string s;
  for (size_t i = 0; i < n_chars;) {
    const std::string& atom = kAtoms[pick(rng)];
    if (!with_u2581 && atom == "\xE2\x96\x81") continue;
    s += atom;
    ++i;
  }
  return s;
}

TEST(Tokenizer, RandomUtf8RoundTripsOnRealVocabs) {
  int tested = 0;
  for (const char* name : {"llama-spm", "gpt-2", "deepseek-coder"}) {
    std::unique_ptr<Tokenizer> tok = test::open_golden_vocab(name);
    if (!tok) continue;
    ++tested;
    std::mt19937 rng(1234);
    for (int i = 0; i < 200; ++i) {
      const std::string text =
          random_text(rng, 1 + static_cast<size_t>(i % 40), tok->kind() == TokenizerKind::kBpe);
      const std::vector<int32_t> ids = tok->encode(text, false, false);
      for (int32_t id : ids) ASSERT_TRUE(id >= 0 && id < tok->n_vocab());
      ASSERT_EQ(tok->decode(ids), text) << name << ": '" << escape_for_message(text) << "'";
    }
  }
  if (tested == 0) IG_GOLDEN_MISSING("no golden vocabularies under " << vocab_dir());
}

TEST(Tokenizer, ByteLevelBpeRoundTripsInvalidUtf8) {
  std::unique_ptr<Tokenizer> tok = test::open_golden_vocab("gpt-2");
  if (!tok) IG_GOLDEN_MISSING("gpt-2 vocabulary not available");
  std::mt19937 rng(7);
  std::uniform_int_distribution<int> byte(0, 255);
  for (int i = 0; i < 200; ++i) {
    std::string text;
    for (int j = 0; j < 1 + i % 50; ++j) text.push_back(static_cast<char>(byte(rng)));
    ASSERT_EQ(tok->decode(tok->encode(text, false, false)), text);
  }
}

TEST(Tokenizer, SpmAddsBosAndParsesSpecialsLikeLlamaCpp) {
  std::unique_ptr<Tokenizer> tok = test::open_golden_vocab("llama-spm");
  if (!tok) IG_GOLDEN_MISSING("llama-spm vocabulary not available");
  EXPECT_EQ(tok->kind(), TokenizerKind::kSpm);
  EXPECT_EQ(tok->bos_id(), 1);
  EXPECT_EQ(tok->eos_id(), 2);
  EXPECT_TRUE(tok->add_bos());
  EXPECT_FALSE(tok->add_eos());
  EXPECT_TRUE(tok->is_eog(2));
  EXPECT_FALSE(tok->is_eog(1));

  // "Hello world" = 15043 3186 (from the golden vectors); BOS in front with add_special.
  EXPECT_EQ(tok->encode("Hello world", true, false), (std::vector<int32_t>{1, 15043, 3186}));
  EXPECT_EQ(tok->decode(std::vector<int32_t>{1, 15043, 3186}), "Hello world");
  EXPECT_EQ(tok->decode(std::vector<int32_t>{1, 15043, 3186}, true), "<s>Hello world");
  // parse_special: "</s>" is a control token; the text after it gets its own space prefix.
  const std::vector<int32_t> ids = tok->encode("Hello</s>world", false, true);
  ASSERT_GE(ids.size(), 3u);
  EXPECT_EQ(ids[0], 15043);
  EXPECT_EQ(ids[1], 2);
  EXPECT_EQ(tok->decode(std::span(ids).subspan(2)), "world");
  // Without parse_special the text is ordinary characters.
  const std::vector<int32_t> plain = tok->encode("Hello</s>world", false, false);
  EXPECT_EQ(std::count(plain.begin(), plain.end(), 2), 0);
  EXPECT_EQ(tok->decode(plain), "Hello</s>world");
  EXPECT_EQ(tok->token_to_piece(15043), " Hello");
  EXPECT_EQ(tok->find_token("<0x0A>"), std::optional<int32_t>(13));
  EXPECT_EQ(tok->token_to_piece(13), "\n");
}

TEST(Tokenizer, UserDefinedTokensAreSplitEvenWithoutParseSpecial) {
  std::unique_ptr<Tokenizer> tok = test::open_golden_vocab("deepseek-coder");
  if (!tok) IG_GOLDEN_MISSING("deepseek-coder vocabulary not available");
  // 'ü' (32009) is a user-defined token in this vocabulary.
  EXPECT_EQ(tok->encode("Führer", false, false), (std::vector<int32_t>{37, 32009, 71, 6247}));
  // BOS is added (add_bos_token = true); control tokens parse only on request.
  const std::vector<int32_t> ids = tok->encode("<｜end▁of▁sentence｜>", true, true);
  EXPECT_EQ(ids, (std::vector<int32_t>{32013, 32014}));
  EXPECT_TRUE(tok->is_eog(32014));
}

// A small SPM vocabulary built in memory: <unk> <s> </s>, 256 byte tokens, a few pieces.
TokenizerVocab small_spm_vocab() {
  TokenizerVocab v;
  v.model = "llama";
  v.tokens = {"<unk>", "<s>", "</s>"};
  v.types = {TokenType::kUnknown, TokenType::kControl, TokenType::kControl};
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof(name), "<0x%02X>", b);
    v.tokens.push_back(name);
    v.types.push_back(TokenType::kByte);
  }
  v.scores.assign(v.tokens.size(), 0.0f);
  const std::vector<std::pair<std::string, float>> pieces = {{"\xE2\x96\x81", -1.0f},
                                                             {"h", -2.0f},
                                                             {"e", -2.0f},
                                                             {"l", -2.0f},
                                                             {"o", -2.0f},
                                                             {"he", -3.0f},
                                                             {"ll", -3.0f},
                                                             {"llo", -4.0f},
                                                             {"hello", -5.0f},
                                                             {"\xE2\x96\x81hello", -6.0f},
                                                             {"<|im_start|>", 0.0f}};
  for (const auto& [text, score] : pieces) {
    v.tokens.push_back(text);
    v.scores.push_back(score);
    v.types.push_back(text == "<|im_start|>" ? TokenType::kControl : TokenType::kNormal);
  }
  v.bos_id = 1;
  v.eos_id = 2;
  v.unk_id = 0;
  v.add_eos = true;
  return v;
}

TEST(Tokenizer, InMemorySpmMergesByScoreAndFallsBackToBytes) {
  auto created = Tokenizer::create(small_spm_vocab());
  ASSERT_TRUE(created.is_ok()) << created.status().to_string();
  const Tokenizer& tok = **created;
  const int32_t hello = *tok.find_token("\xE2\x96\x81hello");
  const std::vector<int32_t> ids = tok.encode("hello", true, false);
  EXPECT_EQ(ids, (std::vector<int32_t>{1, hello, 2}));  // add_eos = true in this vocab
  // 'x' is not in the vocabulary: byte token <0x78> = 3 + 0x78.
  const std::vector<int32_t> x = tok.encode("x", false, false);
  const int32_t space = *tok.find_token("\xE2\x96\x81");
  EXPECT_EQ(x, (std::vector<int32_t>{space, 3 + 0x78}));
  EXPECT_EQ(tok.decode(x), "x");

  std::mt19937 rng(99);
  for (int i = 0; i < 300; ++i) {
    const std::string text = random_text(rng, 1 + static_cast<size_t>(i % 25), false);
    EXPECT_EQ(tok.decode(tok.encode(text, false, false)), text) << escape_for_message(text);
    EXPECT_EQ(tok.decode(tok.encode(text, true, false)), text) << escape_for_message(text);
  }
}

TEST(Tokenizer, InMemoryVocabIsValidated) {
  TokenizerVocab bad = small_spm_vocab();
  bad.scores.pop_back();
  EXPECT_EQ(Tokenizer::create(bad).status().code(), StatusCode::kCorrupt);
  TokenizerVocab unsupported = small_spm_vocab();
  unsupported.model = "bert";
  EXPECT_EQ(Tokenizer::create(unsupported).status().code(), StatusCode::kUnsupported);
  TokenizerVocab bad_id = small_spm_vocab();
  bad_id.bos_id = 100000;
  EXPECT_EQ(Tokenizer::create(bad_id).status().code(), StatusCode::kInvalidArgument);
}

TEST(Tokenizer, FromGgufReadsKeysAndRejectsUnknownModels) {
  Result<TokenizerVocab> vocab = make_default_bpe_vocab(600);
  ASSERT_TRUE(vocab.is_ok()) << vocab.status().to_string();
  GgufWriter writer;
  writer.set_string("general.architecture", "llama");
  writer.set_string("tokenizer.ggml.model", vocab->model);
  writer.set_string("tokenizer.ggml.pre", vocab->pre);
  writer.set_string_array("tokenizer.ggml.tokens", vocab->tokens);
  std::vector<int32_t> types;
  for (TokenType t : vocab->types) types.push_back(static_cast<int32_t>(t));
  writer.set_i32_array("tokenizer.ggml.token_type", types);
  writer.set_string_array("tokenizer.ggml.merges", vocab->merges);
  writer.set_u32("tokenizer.ggml.bos_token_id", static_cast<uint32_t>(vocab->bos_id));
  writer.set_u32("tokenizer.ggml.eos_token_id", static_cast<uint32_t>(vocab->eos_id));
  writer.set_u32("tokenizer.ggml.eot_token_id", static_cast<uint32_t>(vocab->eot_id));
  writer.set_bool("tokenizer.ggml.add_bos_token", true);
  const std::vector<uint8_t> image = writer.serialize();
  auto file = GgufFile::parse(image, "memory");
  ASSERT_TRUE(file.is_ok()) << file.status().to_string();
  auto tok = Tokenizer::from_gguf(**file);
  ASSERT_TRUE(tok.is_ok()) << tok.status().to_string();
  EXPECT_EQ((*tok)->n_vocab(), 600);
  EXPECT_EQ((*tok)->bos_id(), vocab->bos_id);
  EXPECT_EQ((*tok)->pre_tokenizer_type(), PreTokenizerType::kLlama3);
  const std::string text = "The quick brown fox, 12345 times.\n";
  const std::vector<int32_t> ids = (*tok)->encode(text, true, false);
  EXPECT_EQ(ids.front(), vocab->bos_id);
  EXPECT_EQ((*tok)->decode(ids), text);

  GgufWriter bert;
  bert.set_string("tokenizer.ggml.model", "bert");
  bert.set_string_array("tokenizer.ggml.tokens", {"[CLS]"});
  const std::vector<uint8_t> bert_image = bert.serialize();
  auto bert_file = GgufFile::parse(bert_image, "bert");
  ASSERT_TRUE(bert_file.is_ok());
  auto bert_tok = Tokenizer::from_gguf(**bert_file);
  ASSERT_FALSE(bert_tok.is_ok());
  EXPECT_EQ(bert_tok.status().code(), StatusCode::kUnsupported);
  EXPECT_NE(bert_tok.status().message().find("bert"), std::string::npos);
}

std::unique_ptr<Tokenizer> trained_tokenizer(int vocab_size) {
  Result<TokenizerVocab> vocab = make_default_bpe_vocab(vocab_size);
  if (!vocab.is_ok()) return nullptr;
  auto tok = Tokenizer::create(std::move(vocab).value());
  if (!tok.is_ok()) return nullptr;
  return std::move(tok).value();
}

TEST(Tokenizer, BpeSpecialTokensParseOnlyOnRequest) {
  std::unique_ptr<Tokenizer> tok = trained_tokenizer(1024);
  ASSERT_NE(tok, nullptr);
  const int32_t im_start = *tok->find_token("<|im_start|>");
  const int32_t im_end = *tok->find_token("<|im_end|>");
  const std::string text = "<|im_start|>user\nHello there<|im_end|>\n";
  const std::vector<int32_t> parsed = tok->encode(text, false, true);
  EXPECT_EQ(parsed.front(), im_start);
  EXPECT_NE(std::find(parsed.begin(), parsed.end(), im_end), parsed.end());
  EXPECT_EQ(tok->decode(parsed, /*render_special=*/true), text);
  EXPECT_EQ(tok->decode(parsed), "user\nHello there\n");  // control tokens render empty

  const std::vector<int32_t> plain = tok->encode(text, false, false);
  EXPECT_EQ(std::find(plain.begin(), plain.end(), im_start), plain.end());
  EXPECT_EQ(tok->decode(plain), text);

  EXPECT_TRUE(tok->is_eog(im_end));
  EXPECT_TRUE(tok->is_eog(*tok->find_token("<|eot_id|>")));
  EXPECT_TRUE(tok->is_eog(tok->eos_id()));
  EXPECT_FALSE(tok->is_eog(im_start));
  EXPECT_FALSE(tok->is_eog(tok->bos_id()));
}

TEST(Tokenizer, BpeAddsBosButNotEos) {
  std::unique_ptr<Tokenizer> tok = trained_tokenizer(512);
  ASSERT_NE(tok, nullptr);
  const std::vector<int32_t> with = tok->encode("hi", true, false);
  const std::vector<int32_t> without = tok->encode("hi", false, false);
  ASSERT_EQ(with.size(), without.size() + 1);
  EXPECT_EQ(with.front(), tok->bos_id());
  EXPECT_TRUE(tok->encode("", false, false).empty());
  EXPECT_EQ(tok->encode("", true, false), std::vector<int32_t>{tok->bos_id()});
}

TEST(Tokenizer, TrainedBpeRoundTripsArbitraryText) {
  std::unique_ptr<Tokenizer> tok = trained_tokenizer(800);
  ASSERT_NE(tok, nullptr);
  std::mt19937 rng(2024);
  std::uniform_int_distribution<int> byte(0, 255);
  for (int i = 0; i < 300; ++i) {
    const std::string text = random_text(rng, 1 + static_cast<size_t>(i % 30));
    ASSERT_EQ(tok->decode(tok->encode(text, false, false)), text) << escape_for_message(text);
    std::string bytes;
    for (int j = 0; j < 1 + i % 20; ++j) bytes.push_back(static_cast<char>(byte(rng)));
    ASSERT_EQ(tok->decode(tok->encode(bytes, true, false)), bytes);
  }
}

TEST(Tokenizer, StreamingDecodeHoldsBackPartialUtf8) {
  std::unique_ptr<Tokenizer> tok = trained_tokenizer(512);
  ASSERT_NE(tok, nullptr);
  // A rare emoji is not a learned token, so byte-level BPE spells it with 4 byte tokens.
  const std::string text = "ok \xF0\x9F\xA6\x99 done";
  const std::vector<int32_t> ids = tok->encode(text, false, false);
  StreamingDecoder stream(*tok);
  std::string streamed;
  bool held_back = false;
  for (int32_t id : ids) {
    const std::string chunk = stream.push(id);
    EXPECT_TRUE(is_valid_utf8(chunk)) << "emitted a partial character";
    if (chunk.empty() && !tok->token_to_piece(id).empty()) held_back = true;
    streamed += chunk;
  }
  streamed += stream.flush();
  EXPECT_TRUE(held_back);
  EXPECT_EQ(streamed, text);

  // An incomplete character at the very end comes out of flush().
  StreamingDecoder tail(*tok);
  const std::vector<int32_t> partial = tok->encode("\xE2\x82", false, false);
  std::string got;
  for (int32_t id : partial) got += tail.push(id);
  EXPECT_EQ(got, "");
  EXPECT_EQ(tail.flush(), "\xE2\x82");
}

std::vector<std::string> split_with(PreTokenizerType type, std::string_view text) {
  auto pre = PreTokenizer::create(type);
  EXPECT_TRUE(pre.is_ok()) << pre.status().to_string();
  std::vector<std::string_view> pieces;
  (*pre)->split(text, pieces);
  return std::vector<std::string>(pieces.begin(), pieces.end());
}

TEST(PreTokenizer, Llama3SplitsContractionsDigitTriplesAndWhitespace) {
  using V = std::vector<std::string>;
  EXPECT_EQ(split_with(PreTokenizerType::kLlama3, "I've 12345 apples!!\n\n  ok"),
            (V{"I", "'ve", " ", "123", "45", " apples", "!!\n\n", " ", " ok"}));
  EXPECT_EQ(split_with(PreTokenizerType::kLlama3, "DON'T"), (V{"DON", "'T"}));
  // Qwen2 is the same regex with single digits.
  EXPECT_EQ(split_with(PreTokenizerType::kQwen2, "x=123"), (V{"x", "=", "1", "2", "3"}));
  // GPT-2: a space attaches to the following word; contractions are lowercase only.
  EXPECT_EQ(split_with(PreTokenizerType::kGpt2, "Hello  world's DON'T"),
            (V{"Hello", " ", " world", "'s", " DON", "'", "T"}));
}

TEST(PreTokenizer, PiecesCoverArbitraryBytes) {
  std::mt19937 rng(5);
  std::uniform_int_distribution<int> byte(0, 255);
  for (PreTokenizerType type :
       {PreTokenizerType::kDefault, PreTokenizerType::kGpt2, PreTokenizerType::kLlama3,
        PreTokenizerType::kQwen2, PreTokenizerType::kDeepseekCoder, PreTokenizerType::kStarcoder,
        PreTokenizerType::kFalcon}) {
    for (int i = 0; i < 100; ++i) {
      std::string text = random_text(rng, 1 + static_cast<size_t>(i % 20));
      text.push_back(static_cast<char>(byte(rng)));
      std::string joined;
      for (const std::string& piece : split_with(type, text)) {
        EXPECT_FALSE(piece.empty());
        joined += piece;
      }
      ASSERT_EQ(joined, text) << pre_tokenizer_name(type);
    }
  }
}

TEST(Tokenizer, UnknownPreTokenizerFallsBackToGpt2) {
  Result<TokenizerVocab> vocab = make_default_bpe_vocab(300);
  ASSERT_TRUE(vocab.is_ok());
  vocab->pre = "no-such-pre-tokenizer";
  auto tok = Tokenizer::create(std::move(vocab).value());
  ASSERT_TRUE(tok.is_ok());
  EXPECT_EQ((*tok)->pre_tokenizer_type(), PreTokenizerType::kGpt2);
}

TEST(Utf8, CompletePrefixLength) {
  EXPECT_EQ(utf8_complete_prefix_length("abc"), 3u);
  EXPECT_EQ(utf8_complete_prefix_length("ab\xE2\x82"), 2u);
  EXPECT_EQ(utf8_complete_prefix_length("ab\xE2\x82\xAC"), 5u);
  EXPECT_EQ(utf8_complete_prefix_length("\xF0\x9F\xA6"), 0u);
  EXPECT_EQ(utf8_complete_prefix_length("a\x80"), 2u);  // stray continuation: never completes
  EXPECT_EQ(utf8_complete_prefix_length(""), 0u);
}

TEST(Utf8, Gpt2ByteMappingIsABijection) {
  for (int b = 0; b < 256; ++b) {
    const uint32_t cp = gpt2_byte_to_codepoint(static_cast<uint8_t>(b));
    EXPECT_EQ(gpt2_codepoint_to_byte(cp), std::optional<uint8_t>(static_cast<uint8_t>(b)));
  }
  EXPECT_EQ(gpt2_byte_to_utf8(' '), "\xC4\xA0");   // 'Ġ'
  EXPECT_EQ(gpt2_byte_to_utf8('\n'), "\xC4\x8A");  // 'Ċ'
  EXPECT_EQ(gpt2_byte_at_rank(0), '!');
}

}  // namespace
}  // namespace infergrid
