// CpuBackend: the Backend on the host CPU. Work is split across a ThreadPool; the inner loops
// are the dispatched kernels of cpu_kernels.h (scalar, AVX2 or AVX-512, chosen once).
//
// Invariant: scratch (quantized activations, attention scores) is sized by reserve() before
// the token loop, so steady-state calls do not allocate. A call that needs more than was
// reserved grows the scratch once, outside the parallel region.
#pragma once

#include <memory>
#include <vector>

#include "core/aligned_buffer.h"
#include "core/thread_pool.h"
#include "kernels/backend.h"
#include "kernels/cpu_kernels.h"

namespace infergrid {

class CpuBackend final : public Backend {
 public:
  // n_threads <= 0: one per hardware thread. kernels: nullptr selects the best for this CPU.
  explicit CpuBackend(int n_threads = 0, const CpuKernels* kernels = nullptr);

  std::string name() const override;
  int n_threads() const override { return pool_.size(); }
  ThreadPool& pool() { return pool_; }
  const CpuKernels& kernels() const { return *kernels_; }

  // Pre-sizes scratch for up to max_tokens activation rows of up to max_cols floats.
  void reserve(int64_t max_tokens, int64_t max_cols);

  void matmul(const MatrixView& w, const float* x, int64_t n_tokens, float* y) override;
  // One activation conversion and one parallel region for all the matrices when they share a
  // type and layout (otherwise separate matmuls).
  void matmul_shared_input(std::span<const MatrixView* const> ws, const float* x, int64_t n_tokens,
                           std::span<float* const> ys) override;
  void get_rows(const MatrixView& w, std::span<const int32_t> ids, float* y) override;
  void rms_norm(const float* x, const float* weight, float* y, int64_t n_tokens, int64_t n,
                float eps) override;
  void rope(float* x, int64_t n_tokens, int n_heads, int head_dim,
            std::span<const int32_t> positions, const RopeParams& params) override;
  void swiglu(const float* gate, const float* up, float* y, int64_t n_tokens, int64_t n) override;
  void add(const float* x, float* y, int64_t n) override;
  void add_bias(const float* bias, float* y, int64_t n_tokens, int64_t n) override;
  void gather_rows(const float* x, int64_t n_cols, std::span<const int32_t> rows,
                   float* y) override;
  void scatter_add_rows(const float* x, int64_t n_cols, std::span<const int32_t> rows,
                        std::span<const float> scales, float* y) override;
  void store_kv(const float* k, const float* v, int64_t kv_dim, std::span<const int32_t> positions,
                std::span<const AttentionSequence> seqs) override;
  void attention(const float* q, std::span<const int32_t> positions,
                 std::span<const AttentionSequence> seqs, const AttentionParams& params,
                 float* out) override;

 private:
  // One matrix's share of a matmul: its kernels and how its rows are cut into tasks.
  struct MatmulPlan {
    const MatrixView* w = nullptr;
    float* y = nullptr;
    const PackedKernel* packed = nullptr;  // non-null: the packed GEMM reads w.packed
    VecDotFn dot = nullptr;
    MatDotFn mat_dot = nullptr;
    int64_t chunk = 0;    // row groups (packed) or rows (plain) per task
    int64_t n_tasks = 0;  // including, when packed, one task for the rows past the groups
  };
  MatmulPlan plan_matmul(const MatrixView& w, float* y) const;
  // Converts n_tokens rows of x to the dot type of `plan` (and the packed kernel's sums) into
  // scratch; returns the rows and sets *row_bytes.
  const uint8_t* prepare_activations(const MatmulPlan& plan, const float* x, int64_t n_tokens,
                                     size_t* row_bytes);
  void run_matmul_task(const MatmulPlan& plan, int64_t task, const uint8_t* act,
                       size_t act_row_bytes, int64_t n_tokens) const;

  ThreadPool pool_;
  const CpuKernels* kernels_;
  AlignedBuffer<uint8_t> act_scratch_;
  AlignedBuffer<int32_t> act_sums_;  // per activation row and block, for packed kernels
  std::vector<MatmulPlan> plans_;    // matmul_shared_input's, kept to avoid allocating
  struct AttentionTask {
    int32_t seq;
    int kv_head;
    int64_t first_token;
    int64_t n_tokens;
  };
  std::vector<AttentionTask> attn_tasks_;
  AlignedBuffer<float> attn_scratch_;  // per thread: accumulators, scores, running max/sum
};

// cos/sin of each rotated pair of dims for one position (n_dims/2 values each), as ggml's
// rope computes them, YaRN and frequency factors included. Exposed for tests.
void rope_cos_sin(int32_t position, const RopeParams& params, float* cos_out, float* sin_out);

}  // namespace infergrid
