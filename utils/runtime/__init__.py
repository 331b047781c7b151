"""Where and how the network runs: device and precision, the allocator and the memory budget,
torch.compile and its cache, a checkpoint's network loaded to run, tiled inference."""
