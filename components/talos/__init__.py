"""TalosGpuNode and its planners: Image Factory schematic, machine-config
patch, apply and upgrade (DESIGN.md facts 8, 9, 13, 16)."""
