// KV transfer throughput: blocks streamed by a KvTransferSender to a KvTransferReceiver on
// loopback (framing, both checksums, the receive tier's copy, acknowledgements), next to a
// plain memcpy of the same bytes and to raw loopback TCP (one socket, the same volume, nothing
// else), in alternating rounds of one run; and the tail a transfer adds after the last block
// of a prefill exists (what a decode instance waits beyond the prefill), with blocks appearing
// at a given prefill rate.
#pragma once

#include <cstddef>
#include <string>

#include "core/status.h"

namespace infergrid {

struct TransferBenchOptions {
  size_t block_bytes = size_t{1} << 20;
  int blocks = 256;
  int block_tokens = 16;
  int rounds = 3;
  double prefill_ms_per_block = 5;  // the pace blocks appear at in the tail measurement
};

Result<std::string> run_transfer_bench(const TransferBenchOptions& options);

}  // namespace infergrid
