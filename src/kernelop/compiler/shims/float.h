/* kernelop's stand-in for <float.h> under NVRTC: libcu++ (CCCL) defines FLT_MAX & co. */
#pragma once
#include <cuda/std/cfloat>
