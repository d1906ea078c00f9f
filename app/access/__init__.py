"""Who may enter where and when: pure decisions over groups, grants, weekly schedules, holidays
and per-person validity. No SQL, no HTTP: callers load the facts and pass them in."""
