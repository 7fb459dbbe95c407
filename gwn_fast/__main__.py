import sys

from gwn_fast.cli import main

sys.exit(main())
