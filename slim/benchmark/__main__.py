import sys

from slim.benchmark.cli import main

sys.exit(main())
