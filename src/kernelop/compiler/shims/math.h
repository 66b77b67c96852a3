/* kernelop's stand-in for <math.h> under NVRTC: the device math functions are built in, and
 * INFINITY, NAN, HUGE_VAL(F) and M_PI & co. come from kernelop's prelude. */
#pragma once
