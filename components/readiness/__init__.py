"""The readiness gate at the end of the graph: wait until the node advertises
its GPUs and GPU Feature Discovery has labelled them (``GpuReadiness``)."""
