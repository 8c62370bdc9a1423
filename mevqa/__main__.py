import sys

from mevqa.cli import main

sys.exit(main())
