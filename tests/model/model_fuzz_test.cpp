// The model loader on damaged files of every new architecture and type (qwen3, phi3, the MoE
// layouts; the K-quant mixes, IQ4): random byte changes in the header (metadata and tensor
// infos) and in tensor data never crash a load or a forward pass; a refused file is a
// `corrupt:` or `unsupported:` error that names what is wrong.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <random>
#include <vector>

#include "golden_required.h"
#include "kernels/cpu_backend.h"
#include "model/golden_data.h"
#include "model/model.h"

namespace infergrid {
namespace {

std::vector<uint8_t> read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), {});
}

TEST(ModelFuzz, DamagedFilesOfEveryArchitectureNeverCrash) {
  if (golden_dir().empty()) IG_GOLDEN_MISSING("../shared/golden not present");
  std::mt19937 rng(20261202);
  CpuBackend backend(1);
  int loaded = 0, refused = 0;
  for (const char* name :
       {"tiny-qwen3moe-q4_k_m", "tiny-qwen2moe-q8_0", "tiny-moe-llama-q8_0", "tiny-phi3-q8_0",
        "tiny-qwen3-q4_k_m", "tiny-llama-iq4_xs", "tiny-llama-q2_k", "tiny-llama-q5_1"}) {
    SCOPED_TRACE(name);
    std::vector<uint8_t> bytes = read_file(golden_model_path(name));
    ASSERT_FALSE(bytes.empty());
    size_t header = 0;
    {
      auto clean = GgufFile::parse(bytes, name);
      ASSERT_TRUE(clean.is_ok()) << clean.status().to_string();
      header = (*clean)->header_bytes().size();
    }
    for (int iteration = 0; iteration < 1000; ++iteration) {
      // Damage a few bytes (mostly in the header, sometimes in tensor data), then restore them.
      std::vector<std::pair<size_t, uint8_t>> saved;
      const int changes = 1 + static_cast<int>(rng() % 3);
      for (int k = 0; k < changes; ++k) {
        const size_t at =
            rng() % 4 == 0 ? header + rng() % (bytes.size() - header) : rng() % header;
        saved.emplace_back(at, bytes[at]);
        bytes[at] = rng() % 3 == 0 ? static_cast<uint8_t>(bytes[at] ^ (1u << (rng() % 8)))
                                   : static_cast<uint8_t>(rng());
      }
      auto file = GgufFile::parse(bytes, name);
      if (file.is_ok()) {
        auto model = Model::from_gguf(std::move(file).value(), Model::WeightPacking::kOff);
        if (model.is_ok()) {
          ++loaded;
          const ModelConfig& c = (*model)->config();
          KvCache cache(c, 8, kDefaultKvType);
          ForwardScratch scratch(c, 8);
          const std::vector<int32_t> tokens = {1, 5 % c.n_vocab, 7 % c.n_vocab};
          auto logits = (*model)->forward(backend, cache, scratch, tokens, 0, Model::Logits::kLast);
          EXPECT_TRUE(logits.is_ok()) << logits.status().to_string();
        } else {
          ++refused;
          const StatusCode code = model.status().code();
          EXPECT_TRUE(code == StatusCode::kCorrupt || code == StatusCode::kUnsupported)
              << model.status().to_string();
          EXPECT_FALSE(model.status().message().empty());
        }
      } else {
        ++refused;
      }
      for (auto it = saved.rbegin(); it != saved.rend(); ++it) bytes[it->first] = it->second;
    }
  }
  std::printf("[model fuzz] %d damaged files loaded and ran, %d refused\n", loaded, refused);
  EXPECT_GT(loaded, 0);
  EXPECT_GT(refused, 0);
}

}  // namespace
}  // namespace infergrid
