// `infergrid model train-tokenizer`, `model encode` and `model import`: the steps that turn a
// text corpus and weights trained elsewhere (tools/train_default_model, PyTorch) into a GGUF
// written by infergrid itself.
#pragma once

#include <string>

namespace infergrid {

struct TrainTokenizerArgs {
  std::string corpus;
  std::string out;
  int vocab_size = 4096;
  // chatml: BOS/EOS plus <|im_start|>/<|im_end|> (EOT), and the ChatML template.
  std::string specials = "chatml";
};

struct EncodeCorpusArgs {
  std::string vocab;
  std::string in;
  std::string out;
  bool parse_special = false;
};

struct ImportModelArgs {
  std::string tensors;
  std::string vocab;
  std::string out;
};

// Each returns the process exit code (errors on stderr).
int run_train_tokenizer(const TrainTokenizerArgs& args);
int run_encode_corpus(const EncodeCorpusArgs& args);
int run_import_model(const ImportModelArgs& args);

}  // namespace infergrid
