"""TalosGpuNode and its planners: Image Factory schematic, adopting the
node's machine config, the upgrade path and the upgrade (README, "What the
guide gets wrong", rows 8, 9, 13, 16, 17, 18, 23)."""
