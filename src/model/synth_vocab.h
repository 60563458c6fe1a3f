// The vocabulary part of synthetic models: a byte-level BPE trained on the built-in corpus,
// and its GGUF metadata (tokenizer.ggml.*), written exactly as llama.cpp's converter names it.
#pragma once

#include <string>

#include "core/status.h"
#include "model/gguf_writer.h"
#include "model/tokenizer.h"

namespace infergrid {

using SynthVocab = TokenizerVocab;

// pre: "llama-bpe" (Llama 3 rules) or "qwen2".
Result<SynthVocab> make_synth_vocab(int n_vocab, const std::string& pre);
void write_synth_vocab(GgufWriter& writer, const SynthVocab& vocab);

}  // namespace infergrid
