"""Test-side name for the mock-engine runner (it lives in components.mockengine
because `render` uses it too to draw the graph)."""

from components.mockengine import (  # noqa: F401
    ProgramRun,
    RecordingMonitor,
    Registration,
    StateMocks,
    is_secret,
    reveal,
    run_program,
)
