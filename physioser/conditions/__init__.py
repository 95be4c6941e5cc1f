"""Robot listening conditions as data (training/evaluation layer, above the core): generated noise
sources, additive noise at a set SNR, simulated rooms, low-quality microphones; reproducible from a seed."""
