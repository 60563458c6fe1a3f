// Building a GGUF model from parts made elsewhere: a tokenizer trained on a text corpus, and
// weights trained by another framework (safetensors). This is how the shipped default model is
// produced (tools/train_default_model): the weights come from PyTorch, every byte of the GGUF
// from infergrid's own writer.
//
// Invariant: what is written loads with Model::load; a part that does not fit (a tensor of the
// wrong shape for the metadata, a vocabulary size that disagrees) is refused before writing.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"
#include "model/bpe_trainer.h"
#include "model/tokenizer.h"

namespace infergrid {

// Writes a GGUF that holds only a vocabulary (tokenizer.ggml.*) and, when given, a chat
// template (tokenizer.chat_template): the input of encode_corpus and import_safetensors_model.
Status write_vocab_file(const TokenizerVocab& vocab, const std::string& chat_template,
                        const std::string& path);

// Tokenizes a text whose paragraphs are separated by blank lines, each paragraph encoded on its
// own (with its trailing "\n\n", no BOS), into `path` as little-endian uint32 words:
// n_paragraphs, then n_paragraphs + 1 offsets into the ids, then the ids. Returns the number
// of tokens.
// parse_special: control-token texts ("<|im_start|>") in the text become their ids.
Result<int64_t> encode_corpus(const Tokenizer& tokenizer, std::string_view text,
                              const std::string& path, bool parse_special = false);

// A GGUF of F32 tensors: every tensor of the safetensors file (names already GGUF's, shapes in
// torch order, so dims are reversed), its __metadata__ "gguf" entry (a JSON object of GGUF keys:
// integers as u32, or i32 when negative; floats as f32; strings; booleans) and every
// tokenizer.* key of the vocabulary file. The metadata must give general.architecture.
Status import_safetensors_model(const std::string& tensors_path, const std::string& vocab_path,
                                const std::string& out_path);

}  // namespace infergrid
