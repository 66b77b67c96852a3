"""Bundles of registered ops for deployment without kernelop: schemas, plans and binaries."""
