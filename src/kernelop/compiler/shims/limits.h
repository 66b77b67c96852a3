/* kernelop's stand-in for <limits.h> under NVRTC: libcu++ (CCCL) defines INT_MAX & co. */
#pragma once
#include <cuda/std/climits>
