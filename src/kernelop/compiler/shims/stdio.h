/* kernelop's stand-in for <stdio.h> under NVRTC: device printf is built in. */
#pragma once
