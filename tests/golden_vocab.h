// The real tokenizer vocabularies of ../shared/golden/vocab, opened the one way every test
// that needs them does.
#pragma once

#include <gtest/gtest.h>

#include <filesystem>
#include <memory>
#include <string>

#include "model/gguf.h"
#include "model/tokenizer.h"

namespace infergrid::test {

inline std::string golden_vocab_path(const std::string& name) {
  return std::string(INFERGRID_SHARED_DIR) + "/golden/vocab/ggml-vocab-" + name + ".gguf";
}

// The tokenizer of ggml-vocab-NAME.gguf; nullptr when the file is absent (the caller decides:
// IG_GOLDEN_MISSING). A file that is there but does not load is a failure of the test too.
inline std::unique_ptr<Tokenizer> open_golden_vocab(const std::string& name) {
  const std::string path = golden_vocab_path(name);
  if (!std::filesystem::exists(path)) return nullptr;
  auto file = GgufFile::open(path);
  if (!file.is_ok()) {
    ADD_FAILURE() << file.status().to_string();
    return nullptr;
  }
  auto tokenizer = Tokenizer::from_gguf(**file);
  if (!tokenizer.is_ok()) {
    ADD_FAILURE() << tokenizer.status().to_string();
    return nullptr;
  }
  return std::move(tokenizer).value();
}

}  // namespace infergrid::test
