/* kernelop's stand-in for <assert.h> under NVRTC: device assert is built in. */
#pragma once
