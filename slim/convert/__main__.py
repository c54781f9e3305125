import sys

from slim.convert.cli import main

sys.exit(main())
