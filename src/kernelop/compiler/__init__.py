"""Compilation: NVRTC, the disk cache, the target architecture, and facts read from the source."""
