"""Where and how the network runs: device and precision, the allocator and the memory budget,
torch.compile and its cache, tiled inference."""
