"""The PyTorch side: schema, registration, the eager launcher and the fake impl."""
