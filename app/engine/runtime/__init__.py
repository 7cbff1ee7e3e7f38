"""What every analysis stands on: devices, models, preprocessing, the activation recorder,
truncated private copies, receptive fields, tiling on the device, prediction, caches."""
