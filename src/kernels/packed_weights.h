// Repacking weight matrices for a CPU kernel table's integer GEMM (cpu_kernels.h,
// PackedKernel). The packed copy is made once, when a model is loaded; the plain rows it was
// made from stay valid (embedding lookups and other backends read them).
// Invariant: a view's packed rows are exactly its first packed_rows plain rows, re-laid out;
// the rows past them (n_rows % 16) are only ever read plain.
#pragma once

#include "core/aligned_buffer.h"
#include "kernels/backend.h"
#include "kernels/cpu_kernels.h"

namespace infergrid {

// Packs `w` for `kernels` when the table has a packed kernel for its type and the matrix has
// at least one full row group; sets w's packed fields to point into the returned storage (an
// empty buffer when nothing was packed). The storage must outlive every use of `w`.
AlignedBuffer<uint8_t> pack_weights_for(const CpuKernels& kernels, MatrixView& w);

// False when INFERGRID_REPACK=0 is set (benchmarks of the plain layout).
bool weight_repacking_enabled();

}  // namespace infergrid
