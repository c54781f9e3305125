"""zoobuild's foundation: errors, paths, content keys and the hash cache, import closures,
atomic writes, locked JSON records and the git revision.

Standard library and small dependencies only; never doit.  The libraries (images/, datasets/,
slim/, artifacts/) import this package and each other, never tasks/ (the doit wiring).
"""
