"""Client-side helpers for programs that call humanline (the simulator, the bench, tests)."""
