// The path from weights trained elsewhere to a GGUF: safetensors parsing (and refusal of
// malformed files), corpus encoding, vocabulary training with chosen special tokens, and the
// import itself, checked by giving exactly the logits of the model the weights came from.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "kernels/cpu_backend.h"
#include "model/bpe_trainer.h"
#include "model/gguf.h"
#include "model/gguf_writer.h"
#include "model/model.h"
#include "model/model_import.h"
#include "model/safetensors.h"
#include "model/synth.h"

namespace infergrid {
namespace {

std::filesystem::path test_dir() {
  const auto dir = std::filesystem::temp_directory_path() / "infergrid_model_import_test";
  std::filesystem::create_directories(dir);
  return dir;
}

std::vector<uint8_t> safetensors_bytes(const nlohmann::json& header,
                                       const std::vector<uint8_t>& data) {
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');
  std::vector<uint8_t> out;
  out.reserve(8 + text.size() + data.size());
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<uint8_t>((text.size() >> (8 * i)) & 0xFF));
  for (char c : text) out.push_back(static_cast<uint8_t>(c));
  for (uint8_t b : data) out.push_back(b);
  return out;
}

TEST(Safetensors, ReadsTensorsAndMetadata) {
  std::vector<uint8_t> data(24);
  const float values[6] = {1, 2, 3, 4, 5, 6};
  std::memcpy(data.data(), values, sizeof(values));
  const nlohmann::json header = {
      {"__metadata__", {{"format", "pt"}}},
      {"w", {{"dtype", "F32"}, {"shape", {2, 3}}, {"data_offsets", {0, 24}}}}};
  auto file = SafetensorsFile::parse(safetensors_bytes(header, data), "mem");
  ASSERT_TRUE(file.is_ok()) << file.status().to_string();
  ASSERT_EQ(file->tensors().size(), 1u);
  const SafetensorsTensor* w = file->find("w");
  ASSERT_NE(w, nullptr);
  EXPECT_EQ(w->shape, (std::vector<int64_t>{2, 3}));
  float back[6];
  std::memcpy(back, w->data.data(), sizeof(back));
  EXPECT_EQ(back[5], 6.0f);
  EXPECT_EQ(file->metadata().at("format"), "pt");
}

TEST(Safetensors, MalformedFilesAreRefusedNeverReadPast) {
  const std::vector<uint8_t> data(24);
  const auto entry = [](nlohmann::json offsets, nlohmann::json shape = {2, 3},
                        std::string dtype = "F32") {
    return nlohmann::json{{"w", {{"dtype", dtype}, {"shape", shape}, {"data_offsets", offsets}}}};
  };
  const std::vector<std::pair<std::string, std::vector<uint8_t>>> cases = {
      {"past the end", safetensors_bytes(entry({0, 48}), data)},
      {"size mismatch", safetensors_bytes(entry({0, 20}), data)},
      {"reversed range", safetensors_bytes(entry({24, 0}), data)},
      {"bad shape", safetensors_bytes(entry({0, 24}, {-2, 3}), data)},
      {"huge shape", safetensors_bytes(entry({0, 24}, {1LL << 41, 1}), data)},
      {"not json",
       [] {
         std::vector<uint8_t> b = {5, 0, 0, 0, 0, 0, 0, 0, '{', 'x', ':', ' ', '}'};
         return b;
       }()},
      {"header too long", {0xFF, 0xFF, 0, 0, 0, 0, 0, 0, '{', '}'}},
      {"short", {1, 2, 3}},
      {"metadata not strings", safetensors_bytes({{"__metadata__", {{"n", 3}}}}, data)},
  };
  for (const auto& [name, bytes] : cases) {
    auto file = SafetensorsFile::parse(bytes, name);
    EXPECT_FALSE(file.is_ok()) << name;
    if (!file.is_ok()) {
      EXPECT_EQ(file.status().code(), StatusCode::kCorrupt) << name;
    }
  }
  auto f16 = SafetensorsFile::parse(safetensors_bytes(entry({0, 12}, {2, 3}, "C64"), data), "c64");
  ASSERT_FALSE(f16.is_ok());
  EXPECT_EQ(f16.status().code(), StatusCode::kUnsupported);
}

TEST(TrainBpeVocab, ChatMlSpecialsGetTheirRolesAndParseAsOneToken) {
  BpeVocabSpec spec;
  spec.vocab_size = 600;
  spec.specials = {"<|begin_of_text|>", "<|end_of_text|>", "<|im_start|>", "<|im_end|>"};
  spec.bos_index = 0;
  spec.eos_index = 1;
  spec.eot_index = 3;
  auto vocab = train_bpe_vocab(default_bpe_training_corpus(), spec);
  ASSERT_TRUE(vocab.is_ok()) << vocab.status().to_string();
  ASSERT_EQ(vocab->tokens.size(), 600u);
  EXPECT_EQ(vocab->tokens[static_cast<size_t>(vocab->bos_id)], "<|begin_of_text|>");
  EXPECT_EQ(vocab->tokens[static_cast<size_t>(vocab->eos_id)], "<|end_of_text|>");
  EXPECT_EQ(vocab->tokens[static_cast<size_t>(vocab->eot_id)], "<|im_end|>");
  auto tokenizer = Tokenizer::create(*vocab);
  ASSERT_TRUE(tokenizer.is_ok());
  const auto ids = (*tokenizer)->encode("<|im_start|>user\nhi<|im_end|>", false, true);
  ASSERT_GE(ids.size(), 3u);
  EXPECT_EQ(ids.front(), vocab->eot_id - 1);
  EXPECT_EQ(ids.back(), vocab->eot_id);

  spec.eot_index = 4;  // out of range
  EXPECT_FALSE(train_bpe_vocab(default_bpe_training_corpus(), spec).is_ok());
  spec.eot_index = 3;
  spec.vocab_size = 200;  // no room for the bytes
  EXPECT_FALSE(train_bpe_vocab(default_bpe_training_corpus(), spec).is_ok());
}

TEST(EncodeCorpus, ParagraphsEncodeApartAndDecodeBack) {
  auto vocab = make_default_bpe_vocab(512);
  ASSERT_TRUE(vocab.is_ok());
  auto tokenizer = Tokenizer::create(*vocab);
  ASSERT_TRUE(tokenizer.is_ok());
  const std::string text = "First paragraph, two lines\nof it.\n\n\n\nSecond one.\n\nThird.";
  const std::string path = (test_dir() / "corpus.ids").string();
  auto n = encode_corpus(**tokenizer, text, path);
  ASSERT_TRUE(n.is_ok()) << n.status().to_string();
  std::ifstream in(path, std::ios::binary);
  std::vector<uint32_t> words;
  uint32_t w;
  while (in.read(reinterpret_cast<char*>(&w), 4)) words.push_back(w);
  ASSERT_GE(words.size(), 5u);
  ASSERT_EQ(words[0], 3u);
  const std::vector<std::string> expected = {"First paragraph, two lines\nof it.\n\n",
                                             "Second one.\n\n", "Third.\n\n"};
  const size_t ids_begin = 1 + 4;
  EXPECT_EQ(words.size() - ids_begin, static_cast<size_t>(*n));
  for (size_t p = 0; p < 3; ++p) {
    std::vector<int32_t> ids(words.begin() + static_cast<ptrdiff_t>(ids_begin + words[1 + p]),
                             words.begin() + static_cast<ptrdiff_t>(ids_begin + words[2 + p]));
    EXPECT_EQ((*tokenizer)->decode(ids), expected[p]) << p;
  }
}

// A synthetic F32 model taken apart into safetensors (torch shapes, GGUF names) plus a
// vocabulary file, then imported: the imported model computes the very same logits.
TEST(ImportSafetensors, RoundTripOfASynthModelGivesIdenticalLogits) {
  const auto dir = test_dir();
  SynthOptions synth;
  synth.size = "1m";
  synth.type = TensorType::kF32;
  synth.tied_output = true;
  const std::string source = (dir / "source.gguf").string();
  ASSERT_TRUE(synthesize_model(synth, source).is_ok());
  auto gguf = GgufFile::open(source);
  ASSERT_TRUE(gguf.is_ok());

  nlohmann::json meta = nlohmann::json::object();
  for (const auto& [key, value] : (*gguf)->metadata()) {
    if (key.rfind("tokenizer.", 0) == 0) continue;
    if (value.type == GgufValueType::kString) {
      meta[key] = std::string(value.str);
    } else if (value.is_float()) {
      meta[key] = value.f64;
    } else if (value.type == GgufValueType::kUint32) {
      meta[key] = value.u64;
    }
  }
  nlohmann::json header = {{"__metadata__", {{"gguf", meta.dump()}}}};
  std::vector<uint8_t> data;
  for (const GgufTensorInfo& t : (*gguf)->tensors()) {
    const std::span<const uint8_t> bytes(t.data, t.n_bytes);
    header[t.name] = {{"dtype", "F32"},
                      {"shape", std::vector<int64_t>(t.dims.rbegin(), t.dims.rend())},
                      {"data_offsets", {data.size(), data.size() + bytes.size()}}};
    data.insert(data.end(), bytes.begin(), bytes.end());
  }
  const std::string tensors_path = (dir / "weights.safetensors").string();
  {
    const auto bytes = safetensors_bytes(header, data);
    std::ofstream(tensors_path, std::ios::binary)
        .write(reinterpret_cast<const char*>(bytes.data()),
               static_cast<std::streamsize>(bytes.size()));
  }
  const std::string vocab_path = (dir / "vocab.gguf").string();
  GgufWriter vocab_writer;
  for (const auto& [key, value] : (*gguf)->metadata()) {
    if (key.rfind("tokenizer.", 0) == 0) vocab_writer.set_value(key, value);
  }
  ASSERT_TRUE(vocab_writer.write_file(vocab_path).is_ok());

  const std::string imported = (dir / "imported.gguf").string();
  Status status = import_safetensors_model(tensors_path, vocab_path, imported);
  ASSERT_TRUE(status.is_ok()) << status.to_string();

  auto a = Model::load(source);
  auto b = Model::load(imported);
  ASSERT_TRUE(a.is_ok() && b.is_ok());
  const std::vector<int32_t> prompt = {1, 50, 200, 7, 99, 300, 12, 4};
  CpuBackend backend(1);
  const auto logits = [&](Model& m) {
    KvCache cache(m.config(), 16, KvType::kF32);
    ForwardScratch scratch(m.config(), 8);
    auto out = m.forward(backend, cache, scratch, prompt, 0, Model::Logits::kAll);
    EXPECT_TRUE(out.is_ok());
    return std::vector<float>(out->begin(), out->end());
  };
  EXPECT_EQ(logits(**a), logits(**b));

  // A tensor of the wrong shape for the metadata is refused and leaves no file behind.
  header["blk.0.attn_q.weight"]["shape"] = {1, static_cast<int64_t>(data.size() / 4)};
  header["blk.0.attn_q.weight"]["data_offsets"] = {0, data.size()};
  const auto bad = safetensors_bytes(header, data);
  std::ofstream(tensors_path, std::ios::binary | std::ios::trunc)
      .write(reinterpret_cast<const char*>(bad.data()), static_cast<std::streamsize>(bad.size()));
  const std::string refused = (dir / "refused.gguf").string();
  EXPECT_FALSE(import_safetensors_model(tensors_path, vocab_path, refused).is_ok());
  EXPECT_FALSE(std::filesystem::exists(refused));
  // No metadata: refused with a message naming what is missing.
  header.erase("__metadata__");
  const auto no_meta = safetensors_bytes(header, data);
  std::ofstream(tensors_path, std::ios::binary | std::ios::trunc)
      .write(reinterpret_cast<const char*>(no_meta.data()),
             static_cast<std::streamsize>(no_meta.size()));
  Status missing = import_safetensors_model(tensors_path, vocab_path, refused);
  EXPECT_NE(missing.to_string().find("gguf"), std::string::npos) << missing.to_string();
}

}  // namespace
}  // namespace infergrid
