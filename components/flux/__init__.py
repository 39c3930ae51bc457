"""GitOps delivery through Flux: the GPU stack as Flux objects (pure builders),
the read-only check that the cluster serves the Flux APIs, and the
HelmRelease status the readiness gate waits for."""
