/* kernelop's stand-in for <stdint.h> under NVRTC: libcu++ (CCCL) defines the global fixed-width
 * types and their limits there when it compiles without a host C library. */
#pragma once
#include <cuda/std/cstdint>
